"""`tuneprint evaluate`: how well a library works on its own music, as the seeds report it.

    from tuneprint.server.library import Library
    from tuneprint.server.evaluation import EvalConfig, evaluate

    with Library.open("my-library") as lib:
        report = evaluate(lib, EvalConfig(holdout=0.2), out_dir="my-library/evaluation")

Sections (each in its own module; this one plans the run and ties them together):

- identification (`server.eval_identification`): clips of 1/3/5/10 s, clean and degraded,
  top-1/top-2, offset error, and the "unknown" rate for clips of held-out songs;
- labels by neighbours and their aggregation (`server.eval_labels`): leave-one-song-out
  k-NN over sub-tracks, raw / maximum probability / majority, confusion matrix, per-label
  precision and recall, for labels the encoder saw in training and labels it never saw;
- the classifier head, aggregated the same three ways, when the model has one;
- the MFCC-statistics baseline: the same patches and the same k-NN votes;
- the embedding map (t-SNE and PCA, coloured by label);
- search timing with recall (`server.search_timing`);
- ``report.md``, ``report.json`` and the PNGs (`server.eval_report`).

Splits are by song (`server.eval_data`); songs the encoder was trained on are not queried
when its training run is known.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from tuneprint.encoder.audio import AUDIO_EXTENSIONS, load_audio
from tuneprint.errors import AudioError, CheckpointError
from tuneprint.encoder.features import audio_to_patches

from .eval_data import (Provenance, checkpoint_provenance, find_provenance, load_snippets, plan_split,
                        subtrack_rows)
from .eval_identification import ClipConfig, IdentificationRun
from .eval_labels import (Standardizer, TrackAnswer, classifier_probs, knn_track_answers, label_matrix, mfcc_stats,
                          score_tracks)
from .search_timing import TimingConfig, search_timing

log = logging.getLogger(__name__)

SECTIONS = ("identification", "labels", "classifier", "baseline", "map", "timing")
REPORT_VERSION = 1

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class EvalConfig:
    holdout: float = 0.2  # share of songs kept out of the identification index
    seed: int = 0
    clips: ClipConfig = field(default_factory=ClipConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)
    sections: tuple[str, ...] = SECTIONS
    subtrack_s: float = 0.0  # spacing of a track's sub-tracks for labels; 0: one patch (≈2.97 s)
    map_points: int = 2000  # sub-tracks drawn in the t-SNE / PCA map
    noise_dir: str | None = None  # recorded noises to mix into clips; coloured noise when None
    max_noise_files: int = 200
    train_config: str | None = None  # the encoder's training run config.json, when it cannot be found
    classifier: str | None = None  # a checkpoint with a classifier head, when the library's model has none
    include_trained: bool = False  # also query songs the encoder was trained on
    threads: int = 0  # torch and BLAS threads while evaluating; 0 = leave as they are (1 is faster on a busy machine)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def quick(cls, **overrides) -> "EvalConfig":
        """A fast run for checks: 1- and 3-s clips, one per song, small map and timing sample."""
        base = cls(clips=ClipConfig(durations_s=(1.0, 3.0), clips_per_song=1), map_points=300,
                   timing=TimingConfig(max_vectors=2000, queries=20, ks=(10, 30, 100), pq_m=16))
        return replace(base, **overrides)


def evaluate(lib, cfg: EvalConfig = EvalConfig(), out_dir: str | os.PathLike | None = None,
             progress: Progress | None = None) -> dict:
    """Evaluate an open :class:`server.library.Library`; returns the report (also written to ``out_dir``).

    ``out_dir`` receives ``report.md``, ``report.json`` and the figures; with None nothing is written.
    """
    if not cfg.threads:
        return _evaluate(lib, cfg, out_dir, progress)
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        with threadpool_limits(limits=cfg.threads):
            return _evaluate(lib, cfg, out_dir, progress)
    finally:
        torch.set_num_threads(before)


def _evaluate(lib, cfg: EvalConfig, out_dir, progress: Progress | None) -> dict:
    unknown = set(cfg.sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    started = time.perf_counter()
    sections = set(cfg.sections)
    snippets = load_snippets(lib)
    songs = snippets.songs
    provenance = find_provenance(lib, cfg.train_config)
    split = plan_split(songs, provenance, holdout=cfg.holdout, seed=cfg.seed, include_trained=cfg.include_trained)
    labels = sorted({label for s in songs for label in s.labels})
    report: dict = {
        "report_version": REPORT_VERSION,
        "library": {"path": str(lib.root), "songs": len(songs), "snippets": len(snippets), "labels": labels,
                    "backend": lib.settings.index.backend, "vote": lib.settings.vote.to_dict(),
                    "index_hop_s": round(lib.settings.index_hop_frames * lib.features.frame_seconds, 4),
                    "query_hop_s": round(lib.settings.query_hop_frames * lib.features.frame_seconds, 4)},
        "model": {"model_id": lib.model_id, "spec": lib.settings.model, "provenance": provenance.to_dict()},
        "config": cfg.to_dict(), "split": split.to_dict(songs), "sections": {}, "figures": {},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    if not songs:
        report["split"]["notes"].append("the library holds no songs: nothing to evaluate")
        return _finish(report, out_dir, started)

    # -- one pass over the audio: clips for identification, baseline features, classifier patches --
    noises = load_noises(cfg.noise_dir, lib.features.sample_rate, cfg.max_noise_files, cfg.seed)
    report["noise"] = {"recorded_files": len(noises), "folder": cfg.noise_dir}
    ident = None
    if "identification" in sections:
        vote = lib.settings.vote.for_library(len(split.index))  # the threshold at the size of the identification index
        ident = IdentificationRun(lib.embedder, lib.features, lib.settings.index, vote,
                                  lib.settings.query_hop_frames, snippets, split, cfg.clips, cfg.seed, noises,
                                  spectrogram_of=lib.reference_spectrogram)
    head = classifier_head(lib, cfg, provenance) if "classifier" in sections else None
    baseline: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    clf_probs: dict[int, np.ndarray] = {}
    need = set()
    if ident is not None:
        need |= ident.wanted
    if head and head.get("net") is not None:
        need |= set(split.label_queries)
    if "baseline" in sections:
        need |= set(range(len(songs)))
    stage_seconds: dict[str, float] = {}
    clock = started

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stage_seconds[stage] = round(now - clock, 1)
        clock = now

    lap("snippets, split, noises")
    unreadable = []
    for done, i in enumerate(sorted(need), 1):
        try:
            y = load_audio(songs[i].path, sr=lib.features.sample_rate)
        except AudioError as e:
            log.warning("skipping %s", e)
            unreadable.append(songs[i].song_id)
            continue
        if ident is not None:
            ident.visit(i, y)
        if "baseline" in sections:
            try:
                patches, offsets = audio_to_patches(y, hop_frames=lib.settings.index_hop_frames, cfg=lib.features)
                baseline[i] = (mfcc_stats(patches), offsets)
            except AudioError as e:
                log.warning("baseline: skipping %s: %s", songs[i].path, e)
        if head and head.get("net") is not None and i in split.label_queries \
                and not head["provenance"].trained_on(songs[i]):
            try:
                patches, _ = audio_to_patches(y, hop_frames=lib.features.patch_frames, cfg=lib.features)
                clf_probs[i] = classifier_probs(head["net"], patches)
            except AudioError as e:
                log.warning("classifier: skipping %s: %s", songs[i].path, e)
        if progress:
            progress("audio", done, len(need))
    report["split"]["unreadable_songs"] = unreadable
    lap("audio pass (clips, baseline features, classifier)")

    if ident is not None:
        leaked = ident.indexed_songs() & {songs[i].song_id for i in split.held_out}
        if leaked:  # the split's one promise; never expected, always checked
            raise RuntimeError(f"held-out songs in the identification index: {sorted(leaked)}")
        report["sections"]["identification"] = {"conditions": cfg.clips.to_dict(), **ident.finish(baseline or None)}
        lap("identification votes")

    # -- labels by neighbours (embedding and baseline), aggregation, classifier head ---------------
    subtrack_s = cfg.subtrack_s or lib.features.patch_seconds
    groups = label_groups(songs, split.label_queries, provenance)
    truth = {i: tuple(labels.index(label) for label in songs[i].labels) for i in split.label_queries}
    M = label_matrix([s.labels for s in songs], labels)
    k = lib.settings.vote.k
    emb_answers: list[TrackAnswer] = []
    if "labels" in sections and split.label_queries:
        queries = {i: snippets.rows_of(i) for i in split.label_queries}
        queries = {i: rows[subtrack_rows(snippets.offsets_s[rows], subtrack_s)] for i, rows in queries.items()}
        emb_answers = knn_track_answers(snippets.vectors, snippets.song, queries, M, truth, k,
                                        progress=lambda d, t: progress and progress("labels", d, t))
        report["sections"]["labels"] = {"method": f"leave-one-song-out {k}-NN vote of the stored snippets",
                                        "subtrack_s": round(subtrack_s, 3), "k": k, "groups": groups["counts"],
                                        **{g: score_tracks([a for a in emb_answers if a.song in members], labels)
                                           for g, members in groups["members"].items()}}
    base_answers: list[TrackAnswer] = []
    base_ref = None
    if "baseline" in sections and baseline and split.label_queries:
        base_ref = baseline_reference(baseline)
        queries = {i: base_ref["rows"][i][subtrack_rows(base_ref["offsets"][base_ref["rows"][i]], subtrack_s)]
                   for i in split.label_queries if i in base_ref["rows"]}
        base_answers = knn_track_answers(base_ref["vectors"], base_ref["song"], queries, M, truth, k)
        report["sections"]["baseline"] = {
            "method": "MFCC statistics (mean and std of 20 MFCCs of the encoder's own log-mel patch, z-scored, "
                      f"cosine) per 3-s patch, the same {k}-NN vote",
            **{g: score_tracks([a for a in base_answers if a.song in members], labels)
               for g, members in groups["members"].items()}}
    lap("labels")
    clf_answers: list[TrackAnswer] = []
    if head is not None:
        report["sections"]["classifier"], clf_answers = score_classifier(head, clf_probs, songs, groups)

    # -- the embedding map ----------------------------------------------------------------------------
    if "map" in sections and split.label_queries and out_dir is not None:
        from .eval_report import embedding_map

        report["sections"]["map"], figures = embedding_map(
            snippets, split.label_queries, subtrack_s, provenance, cfg.map_points, cfg.seed, Path(out_dir),
            baseline=base_ref)
        report["figures"].update(figures)
        lap("map")

    if "timing" in sections:
        report["sections"]["timing"] = search_timing(snippets.vectors, cfg.timing,
                                                     progress=lambda d, t: progress and progress("timing", d, t))
        lap("search timing")
    report["stage_seconds"] = stage_seconds
    report["tracks"] = track_table(songs, labels, groups, emb_answers, base_answers, clf_answers,
                                   head["labels"] if head and "labels" in head else [])
    return _finish(report, out_dir, started)


def _finish(report: dict, out_dir, started: float) -> dict:
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["headline"] = headline(report)
    if out_dir is not None:
        from .eval_report import write_report

        write_report(report, Path(out_dir))
    return report


# -- pieces -------------------------------------------------------------------------------------
def load_noises(folder: str | None, sr: int, limit: int, seed: int) -> list[np.ndarray]:
    """Up to ``limit`` recorded noises (sound effects, speech) from ``folder``, drawn by ``seed``."""
    if not folder:
        return []
    files = sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise AudioError(f"{folder}: no audio files to use as noise")
    pick = np.random.default_rng(seed).permutation(len(files))[:limit]
    noises = []
    for j in sorted(pick):
        try:
            y = load_audio(files[j], sr=sr)
        except AudioError as e:
            log.warning("noise: skipping %s", e)
            continue
        if np.abs(y).max() > 1e-4 and len(y) > sr // 10:
            noises.append(y)
    return noises


def label_groups(songs, queries: list[int], provenance: Provenance) -> dict:
    """'all' label query songs, and where the encoder's training labels are known, 'seen' and 'unseen'."""
    members = {"all": set(queries)}
    if provenance.seen_labels is not None:
        seen = set(provenance.seen_labels)
        members["seen"] = {i for i in queries if seen & set(songs[i].labels)}
        members["unseen"] = set(queries) - members["seen"]
    return {"members": members, "counts": {g: len(m) for g, m in members.items()},
            "seen_labels": None if provenance.seen_labels is None else list(provenance.seen_labels)}


