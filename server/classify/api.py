"""Train a classifier on a library's labelled tracks, and ask it about clips.

    report = train_classifier(lib, ClassifierConfig(depth=1))   # stored in the library folder
    answer = classify(lib, "clip.wav")                          # -> Classification
    answer.to_dict()  # {"query", "music", "label", "labels": [[label, p], ...], "tags": [[tag, p], ...], "model", ...}

A clip is embedded as for identification, cut into segments (inputs.py), each segment gets
probabilities from the classifier, and the clip's answer aggregates them (aggregate.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..answers import NOT_MUSIC
from .aggregate import aggregate, ranked
from .config import ClassifierConfig
from .store import Classifier, has_classifier, load_classifier
from .train import TrainingReport, fit_classifier, train_classifier

log = logging.getLogger(__name__)

__all__ = ["Classification", "ClassifierConfig", "TrainingReport", "classify", "classify_embeddings",
           "fit_classifier", "has_classifier", "load_classifier", "segment_probabilities", "train_classifier"]


@dataclass(frozen=True)
class Classification:
    """A clip's labels and tags, as one trained classifier sees them."""

    query: str
    music: bool | None  # the music gate's verdict; None where the library's encoder has no gate
    label: str | None  # the top label; None when the clip is "unknown" or not music (``reason``)
    labels: list[tuple[str, float]]  # every label, most probable first
    tags: list[tuple[str, float]]  # every tag, most probable first; a tag applies from ``tag_threshold``
    model: str  # "head" or "cnn"
    reason: str | None = None  # "unknown" (far from every label it learnt, or unsure) or "not_music"
    aggregate: str = "raw"
    segments: int = 0
    clip_s: float | None = None
    distance: float | None = None  # how far the clip lies from what the classifier learnt from (heads.distance)
    tag_threshold: float = 0.5

    def to_dict(self) -> dict:
        return {"query": self.query, "music": self.music, "label": self.label,
                "labels": [[name, round(p, 4)] for name, p in self.labels],
                "tags": [[name, round(p, 4)] for name, p in self.tags],
                "model": self.model, "reason": self.reason, "aggregate": self.aggregate, "segments": self.segments,
                "clip_s": None if self.clip_s is None else round(self.clip_s, 2),
                "distance": None if self.distance is None else round(self.distance, 4),
                "tag_threshold": self.tag_threshold}

    def applied_tags(self) -> list[str]:
        return [name for name, p in self.tags if p >= self.tag_threshold]


def classify(lib, clip, *, name: str | None = None) -> Classification:
    """Labels and tags of a clip (a file, its bytes, or samples at the library's rate) by the
    library's trained classifier. Raises LibraryError when the library has none."""
    from tuneprint.encoder.audio import load_audio

    clf = load_classifier(lib)  # first: no decoding for a library that cannot answer
    if isinstance(clip, np.ndarray):
        y = clip.astype(np.float32)
    else:
        y = load_audio(clip, sr=lib.features.sample_rate, min_seconds=lib.features.min_clip_seconds)
    if name is None:
        name = ("samples" if isinstance(clip, np.ndarray) else "upload" if isinstance(clip, bytes)
                else str(Path(clip).resolve()))
    return classify_embeddings(lib, lib.embed_clip(y), name=name, y=y, clf=clf)


def classify_embeddings(lib, emb, *, name: str = "", y: np.ndarray | None = None, clf: Classifier | None = None,
                        gate: bool = True) -> Classification:
    """:func:`classify` of an embedded clip (``y``, its samples, only for a CQT-reading CNN);
    ``gate=False`` leaves the music gate to the caller (``music`` None)."""
    clf = clf or load_classifier(lib)
    cfg = clf.config
    clip_s = emb.spectrogram.shape[1] * lib.features.frame_seconds if emb.spectrogram is not None else None
    music = lib.music(emb) if gate else None
    if music is False:
        return Classification(name, False, None, [], [], cfg.model, NOT_MUSIC, cfg.aggregate, 0, clip_s,
                              tag_threshold=cfg.tag_threshold)
    label_p, tag_p, x = segment_probabilities(lib, emb, clf, y)
    return _answer(clf, name, music, label_p, tag_p, x, clip_s)


def segment_probabilities(lib, emb, clf: Classifier, y: np.ndarray | None = None):
    """Each segment's probabilities, before aggregation (what an evaluation compares the
    aggregations on).

    Returns
    -------
    label_p : np.ndarray [shape=(segments, labels)] softmax rows
    tag_p : np.ndarray [shape=(segments, tags)] sigmoids
    x : np.ndarray [shape=(s, D)] the clip's segment embeddings (the "unknown" rule reads them)
    """
    from .inputs import cqt_db, segment_means, spectrogram_segments

    cfg = clf.config
    x = segment_means(emb.vectors, emb.offsets_s, lib.features.patch_seconds, cfg.segment_s)
    if cfg.model == "cnn":
        from .cnn import predict_joint

        if cfg.input == "cqt" and y is None:
            raise ValueError("a CQT classifier needs the clip's samples")
        S = emb.spectrogram if cfg.input == "mel" else cqt_db(y, lib.features)
        segments = spectrogram_segments(S, lib.features.frame_seconds, cfg.segment_s, cfg.segment_s / 2)
        label_p, tag_p = predict_joint(clf.nets["cnn"], segments)
        return label_p, tag_p, x
    from .heads import predict

    label_p = predict(clf.nets["labels"], x, multi_label=False)
    tag_p = predict(clf.nets["tags"], x, multi_label=True) if "tags" in clf.nets else np.zeros((len(x), 0))
    return label_p, tag_p, x


def _answer(clf: Classifier, name: str, music: bool | None, label_p: np.ndarray, tag_p: np.ndarray,
            x: np.ndarray, clip_s: float | None) -> Classification:
    """Aggregate the segments' probabilities and decide between a label and "unknown"."""
    from .heads import distance

    cfg = clf.config
    p = aggregate(label_p, cfg.aggregate)
    labels = ranked(clf.labels, p, tiebreak=label_p.mean(axis=0))
    tags = ranked(clf.tags, aggregate(tag_p, cfg.aggregate, multi_label=True, threshold=cfg.tag_threshold),
                  tiebreak=tag_p.mean(axis=0)) if tag_p.shape[1] else []
    far = float(distance(x, clf.subspace).mean()) if len(x) else None
    unknown = (cfg.unknown == "distance" and (far is None or far > clf.distance_bar)) or \
              (cfg.unknown == "probability" and labels[0][1] < cfg.min_probability)
    return Classification(name, music, None if unknown else labels[0][0], labels, tags, cfg.model,
                          "unknown" if unknown else None, cfg.aggregate, len(label_p), clip_s, far,
                          cfg.tag_threshold)
