"""`tuneprint evaluate`: how well a library works on its own music.

    from tuneprint.server.library import Library
    from tuneprint.server.evaluation import EvalConfig, evaluate

    with Library.open("my-library") as lib:
        report = evaluate(lib, EvalConfig(holdout=0.2), out_dir="my-library/evaluation")

Sections (each in its own module; this one plans the run and ties them together):

- identification (:mod:`.identification`): clips of 1/3/5/10 s, clean and degraded,
  top-1/top-2, offset error, and the "unknown" rate for clips of held-out songs;
- labels by neighbours and their aggregation (:mod:`.labels`): leave-one-song-out
  k-NN over sub-tracks, raw / maximum probability / majority, confusion matrix, per-label
  precision and recall, for labels the encoder saw in training and labels it never saw;
- the classifier head (:mod:`.classifier`), aggregated the same three ways, when the model has one;
- the MFCC-statistics baseline: the same patches and the same k-NN votes;
- the embedding map (t-SNE and PCA, coloured by label; :mod:`.figures`);
- search timing with recall (:mod:`.timing`);
- the classifiers trained on the library's own labels and tags (:mod:`.classifiers`): a head on
  the embeddings, the CNN on log-mel and CQT and the 10-NN vote, learnt from the training songs of
  a split by song and measured on the held-out ones;
- ``report.md``, ``report.json`` and the PNGs (:mod:`.report`).

Splits are by song (:mod:`.data`); songs the encoder was trained on are not queried
when its training run is known.
"""
from __future__ import annotations

import logging
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from tuneprint.encoder.audio import load_audio
from tuneprint.encoder.features import audio_to_patches
from tuneprint.errors import AudioError

from .classifier import ClassifierHead, classifier_head, classifier_probs, score_classifier
from .clips import ClipConfig, load_noises
from .data import EvalSplit, Provenance, Snippets, find_provenance, load_snippets, plan_split, subtrack_rows
from .identification import IdentificationRun
from .labels import (BaselineReference, LabelGroups, TrackAnswer, baseline_reference, knn_track_answers, label_groups,
                     label_matrix, mfcc_stats, neighbour_label_shares, score_tracks)
from .report import headline, track_table
from .timing import TimingConfig, search_timing

log = logging.getLogger(__name__)

SECTIONS = ("identification", "labels", "classifier", "baseline", "map", "timing", "classifiers")
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
    cnn_inputs: tuple[str, ...] = ("mel", "cqt")  # the trained CNN's inputs in "classifiers"; () for none
    cnn_epochs: int = 10

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def quick(cls, **overrides) -> "EvalConfig":
        """A fast run for checks: 1- and 3-s clips, one per song, small map and timing sample, 3 CNN epochs."""
        base = cls(clips=ClipConfig(durations_s=(1.0, 3.0), clips_per_song=1), map_points=300,
                   timing=TimingConfig(max_vectors=2000, queries=20, ks=(10, 30, 100), pq_m=16), cnn_epochs=3)
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


@dataclass(frozen=True)
class Plan:
    """What is measured on what: the library's snippets, the encoder's provenance and the split by song."""

    snippets: Snippets
    provenance: Provenance
    split: EvalSplit
    labels: list[str]  # every label of the library, sorted
    sections: frozenset[str]

    @property
    def songs(self):
        return self.snippets.songs


@dataclass
class AudioPass:
    """What one pass over the songs' audio gathered, besides the identification clips."""

    baseline: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # song → (MFCC stats, offsets)
    classifier: dict[int, np.ndarray] = field(default_factory=dict)  # song → its patches' classifier softmax
    unreadable: list[str] = field(default_factory=list)  # song ids that could not be decoded


class _Clock:
    """Seconds spent in each stage, for the report."""

    def __init__(self):
        self.started = self.last = time.perf_counter()
        self.stages: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = round(now - self.last, 1)
        self.last = now


