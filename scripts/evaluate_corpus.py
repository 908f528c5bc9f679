#!/usr/bin/env python3
"""Build a library from the development corpus and evaluate it into docs/evaluation/.

    python scripts/fetch_corpus.py --out data/corpus
    python scripts/evaluate_corpus.py --corpus data/corpus --out docs/evaluation

The library (default ``data/corpus-library``, or ``data/corpus-library-limitN`` with
``--limit N``) holds every corpus track with its collection as label and the shipped default
encoder; it is reused when present (missing tracks are added, and a library embedded with
another encoder is re-embedded). The evaluation (`tuneprint evaluate`) mixes the corpus's
recorded noises into the degraded clips, evaluates the classifier head of the default
model's training run when its checkpoint is there (``runs/default/model.safetensors``), and
does not query the songs that run trained on (its config.json lists them).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from tuneprint.errors import MismatchError
from tuneprint.encoder.splits import UNSEEN_LABELS, read_manifest, song_unit
from tuneprint.server.evaluation import EvalConfig, evaluate
from tuneprint.server.eval_identification import ClipConfig
from tuneprint.server.library import Library, LibrarySettings
from tuneprint.server.search_timing import TimingConfig

log = logging.getLogger("evaluate_corpus")


def pick_subset(items: list[tuple[str, str]], limit: int) -> list[tuple[str, str]]:
    """``limit`` tracks, taken in turn from each collection (seen and unseen alike), stably."""
    if not limit or limit >= len(items):
        return items
    by_label: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for item in sorted(items, key=lambda it: song_unit(it[0])):
        by_label[item[1]].append(item)
    # alternate seen and unseen collections so a small subset has both
    labels = sorted(by_label, key=lambda label: (label in UNSEEN_LABELS, label))
    seen = [label for label in labels if label not in UNSEEN_LABELS]
    unseen = [label for label in labels if label in UNSEEN_LABELS]
    order = [label for pair in zip(seen, unseen) for label in pair] + seen[len(unseen):] + unseen[len(seen):]
    picked: list[tuple[str, str]] = []
    while len(picked) < limit:
        for label in order:
            if by_label[label] and len(picked) < limit:
                picked.append(by_label[label].pop(0))
    return picked


def build_library(root: Path, items: list[tuple[str, str]], model: str) -> Library:
    """Open (re-embedding if its encoder changed) or create the library and add missing tracks."""
    if (root / "settings.json").is_file():
        try:
            lib = Library.open(root)
        except MismatchError as e:
            log.info("%s; re-embedding", e)
            with Library.open(root, check_model=False) as stale:
                stale.reindex()
            lib = Library.open(root)
    else:
        lib = Library.create(root, LibrarySettings(model=model))
    have = {s.path for s in lib.tracks()}
    missing = [(p, label) for p, label in items if str(Path(p).resolve()) not in have]
    if missing:
        log.info("adding %d tracks to %s", len(missing), root)
        started = time.perf_counter()
        results = lib.add([p for p, _ in missing], labels={p: [label] for p, label in missing})
        failed = [r for r in results if r.status == "failed"]
        for r in failed:
            log.warning("could not add %s: %s", r.path, r.error)
        log.info("added %d tracks in %.0f s", len(missing) - len(failed), time.perf_counter() - started)
    return lib


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    p.add_argument("--library", type=Path, help="library folder (default data/corpus-library[-limitN])")
    p.add_argument("--out", type=Path, default=Path("docs/evaluation"))
    p.add_argument("--limit", type=int, default=0, help="evaluate on this many tracks only (a check; 0 = all)")
    p.add_argument("--model", default="default", help="encoder of a new library (default: the shipped one)")
    p.add_argument("--classifier", type=Path,
                   help="checkpoint whose classifier head is evaluated, if it exists (default: the full checkpoint "
                        "of the training run named in the encoder's metadata, e.g. runs/default-v3/model.safetensors)")
    p.add_argument("--train-config", type=Path, help="the encoder's training run config.json, if not found from the model")
    p.add_argument("--holdout", type=float, default=0.2)
    p.add_argument("--clips-per-song", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timing-vectors", type=int, default=20000)
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for the network and BLAS (default: as they are; 1 while training runs beside)")
    p.add_argument("--quick", action="store_true", help="1- and 3-s clips, one per song, small samples")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # the library build embeds too
    items = pick_subset(read_manifest(args.corpus), args.limit)
    root = args.library or Path("data") / (f"corpus-library-limit{args.limit}" if args.limit else "corpus-library")
    started = time.perf_counter()
    lib = build_library(root, items, args.model)
    built = time.perf_counter() - started

    args.classifier = args.classifier or training_checkpoint(args.model)
    base = EvalConfig.quick() if args.quick else EvalConfig(clips=ClipConfig(clips_per_song=args.clips_per_song),
                                                            timing=TimingConfig(max_vectors=args.timing_vectors))
    cfg = replace(base, holdout=args.holdout, seed=args.seed, threads=args.threads,
                  noise_dir=str(args.corpus / "noise") if (args.corpus / "noise").is_dir() else None,
                  train_config=str(args.train_config) if args.train_config else None,
                  classifier=str(args.classifier) if args.classifier and args.classifier.is_file() else None)

    def progress(stage: str, done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            log.info("%s: %d/%d", stage, done, total)

    with lib:
        report = evaluate(lib, cfg, out_dir=args.out, progress=progress)
    log.info("library ready in %.0f s, evaluated in %.0f s: %s", built, report["seconds"], args.out / "report.md")
    for key, value in report["headline"].items():
        print(f"{key:45s} {'n/a' if value is None else f'{value:.1%}'}")
    return 0


def training_checkpoint(model: str) -> Path:
    """The full checkpoint (with the classifier head) of the run that trained ``model``."""
    from tuneprint.encoder.checkpoint import load_model

    run = (load_model(model).meta or {}).get("extra", {}).get("run")
    return Path(run or "runs/default") / "model.safetensors"


if __name__ == "__main__":
    sys.exit(main())