def baseline_reference(baseline: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Every song's MFCC-statistics patches as one standardised reference set."""
    songs = sorted(baseline)
    stats = np.concatenate([baseline[s][0] for s in songs])
    song = np.concatenate([np.full(len(baseline[s][0]), s, dtype=np.int64) for s in songs])
    offsets = np.concatenate([baseline[s][1] for s in songs]).astype(np.float32)
    vectors = Standardizer.fit(stats)(stats)
    rows = {s: np.flatnonzero(song == s) for s in songs}
    rows = {s: r[np.argsort(offsets[r], kind="stable")] for s, r in rows.items()}
    return {"vectors": vectors, "song": song, "offsets": offsets, "rows": rows}


def classifier_head(lib, cfg: EvalConfig, provenance: Provenance) -> dict:
    """The network, label list and training provenance whose classifier head is evaluated,
    or a note saying why there is none."""
    net = lib.embedder.net if getattr(lib.embedder.net, "classifier", None) is not None else None
    labels, source, trained = provenance.seen_labels, "the library's encoder", provenance
    if cfg.classifier:
        from tuneprint.encoder.checkpoint import load_checkpoint

        try:
            loaded = load_checkpoint(cfg.classifier)
        except CheckpointError as e:
            return {"note": f"could not load --classifier: {e}"}
        if loaded.net.classifier is None:
            return {"note": f"{cfg.classifier} has no classifier head (an encoder-only export?)"}
        trained = checkpoint_provenance(cfg.classifier) or Provenance("unknown")
        net, labels, source = loaded.net, trained.seen_labels, f"checkpoint {cfg.classifier}"
        if loaded.model_id != lib.model_id:
            source += " (not the library's encoder: its own embeddings feed its head)"
    if net is None:
        return {"note": "the library's model has no classifier head (the shipped default is exported encoder-only); "
                        "pass --classifier RUN/model.safetensors to evaluate a training run's head"}
    if not labels or len(labels) != net.cfg.n_classes:
        return {"note": f"the classifier head has {net.cfg.n_classes} classes but its label list was not found "
                        "(the training run's config.json 'labels'); pass --train-config"}
    if trained.train_keys is None:
        source += "; its training songs are unknown, so they may be among the queries"
    return {"net": net.eval(), "labels": list(labels), "source": source, "provenance": trained}


def score_classifier(head: dict, probs: dict[int, np.ndarray], songs, groups: dict) -> tuple[dict, list[TrackAnswer]]:
    """The head's sub-track softmax aggregated three ways, on query tracks whose label it knows."""
    if head.get("net") is None:
        return {"note": head["note"]}, []
    labels = head["labels"]
    known = {i: tuple(labels.index(l) for l in songs[i].labels if l in labels) for i in probs}
    answers = [TrackAnswer(i, known[i], p) for i, p in probs.items() if len(p) and known[i]]
    skipped = sum(1 for i in probs if not known[i])
    trained = sum(1 for i in groups["members"]["all"] if head["provenance"].trained_on(songs[i]))
    notes = [f"{skipped} query tracks have labels the head was not trained on and are left out" if skipped else "",
             f"{trained} query tracks the head's run trained on are left out" if trained else ""]
    section = {"source": head["source"], "labels": labels, "note": "; ".join(n for n in notes if n),
               **{g: score_tracks([a for a in answers if a.song in members], labels)
                  for g, members in groups["members"].items() if g != "unseen"}}
    return section, answers


def track_table(songs, labels, groups, emb: list[TrackAnswer], base: list[TrackAnswer], clf: list[TrackAnswer],
                clf_labels: list[str]) -> list[dict]:
    """Per query track: truth and each method's answers (maximum probability, majority, raw accuracy)."""
    from .eval_labels import aggregate

    rows: dict[int, dict] = {}

    def put(answer: TrackAnswer, names: list[str], method: str):
        agg = aggregate(answer.probs)
        row = rows.setdefault(answer.song, {"song_id": songs[answer.song].song_id, "title": songs[answer.song].title,
                                            "labels": list(songs[answer.song].labels),
                                            "group": next((g for g in ("seen", "unseen") if answer.song in
                                                           groups["members"].get(g, ())), "all")})
        pick = lambda j: names[j] if j >= 0 else None  # noqa: E731
        row[method] = {"max_probability": pick(agg["max_probability"]), "majority": pick(agg["majority"]),
                       "raw": round(float(np.mean([p in answer.truth for p in agg["raw"]])), 3) if len(agg["raw"]) else None}

    for a in emb:
        put(a, labels, "neighbours")
    for a in base:
        put(a, labels, "baseline")
    for a in clf:
        put(a, clf_labels, "classifier")
    return [rows[i] for i in sorted(rows, key=lambda i: songs[i].path)]


def headline(report: dict) -> dict:
    """The few numbers to quote: 3-s identification, unknown rate, label accuracy, baseline beside."""
    out: dict = {}
    ident = report["sections"].get("identification")
    if ident:
        for method, table in ident["in_library"].items():
            cells = table.get("3s") or next(iter(table.values()), {})
            for condition, cell in cells.items():
                out[f"{method} id top-1 3s {condition}"] = cell["top1"]
        for method, table in ident["held_out"].items():
            cells = table.get("3s") or next(iter(table.values()), {})
            n = sum(c["n"] for c in cells.values())
            if n:
                out[f"{method} unknown rate 3s held-out"] = round(sum(c["unknown"] * c["n"] for c in cells.values()) / n, 4)
    for method in ("labels", "baseline", "classifier"):
        section = report["sections"].get(method) or {}
        for group in ("all", "seen", "unseen"):
            scores = section.get(group)
            if isinstance(scores, dict) and scores.get("tracks"):
                out[f"{method} track accuracy {group}"] = scores["max_probability"]
                out[f"{method} sub-track accuracy {group}"] = scores["raw"]
    return out


# -- command line --------------------------------------------------------------------------------
def add_cli(command) -> None:
    p = command("evaluate", "Measure identification, labelling, the embedding map and search speed on the "
                            "library's own tracks (splits by song) and write a report.", run_cli)
    p.add_argument("--holdout", type=float, default=0.2,
                   help="share of songs kept out of the identification index to measure 'unknown' (default 0.2)")
    p.add_argument("--out", type=Path, help="output folder for report.md, report.json and figures "
                                            "(default LIBRARY/evaluation)")
    p.add_argument("--json", action="store_true", help="print the report's numbers as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, clip offsets and degradations (default 0)")
    p.add_argument("--clips-per-song", type=int, help="random clip offsets per song and duration (default 3)")
    p.add_argument("--durations", help="clip lengths in seconds, comma-separated (default 1,3,5,10)")
    p.add_argument("--noise", type=Path, help="folder of recorded noises to mix into clips (default: coloured noise)")
    p.add_argument("--train-config", type=Path,
                   help="the encoder's training run config.json, when it is not found beside the model")
    p.add_argument("--classifier", type=Path,
                   help="checkpoint with a classifier head (a run's model.safetensors) when the library's has none")
    p.add_argument("--include-trained", action="store_true", help="also query songs the encoder was trained on")
    p.add_argument("--skip", action="append", default=[], choices=SECTIONS, help="leave a section out (repeatable)")
    p.add_argument("--timing-vectors", type=int, help="snippets indexed for search timing (default 20000)")
    p.add_argument("--map-points", type=int, help="sub-tracks drawn in the t-SNE / PCA map (default 2000)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads for the network and BLAS (default: as they are; 1 is faster on a busy machine)")
    p.add_argument("--quick", action="store_true", help="a fast check: 1- and 3-s clips, one per song, small samples")


def config_from_args(args) -> EvalConfig:
    cfg = EvalConfig.quick() if args.quick else EvalConfig()
    clips = cfg.clips
    if args.clips_per_song is not None:
        clips = replace(clips, clips_per_song=args.clips_per_song)
    if args.durations:
        clips = replace(clips, durations_s=tuple(float(d) for d in args.durations.split(",") if d.strip()))
    timing = cfg.timing if args.timing_vectors is None else replace(cfg.timing, max_vectors=args.timing_vectors)
    return replace(cfg, holdout=args.holdout, seed=args.seed, clips=clips, timing=timing,
                   sections=tuple(s for s in SECTIONS if s not in args.skip),
                   map_points=args.map_points if args.map_points is not None else cfg.map_points,
                   noise_dir=str(args.noise) if args.noise else None,
                   train_config=str(args.train_config) if args.train_config else None,
                   classifier=str(args.classifier) if args.classifier else None,
                   include_trained=args.include_trained, threads=args.threads)


def run_cli(args) -> int:
    import sys

    from tqdm import tqdm

    from tuneprint.server.library import Library

    if not 0.0 <= args.holdout < 1.0:
        print("tuneprint evaluate: error: --holdout must be in [0, 1)", file=sys.stderr)
        return 2
    cfg = config_from_args(args)
    out = args.out or args.library / "evaluation"
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="step", disable=None, file=sys.stderr)
        bar.n = done
        bar.refresh()

    with Library.open(args.library) as lib:
        report = evaluate(lib, cfg, out_dir=out, progress=progress)
    for bar in bars.values():
        bar.close()
    if args.json:
        print(json.dumps(report))
    else:
        print(f"report: {out / 'report.md'} (numbers in {out / 'report.json'})")
        for key, value in report["headline"].items():
            print(f"  {key:45s} {'n/a' if value is None else f'{value:.1%}'}")
    return 0
