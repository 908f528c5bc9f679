"""The settings of a classifier: what it learns from, its shape, how it trains, how it answers.

Light on purpose (no numerical imports): the command line builds one from its options, and a
trained classifier stores the one it was trained with (``classifier.json``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

MODELS = ("head", "cnn")  # dense layers over the encoder's embeddings / a CNN over spectrograms
INPUTS = ("mel", "cqt")  # the CNN's input: the catalog's stored log-mel, or a constant-Q transform of the file
NETWORKS = ("shallow", "deep")  # the CNN's size
AGGREGATIONS = ("raw", "max", "majority")  # segments → one answer (aggregate.py)
UNKNOWN_RULES = ("distance", "probability", "off")  # when a clip's label is "unknown" (heads.py)
OTHERS = "Others"  # the tag that rare tags are folded into


@dataclass(frozen=True)
class ClassifierConfig:
    """How to train a classifier and how it answers.

    Inputs are cut into segments of ``segment_s`` seconds; a head reads the mean of the encoder's
    patch embeddings over each segment, a CNN the segment's spectrogram. A clip's answer
    aggregates its segments' probabilities (``aggregate``).
    """

    model: str = "head"
    input: str = "mel"  # CNN only
    network: str = "shallow"  # CNN only: one convolution per pipeline, or four
    depth: int = 1  # head only: hidden layers (0: a linear classifier)
    hidden: int = 256  # units of each hidden layer
    dropout: float = 0.2
    class_weights: bool = True  # weigh each label (tag) by how rare it is, so small ones count
    others_min_tracks: int = 2  # tags on fewer tracks are folded into "Others" (0: keep every tag)
    unknown: str = "distance"  # "distance": far from every training segment; "probability": top label below a bar
    unknown_quantile: float = 0.03  # distance: the bar is this quantile of training tracks' own similarities
    min_probability: float = 0.5  # probability: a clip whose top label has less is "unknown"
    tag_threshold: float = 0.5  # a tag applies when its probability reaches this
    segment_s: float = 3.0
    aggregate: str = "raw"
    epochs: int = 30
    lr: float = 1e-3
    lr_decay: float = 0.95  # exponential decay: the learning rate of epoch e is lr · lr_decay ** e
    weight_decay: float = 1e-4
    batch_size: int = 256
    max_segments: int = 100  # per track and training pass, evenly spread: long tracks do not outweigh short ones
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (("model", MODELS), ("input", INPUTS), ("network", NETWORKS),
                              ("aggregate", AGGREGATIONS), ("unknown", UNKNOWN_RULES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        checks = [(0 <= self.depth <= 4, "depth must be between 0 and 4"),
                  (self.hidden >= 1, "hidden must be at least 1"),
                  (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
                  (self.others_min_tracks >= 0, "others_min_tracks must be 0 or more"),
                  (0 <= self.unknown_quantile < 1, "unknown_quantile must be in [0, 1)"),
                  (0 <= self.min_probability <= 1, "min_probability must be in [0, 1]"),
                  (0 < self.tag_threshold < 1, "tag_threshold must be in (0, 1)"),
                  (1.0 <= self.segment_s <= 30.0, "segment_s must be between 1 and 30 seconds"),
                  (self.epochs >= 1, "epochs must be at least 1"),
                  (self.lr > 0, "lr must be positive"),
                  (0 < self.lr_decay <= 1, "lr_decay must be in (0, 1]"),
                  (self.weight_decay >= 0, "weight_decay must be 0 or more"),
                  (self.batch_size >= 1, "batch_size must be at least 1"),
                  (self.max_segments >= 1, "max_segments must be at least 1")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ClassifierConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
