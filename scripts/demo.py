#!/usr/bin/env python3
"""The demo: fetch the development corpus, index it, then identify degraded clips.

    python scripts/demo.py            # library in ./demo-library, clips in ./data/demo-clips

Downloads 13 freely licensed Debian packages of game music and sounds (about 1.2 GB, with
apt-get) into ``--cache`` and copies about 6 h of music and a thousand short sounds out of
them into ``--corpus``; it says how much before it starts. The package cache (about 2.5 GB
with its unpacked files) is deleted at the end unless ``--keep-debs`` is given.

Runs the real `tuneprint` commands and shows each one before it runs. Two songs are kept
out of the library so that the demo also shows an honest "not in the library".
"""
from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from tuneprint.encoder.audio import load_audio
from tuneprint.encoder.augment import mix_at_snr, phone, reverb
from tuneprint.server.evaluation.corpus import (fetch_corpus, folder_bytes, is_fetched, package_sizes,
                                                packages_to_download, read_manifest, remove_cache)

SR = 22050


def tuneprint(*args: str) -> None:
    exe = shutil.which("tuneprint") or str(Path(sys.executable).parent / "tuneprint")
    shown = [shlex.quote(a) for a in args]
    files = [a for a in args if a.endswith((".ogg", ".opus", ".wav"))]
    if len(files) > 6:  # a long file list is shown by its count
        shown = [a for a in shown if not a.endswith((".ogg", ".opus", ".wav"))] + [f"<{len(files)} files>"]
    print(f"\n$ tuneprint {' '.join(shown)}", flush=True)
    subprocess.run([exe, *args], check=False)


def encoder_changed(root: Path) -> bool:
    """Whether ``root`` is a library embedded with another encoder (or calibration, or style head) than the shipped one."""
    from tuneprint.errors import MismatchError
    from tuneprint.server.library import Library

    if not (root / "settings.json").is_file():
        return False
    try:
        with Library.open(root) as lib:
            if lib.style is not None:
                lib.style_index()  # refuses style vectors of another style head, or none
    except MismatchError:
        return True
    return False


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--library", type=Path, default=Path("demo-library"))
    p.add_argument("--clips", type=Path, default=Path("data/demo-clips"))
    p.add_argument("--cache", type=Path, default=Path("data/debs"), help="where the downloaded .deb files are kept "
                   "while the corpus is fetched (default data/debs)")
    p.add_argument("--keep-debs", action="store_true", help="keep the package cache (--cache) at the end "
                   "instead of deleting it")
    args = p.parse_args(argv)
    # The corpus fetch reports its steps (downloads, files scanned) as log lines.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("tuneprint.server.evaluation.corpus").setLevel(logging.INFO)

    print(fetch_plan(args.corpus, args.cache, args.keep_debs), flush=True)
    fetch_corpus(args.corpus, args.cache)
    songs = read_manifest(args.corpus)
    rng = np.random.default_rng(2026)
    order = rng.permutation(len(songs))
    outsiders = [songs[i] for i in order[:2]]
    members = [s for s in songs if s not in outsiders]

    if encoder_changed(args.library):  # a demo library from an earlier tuneprint: bring it to this encoder
        tuneprint("reindex", "--library", str(args.library))
    tuneprint("add", "--library", str(args.library), "--labels", str(args.corpus / "labels.csv"),
              *[path for path, _ in members])
    tuneprint("stats", "--library", str(args.library))

    noises = sorted((args.corpus / "noise").iterdir())
    args.clips.mkdir(parents=True, exist_ok=True)
    clips = []
    picks = [songs[i] for i in order[2:5]]
    for (path, label), condition in zip(picks, ["noise", "phone", "reverb"]):
        clips.append(make_clip(path, condition, args.clips, rng, noises))
    clips += [make_clip(path, "noise", args.clips, rng, noises, prefix="not-added") for path, _ in outsiders]

    tuneprint("identify", "--library", str(args.library), *map(str, clips))
    tuneprint("genre", "--library", str(args.library), *map(str, clips[:3]))
    tuneprint("similar", "--library", str(args.library), "-n", "5", str(clips[0]))
    print(f"\nThe library is in {args.library}/ — try `tuneprint --help`.")
    print(cache_outcome(args.cache, args.keep_debs))
    return 0


def fetch_plan(corpus: Path, cache: Path, keep_debs: bool) -> str:
    """What the corpus fetch will download, where, and how much; what becomes of the cache."""
    missing = packages_to_download(corpus, cache)
    if not missing:
        said = f"The corpus is already in {corpus}/: nothing to download."
    else:
        sizes = package_sizes(missing)
        known = [sizes[p] for p in missing if p in sizes]
        amount = (f" ({size(sum(s.download for s in known))} to download, "
                  f"{size(sum(s.unpacked for s in known))} more once unpacked there)" if known else "")
        copied = (f"their short sounds are added to {corpus}/noise-heldout/" if is_fetched(corpus) else
                  f"about 6 h of music and a thousand short sounds are copied out of them into {corpus}/")
        said = (f"Fetching the development corpus: {len(missing)} Debian packages of game music and sounds{amount} "
                f"go into {cache}/ with apt-get; {copied}. This takes a while; progress lines follow.")
    if keep_debs:
        return said + f"\n{cache}/ is kept at the end (--keep-debs)."
    return said + f"\n{cache}/ is deleted at the end (pass --keep-debs to keep it)."


def cache_outcome(cache: Path, keep_debs: bool) -> str:
    """Delete the package cache unless it is to be kept; say what was done and how much space it holds or held."""
    if not cache.is_dir():
        return f"No package cache left in {cache}/."
    if keep_debs:
        return (f"The downloaded packages stay in {cache}/ ({size(folder_bytes(cache))}, --keep-debs); "
                f"delete that folder when you no longer need it.")
    debs = len(list(cache.glob("*.deb")))
    freed = remove_cache(cache)
    return (f"Deleted the package cache {cache}/ ({debs} .deb file{'s' * (debs != 1)} and what was unpacked from them): "
            f"{size(freed)} freed. The corpus stays in place; --keep-debs keeps the cache next time.")


def size(n: int) -> str:
    """Bytes for people: "1.2 GB", "161 MB"."""
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def make_clip(path: str, condition: str, out: Path, rng, noises, prefix: str = "") -> Path:
    """A 3-s clip at a random moment, degraded as a phone in a room would hear it."""
    y = load_audio(path, sr=SR)
    start = rng.uniform(0, len(y) / SR - 3)
    clip = y[int(start * SR) : int(start * SR) + 3 * SR]
    noise = load_audio(noises[rng.integers(len(noises))], sr=SR)
    if condition == "noise":
        clip = mix_at_snr(clip, noise, 5.0)
    elif condition == "phone":
        clip = phone(mix_at_snr(clip, noise, 15.0), SR, rng)
    elif condition == "reverb":
        clip = reverb(clip, SR, rng, 0.6)
    name = f"{prefix or Path(path).stem}-{condition}-at-{start:.1f}s.wav"
    sf.write(out / name, clip, SR)
    return out / name


if __name__ == "__main__":
    sys.exit(main())