def _evaluate(lib, cfg: EvalConfig, out_dir, progress: Progress | None) -> dict:
    unknown = set(cfg.sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    clock = _Clock()
    plan = make_plan(lib, cfg)
    report = report_head(lib, cfg, plan)
    if not plan.songs:
        report["split"]["notes"].append("the library holds no songs: nothing to evaluate")
        return _finish(report, out_dir, clock.started)

    noises = load_noises(cfg.noise_dir, lib.features.sample_rate, cfg.max_noise_files, cfg.seed)
    report["noise"] = {"recorded_files": len(noises), "folder": cfg.noise_dir}
    ident = identification_run(lib, cfg, plan, noises) if "identification" in plan.sections else None
    head = classifier_head(lib, cfg.classifier, plan.provenance) if "classifier" in plan.sections else None
    clock.lap("snippets, split, noises")
    audio = audio_pass(lib, plan, ident, head, progress)
    report["split"]["unreadable_songs"] = audio.unreadable
    clock.lap("audio pass (clips, baseline features, classifier)")

    if ident is not None:
        report["sections"]["identification"] = identification_section(ident, plan, cfg, audio)
        clock.lap("identification votes")
    answers = label_sections(lib, cfg, plan, audio, head, report, out_dir, clock, progress)
    if "timing" in plan.sections:
        report["sections"]["timing"] = search_timing(plan.snippets.vectors, cfg.timing,
                                                     progress=lambda d, t: progress and progress("timing", d, t))
        clock.lap("search timing")
    if "classifiers" in plan.sections:
        report["sections"]["classifiers"] = classifiers_section(lib, cfg, plan, progress)
        clock.lap("trained classifiers")
    report["stage_seconds"] = clock.stages
    report["tracks"] = track_table(plan.songs, answers.groups, answers.table(plan.labels, head))
    return _finish(report, out_dir, clock.started)


def _finish(report: dict, out_dir, started: float) -> dict:
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["headline"] = headline(report)
    if out_dir is not None:
        from .report import write_report

        write_report(report, Path(out_dir))
    return report


def make_plan(lib, cfg: EvalConfig) -> Plan:
    """The library's snippets, the encoder's training provenance and the split by song."""
    snippets = load_snippets(lib)
    provenance = find_provenance(lib, cfg.train_config)
    split = plan_split(snippets.songs, provenance, holdout=cfg.holdout, seed=cfg.seed,
                       include_trained=cfg.include_trained)
    labels = sorted({label for s in snippets.songs for label in s.labels})
    return Plan(snippets, provenance, split, labels, frozenset(cfg.sections))


def report_head(lib, cfg: EvalConfig, plan: Plan) -> dict:
    """The report's description of the library, model, configuration, split and machine."""
    settings = lib.settings
    return {
        "report_version": REPORT_VERSION,
        "library": {"path": str(lib.root), "songs": len(plan.songs), "snippets": len(plan.snippets),
                    "labels": plan.labels, "backend": settings.index.backend, "vote": settings.vote.to_dict(),
                    "index_hop_s": round(settings.index_hop_frames * lib.features.frame_seconds, 4),
                    "query_hop_s": round(settings.query_hop_frames * lib.features.frame_seconds, 4)},
        "model": {"model_id": lib.model_id, "spec": settings.model, "provenance": plan.provenance.to_dict()},
        "config": cfg.to_dict(), "split": plan.split.to_dict(plan.songs), "sections": {}, "figures": {},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def identification_run(lib, cfg: EvalConfig, plan: Plan, noises: list[np.ndarray]) -> IdentificationRun:
    """An identification index of the in-library songs, deciding as the library does (its catalog's
    spectrograms verify) with the "unknown" bar at that index's size."""
    vote = lib.settings.vote.for_library(len(plan.split.index))
    return IdentificationRun(lib.embedder, lib.features, lib.settings.index, vote, lib.settings.query_hop_frames,
                             plan.snippets, plan.split, cfg.clips, cfg.seed, noises, spectrograms=lib.catalog)


def audio_pass(lib, plan: Plan, ident: IdentificationRun | None, head: ClassifierHead | None,
               progress: Progress | None) -> AudioPass:
    """One pass over the audio of the songs any section needs: identification clips, baseline
    features, classifier probabilities."""
    songs, split = plan.songs, plan.split
    classify = head is not None and head.net is not None
    need = (ident.wanted if ident is not None else set()) | (set(split.label_queries) if classify else set())
    if "baseline" in plan.sections:
        need |= set(range(len(songs)))
    found = AudioPass()
    for done, i in enumerate(sorted(need), 1):
        try:
            y = load_audio(songs[i].path, sr=lib.features.sample_rate)
        except AudioError as e:
            log.warning("skipping %s", e)
            found.unreadable.append(songs[i].song_id)
            continue
        if ident is not None:
            ident.visit(i, y)
        if "baseline" in plan.sections:
            cut = _patches(y, lib.settings.index_hop_frames, lib.features, f"baseline: skipping {songs[i].path}")
            if cut is not None:
                found.baseline[i] = (mfcc_stats(cut[0]), cut[1])
        if classify and i in split.label_queries and head.queries(songs[i]):
            cut = _patches(y, lib.features.patch_frames, lib.features, f"classifier: skipping {songs[i].path}")
            if cut is not None:
                found.classifier[i] = classifier_probs(head.net, cut[0])
        if progress:
            progress("audio", done, len(need))
    return found


def _patches(y: np.ndarray, hop_frames: int, features, skipping: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The patches of ``y`` every ``hop_frames`` and their offsets; None (logged) for a song too short or silent."""
    try:
        return audio_to_patches(y, hop_frames=hop_frames, cfg=features)
    except AudioError as e:
        log.warning("%s: %s", skipping, e)
        return None


def identification_section(ident: IdentificationRun, plan: Plan, cfg: EvalConfig, audio: AudioPass) -> dict:
    leaked = ident.indexed_songs() & {plan.songs[i].song_id for i in plan.split.held_out}
    if leaked:  # the split's one promise; never expected, always checked
        raise RuntimeError(f"held-out songs in the identification index: {sorted(leaked)}")
    return {"conditions": cfg.clips.to_dict(), **ident.finish(audio.baseline or None)}


@dataclass
class LabelAnswers:
    """Every method's track answers, for the per-track table."""

    groups: LabelGroups
    neighbours: list[TrackAnswer] = field(default_factory=list)
    baseline: list[TrackAnswer] = field(default_factory=list)
    classifier: list[TrackAnswer] = field(default_factory=list)

    def table(self, labels: list[str], head: ClassifierHead | None) -> dict[str, tuple[list[TrackAnswer], list[str]]]:
        return {"neighbours": (self.neighbours, labels), "baseline": (self.baseline, labels),
                "classifier": (self.classifier, head.labels if head is not None and head.labels else [])}


@dataclass(frozen=True)
class LabelQueries:
    """What every labelling method answers: the same query tracks, cut into the same sub-tracks."""

    subtrack_s: float
    truth: dict[int, tuple[int, ...]]  # song → positions of its labels
    matrix: np.ndarray  # [shape=(songs, labels)] each song's label vote (:func:`.labels.label_matrix`)
    k: int


def label_sections(lib, cfg: EvalConfig, plan: Plan, audio: AudioPass, head: ClassifierHead | None, report: dict,
                   out_dir, clock: _Clock, progress: Progress | None) -> LabelAnswers:
    """Labels by neighbours (embedding and baseline), the classifier head and the embedding map, into ``report``."""
    songs, queries_, sections = plan.songs, plan.split.label_queries, report["sections"]
    answers = LabelAnswers(label_groups(songs, queries_, plan.provenance.seen_labels))
    q = LabelQueries(cfg.subtrack_s or lib.features.patch_seconds,
                     {i: tuple(plan.labels.index(label) for label in songs[i].labels) for i in queries_},
                     label_matrix([s.labels for s in songs], plan.labels), lib.settings.vote.k)
    if "labels" in plan.sections and queries_:
        sections["labels"], answers.neighbours = neighbours_section(plan, q, answers.groups, progress)
        if lib.style is not None:
            sections["style_labels"] = style_section(lib, plan, q, answers.groups)
    base_ref = None
    if "baseline" in plan.sections and audio.baseline and queries_:
        base_ref = baseline_reference(audio.baseline)
        sections["baseline"], answers.baseline = baseline_section(base_ref, plan, q, answers.groups)
    clock.lap("labels")
    if head is not None:
        sections["classifier"], answers.classifier = score_classifier(head, audio.classifier, songs, answers.groups)
    if "map" in plan.sections and queries_ and out_dir is not None:
        from .figures import embedding_map

        sections["map"], figures = embedding_map(plan.snippets, queries_, q.subtrack_s, plan.provenance,
                                                 cfg.map_points, cfg.seed, Path(out_dir), baseline=base_ref)
        report["figures"].update(figures)
        clock.lap("map")
    return answers


def _by_group(answers: list[TrackAnswer], groups: LabelGroups, labels: list[str]) -> dict:
    return {g: score_tracks([a for a in answers if a.song in members], labels) for g, members in groups.members.items()}


def neighbours_section(plan: Plan, q: LabelQueries, groups: LabelGroups,
                       progress: Progress | None) -> tuple[dict, list[TrackAnswer]]:
    """Leave-one-song-out k-NN labels of the stored snippets' sub-tracks."""
    snippets = plan.snippets
    rows = {i: snippets.rows_of(i) for i in plan.split.label_queries}
    rows = {i: r[subtrack_rows(snippets.offsets_s[r], q.subtrack_s)] for i, r in rows.items()}
    answers = knn_track_answers(snippets.vectors, snippets.song, rows, q.matrix, q.truth, q.k,
                                progress=lambda d, t: progress and progress("labels", d, t))
    section = {"method": f"leave-one-song-out {q.k}-NN vote of the stored snippets",
               "subtrack_s": round(q.subtrack_s, 3), "k": q.k, "groups": groups.counts,
               **_by_group(answers, groups, plan.labels)}
    return section, answers


def style_section(lib, plan: Plan, q: LabelQueries, groups: LabelGroups) -> dict:
    """Leave-one-song-out labels of whole tracks by the style index: the majority of the
    ``style_k`` tracks nearest in style, what ``tuneprint genre`` answers (server/style.py)."""
    from tuneprint.errors import MismatchError

    k = lib.settings.style_k
    try:
        index = lib.style_index()
    except MismatchError as e:
        return {"skipped": str(e)}
    position = {song.song_id: i for i, song in enumerate(plan.songs)}
    answers = []
    for i in plan.split.label_queries:
        song_id = plan.songs[i].song_id
        if song_id in index:
            near = index.search(index.vector(song_id), k, exclude={song_id})
            rows = np.array([[position.get(s, -1) for s, _ in near]], dtype=np.int64)
            answers.append(TrackAnswer(i, q.truth[i], neighbour_label_shares(rows, q.matrix)))
    return {"method": f"leave-one-song-out {k}-NN vote of whole tracks' style vectors", "k": k,
            **_by_group(answers, groups, plan.labels)}


def baseline_section(ref: BaselineReference, plan: Plan, q: LabelQueries,
                     groups: LabelGroups) -> tuple[dict, list[TrackAnswer]]:
    """The same k-NN labels over MFCC statistics of the same patches."""
    rows = {i: ref.subtracks(i, q.subtrack_s) for i in plan.split.label_queries if i in ref.rows}
    answers = knn_track_answers(ref.vectors, ref.song, rows, q.matrix, q.truth, q.k)
    section = {"method": "MFCC statistics (mean and std of 20 MFCCs of the encoder's own log-mel patch, z-scored, "
                         f"cosine) per 3-s patch, the same {q.k}-NN vote",
               **_by_group(answers, groups, plan.labels)}
    return section, answers


def classifiers_section(lib, cfg: EvalConfig, plan: Plan, progress: Progress | None) -> dict:
    """Classifiers learnt from the library's own labels and tags on a split by song, measured on the
    held-out songs; ``skipped`` says why not, when they cannot be."""
    from tuneprint.errors import LibraryError

    from .classifiers import evaluate_classifiers, split_labelled

    stored = [plan.songs[i] for i in np.unique(plan.snippets.song)]  # songs without snippets cannot be read
    split = split_labelled(stored, holdout=cfg.holdout, seed=cfg.seed, trained_on=plan.provenance.trained_on,
                           include_trained=cfg.include_trained)
    section = {"holdout": cfg.holdout, "seed": cfg.seed, "cnn_inputs": list(cfg.cnn_inputs),
               "cnn_epochs": cfg.cnn_epochs, "split_notes": split.notes,
               "held_out": sorted(s for s, part in split.parts.items() if part == "test")}
    if split.skipped:
        return {**section, "skipped": split.skipped}
    total = 2 + len(cfg.cnn_inputs)  # the head, the 10-NN vote, each CNN
    done = iter(range(1, total + 1))

    def say(message: str) -> None:
        log.info(message)
        if progress:
            progress("classifiers", next(done, total), total)

    try:
        ev = evaluate_classifiers(lib, split.parts, cnn_inputs=cfg.cnn_inputs, cnn_epochs=cfg.cnn_epochs,
                                  timing_tracks=0, progress=say)
    except LibraryError as e:
        return {**section, "skipped": str(e)}
    if not ev.tags:
        ev.notes.append("the training tracks carry no tags (`tuneprint label SONG_ID TAG...`, `tuneprint add --tag T`): "
                        "the tag part is left out")
    return {**section, **ev.to_dict()}
