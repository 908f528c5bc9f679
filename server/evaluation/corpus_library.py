"""The development corpus as one library, evaluated with `tuneprint evaluate`'s sections.

The library (``data/corpus-library``, or ``data/corpus-library-limitN`` with a limit) holds every
corpus track with its collection as label and the shipped default encoder; it is reused when
present (missing tracks are added, and a library embedded with another encoder is re-embedded).
The evaluation mixes the corpus's recorded noises into the degraded clips, evaluates the classifier
head of the default model's training run when its checkpoint is there, and does not query the
songs that run trained on (its config.json lists them).
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

from tuneprint.encoder.splits import song_unit
from tuneprint.errors import MismatchError
from tuneprint.server.library import Library, LibrarySettings

from .clips import ClipConfig
from .corpus import UNSEEN_LABELS, read_manifest
from .run import EvalConfig, evaluate
from .timing import TimingConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CorpusEvaluation:
    corpus: Path
    out: Path  # report.md, report.json and the figures
    library: Path | None = None  # default data/corpus-library[-limitN]
    limit: int = 0  # evaluate on this many tracks only (a check; 0 = all)
    model: str = "default"  # encoder of a new library
    classifier: Path | None = None  # default: the full checkpoint of the run that trained the model, if there
    train_config: Path | None = None
    holdout: float = 0.2
    clips_per_song: int = 4
    seed: int = 0
    timing_vectors: int = 20000
    threads: int = 0
    quick: bool = False

    @property
    def library_root(self) -> Path:
        return self.library or Path("data") / (f"corpus-library-limit{self.limit}" if self.limit else "corpus-library")


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
        results = lib.add([p for p, _ in missing], labels={p: [label] for p, label in missing}, allow_non_music=True)
        failed = [r for r in results if r.status == "failed"]
        for r in failed:
            log.warning("could not add %s: %s", r.path, r.error)
        log.info("added %d tracks in %.0f s", len(missing) - len(failed), time.perf_counter() - started)
    return lib


def training_checkpoint(model: str) -> Path:
    """The full checkpoint (with the classifier head) of the run that trained ``model``."""
    from tuneprint.encoder.checkpoint import load_model

    run = (load_model(model).meta or {}).get("extra", {}).get("run")
    return Path(run or "runs/default") / "model.safetensors"


def eval_config(job: CorpusEvaluation) -> EvalConfig:
    """The evaluation's settings: the corpus's noises, the training run's head and songs where known."""
    classifier = job.classifier or training_checkpoint(job.model)
    base = EvalConfig.quick() if job.quick else EvalConfig(clips=ClipConfig(clips_per_song=job.clips_per_song),
                                                           timing=TimingConfig(max_vectors=job.timing_vectors))
    noise = job.corpus / "noise"
    return replace(base, holdout=job.holdout, seed=job.seed, threads=job.threads,
                   noise_dir=str(noise) if noise.is_dir() else None,
                   train_config=str(job.train_config) if job.train_config else None,
                   classifier=str(classifier) if classifier and classifier.is_file() else None)


def evaluate_corpus(job: CorpusEvaluation) -> dict:
    """Build (or update) the corpus library and evaluate it into ``job.out``; returns the report."""
    if job.threads:
        import torch

        torch.set_num_threads(job.threads)  # the library build embeds too
    started = time.perf_counter()
    lib = build_library(job.library_root, pick_subset(read_manifest(job.corpus), job.limit), job.model)
    built = time.perf_counter() - started

    def progress(stage: str, done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            log.info("%s: %d/%d", stage, done, total)

    with lib:
        report = evaluate(lib, eval_config(job), out_dir=job.out, progress=progress)
    log.info("library ready in %.0f s, evaluated in %.0f s: %s", built, report["seconds"], job.out / "report.md")
    return report
