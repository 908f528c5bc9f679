#!/usr/bin/env python3
"""Fetch the development corpus (freely licensed game soundtracks, see server/evaluation/corpus.py) from Debian's package archive.

Music: the soundtracks' .ogg/.opus files of 30 s or more, deduplicated by content, one
folder per collection (the collection is the style label). Noise: the same packages'
short sound effects and voices, plus a few non-music packages, for mixing into clips
(training views and benchmarks). Held-out noise: the sounds of three more packages that
training never uses, for benchmarks with noise the encoder never heard. Style: 18 more
collections (DATA.md's "More collections"), music only, listed with the corpus's own songs in
``style-manifest.csv``; ``--no-style`` skips them.

    python scripts/fetch_corpus.py --out data/corpus

writes ``music/<collection>/*.ogg``, ``noise/*.{ogg,wav}``, ``noise-heldout/*``, ``labels.csv`` (path,label)
and ``manifest.csv`` (path,label,seconds,sha256). The downloaded packages stay in ``--cache``
(about 2.5 GB with their unpacked files) unless ``--remove-debs`` is given. Nothing is committed
to the repository. The collections and packages: server/evaluation/corpus.py.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tuneprint.server.evaluation.corpus import MUSIC, fetch_corpus, fetch_style_collections, remove_cache


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("data/corpus"), help="corpus folder (default data/corpus)")
    parser.add_argument("--cache", type=Path, default=Path("data/debs"), help="where .deb files are kept")
    parser.add_argument("--collections", nargs="*", default=list(MUSIC), help="which collections (default all)")
    parser.add_argument("--no-style", action="store_true",
                        help="skip the collections added for learning style (about 530 MB more to download)")
    parser.add_argument("--remove-debs", action="store_true",
                        help="delete the --cache folder (downloaded and unpacked packages) once the corpus is written")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fetch_corpus(args.out, args.cache, args.collections)
    if not args.no_style:
        fetch_style_collections(args.out, args.cache)
    if args.remove_debs:
        freed = remove_cache(args.cache)
        print(f"deleted {args.cache}/ ({freed / 1e9:.1f} GB freed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
