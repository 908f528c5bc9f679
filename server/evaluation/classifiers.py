"""The classifiers (``tuneprint.server.classify``) measured on held-out songs: on the development
corpus (``scripts/evaluate_classifiers.py``) and on a user's own library (``tuneprint evaluate``'s
"classifiers" section, split by :func:`split_labelled`).

On the corpus, the library holds the seen collections' songs (``split_corpus``: train, val and test), each with
its collection as label and tags derived from its stored log-mel (:func:`derive_tags`). The
classifiers learn from the *train* songs only; the *val* and *test* songs (no tuning is done
here, so both are held out) are the queries. Each query track is read from the library's index
(its stored patch embeddings) and its stored log-mel, cut into non-overlapping segments, and
answered per segment; the track's answer aggregates its segments raw / max / majority.

Compared, on the same held-out tracks:

- the head on the encoder's embeddings vs the CNN on the log-mel (and on the CQT, optionally);
- the trained head vs the 10-NN vote: each segment's patches vote with their 10 nearest
  *training* patches' labels (the library's own ``genre`` rule, restricted to the songs the head
  learnt from, so both saw the same examples);
- multi-label tags: the head's sigmoids, per tag.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tuneprint.encoder.splits import song_unit
from tuneprint.server.classify.inputs import track_spectrogram
from tuneprint.errors import LibraryError, TuneprintError

from .classifier_metrics import LabelScores, label_scores, single_label_scores

log = logging.getLogger(__name__)

HOW = ("raw", "max", "majority")
TEMPO_BANDS = ((0.0, "tempo-slow"), (100.0, "tempo-mid"), (140.0, "tempo-fast"))  # lower bound (BPM), tag


# -- the library -----------------------------------------------------------------------------
def build_library(corpus: str | Path, root: str | Path, parts=("train", "val", "test")):
    """Open (or create) the library at ``root`` holding the songs of ``parts`` of the corpus's
    split, each labelled with its collection; songs missing from it are added (embedded).

    Returns
    -------
    lib : the open Library
    split : {song_id: part} of the library's songs that belong to ``parts``
    """
    from tuneprint.server.library import Library, LibrarySettings

    from .corpus import split_corpus

    parts_of = {str(Path(p).resolve()): (part, label) for part, items in split_corpus(corpus).items()
                if part in parts for p, label in items}
    root = Path(root)
    lib = Library.open(root) if (root / "settings.json").is_file() else Library.create(root, LibrarySettings())
    have = {str(Path(s.path).resolve()) for s in lib.tracks()}
    missing = [p for p in parts_of if p not in have]
    if missing:
        log.info("adding %d corpus songs to %s", len(missing), root)
        lib.add(missing, labels={p: [parts_of[p][1]] for p in missing}, allow_non_music=True)
    split = {s.song_id: parts_of[str(Path(s.path).resolve())][0] for s in lib.tracks()
             if str(Path(s.path).resolve()) in parts_of}
    return lib, split


def track_descriptors(S_db: np.ndarray, features) -> tuple[float, float]:
    """(tempo in BPM, median spectral centroid in Hz) of a stored log-mel [shape=(n_mels, frames)]."""
    import librosa

    onset = librosa.onset.onset_strength(S=S_db, sr=features.sample_rate, hop_length=features.hop_length)
    tempo = float(np.atleast_1d(librosa.feature.tempo(onset_envelope=onset, sr=features.sample_rate,
                                                      hop_length=features.hop_length))[0])
    centres = librosa.mel_frequencies(n_mels=S_db.shape[0] + 2, fmax=features.sample_rate / 2)[1:-1]
    power = 10.0 ** (S_db / 10.0)
    centroid = (centres[:, None] * power).sum(axis=0) / np.maximum(power.sum(axis=0), 1e-12)
    return tempo, float(np.median(centroid))


def derive_tags(lib, split: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """Each track's tags: its collection, a tempo band and "bright"/"dark", written into the library.

    The tempo is librosa's estimate from the onset strength of the track's log-mel (bands:
    TEMPO_BANDS); "bright" when the track's median spectral centroid reaches the median of the
    *training* tracks' (so the held-out tracks do not set the bar).
    """
    songs = {s.song_id: s for s in lib.tracks() if s.song_id in split}
    desc = {}
    for sid, song in songs.items():
        S = track_spectrogram(lib, song, "mel")
        desc[sid] = track_descriptors(S, lib.features) if S is not None else (0.0, 0.0)
    bar = float(np.median([desc[s][1] for s in songs if split[s] == "train"]))
    tags = {}
    for sid, song in songs.items():
        tempo, centroid = desc[sid]
        band = [name for low, name in TEMPO_BANDS if tempo >= low][-1]
        tags[sid] = tuple(sorted({*song.labels, band, "bright" if centroid >= bar else "dark"}))
        if tuple(song.tags) != tags[sid]:
            lib.set_tags(sid, tags[sid])
    log.info("tags: centroid bar %.0f Hz", bar)
    return tags


# -- a user's library: its labelled tracks split by song ---------------------------------------
@dataclass
class LabelledSplit:
    """The labelled tracks of a library split by song for the classifiers; ``skipped`` says why
    nothing can be measured (then ``parts`` is empty)."""

    parts: dict[str, str]  # song_id → "train" | "test"
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None


def split_labelled(songs, *, holdout: float, seed: int, trained_on: Callable = lambda song: False,
                   include_trained: bool = False) -> LabelledSplit:
    """Hold out ``round(holdout · n)`` of each label's ``n`` tracks (at least one, never all), by
    song, deterministically from file names and ``seed`` (the order of ``plan_split``).

    A track counts under its first label (labels are stored sorted). Songs the encoder was trained
    on (``trained_on``) are not held out unless ``include_trained`` or a label has no other song.
    """
    labelled = [s for s in songs if s.labels]
    labels = sorted({label for s in labelled for label in s.labels})
    if len(labels) < 2:
        return LabelledSplit({}, skipped=f"the classifiers need tracks of at least two labels; the library has "
                             f"{len(labelled)} labelled tracks (labels: {', '.join(labels) or 'none'}). Label tracks "
                             "with `tuneprint add --label L` or `tuneprint label SONG_ID --label L`")
    if holdout <= 0:
        return LabelledSplit({}, skipped="--holdout 0 holds no track out of the classifiers' training")
    strata: dict[str, list] = defaultdict(list)
    for s in labelled:
        strata[s.labels[0]].append(s)
    parts, notes = {s.song_id: "train" for s in labelled}, []
    for label, members in sorted(strata.items()):
        if len(members) < 2:
            continue
        order = sorted(members, key=lambda s: (trained_on(s), song_unit(s.path, salt=f"tuneprint-eval:{seed}"),
                                               s.song_id))
        pick = order if include_trained else [s for s in order if not trained_on(s)]
        if not pick:
            notes.append(f"every track of {label!r} was in the encoder's training set: its held-out tracks are "
                         "trained songs and its numbers optimistic")
            pick = order
        for s in pick[: min(len(members) - 1, max(1, int(round(holdout * len(members)))))]:
            parts[s.song_id] = "test"
    single = sorted(label for label, members in strata.items() if len(members) < 2)
    if "test" not in parts.values():
        return LabelledSplit({}, skipped=f"too few labelled tracks to split by song: every label has a single "
                             f"track ({len(labelled)} labelled tracks)")
    if single:
        notes.append(f"labels with a single track are learnt but not measured: {', '.join(single)}")
    several = sum(len(s.labels) > 1 for s in labelled)
    if several:
        notes.append(f"{several} tracks carry several labels: each is scored on its first (alphabetical)")
    return LabelledSplit(parts, notes)


# -- held-out tracks' segment answers --------------------------------------------------------
def track_patches(lib, song_id: str) -> tuple[np.ndarray, np.ndarray]:
    """A stored track's patch vectors [shape=(p, D)] and their offsets [shape=(p,)], in time order."""
    row_ids = lib.catalog.row_ids(song_id)
    offsets = lib.catalog.lookup(row_ids).offsets_s
    order = np.argsort(offsets, kind="stable")
    return lib.index.vectors(row_ids)[order].astype(np.float32), np.asarray(offsets)[order]


def head_segments(clf, lib, vectors, offsets) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Non-overlapping segments: their patches, the head's label softmax and tag sigmoids."""
    from tuneprint.server.classify.heads import predict
    from tuneprint.server.classify.inputs import windows

    seg = clf.config.segment_s
    groups = windows(offsets, lib.features.patch_seconds, seg, seg)
    x = np.stack([vectors[g].mean(axis=0) for g in groups])
    x = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)).astype(np.float32)
    label_p = predict(clf.nets["labels"], x, multi_label=False)
    tag_p = predict(clf.nets["tags"], x, multi_label=True) if "tags" in clf.nets else np.zeros((len(x), 0))
    return groups, label_p, tag_p


def cnn_segments(clf, lib, song) -> np.ndarray:
    """The CNN's label softmax of a track's non-overlapping spectrogram segments."""
    from tuneprint.server.classify.cnn import predict_joint
    from tuneprint.server.classify.inputs import spectrogram_segments, track_spectrogram

    seg = clf.config.segment_s
    S = track_spectrogram(lib, song, clf.config.input)
    if S is None:
        raise LibraryError(f"{song.path}: no stored spectrogram (`tuneprint doctor` stores the missing ones)")
    return predict_joint(clf.nets["cnn"], spectrogram_segments(S, lib.features.frame_seconds, seg, seg))[0]


@dataclass
class KnnReference:
    """The training songs' patches and their labels: the 10-NN vote's references."""

    vectors: np.ndarray  # [shape=(n, D)] unit rows
    label: np.ndarray  # [shape=(n,)] label index
    k: int = 10

    def segment_probs(self, vectors: np.ndarray, groups: list[np.ndarray], n_labels: int) -> np.ndarray:
        """Each segment's label shares among its patches' k nearest references [shape=(s, L)]."""
        out = np.zeros((len(groups), n_labels))
        for i, g in enumerate(groups):
            sims = vectors[g] @ self.vectors.T
            top = np.argpartition(-sims, self.k, axis=1)[:, : self.k]
            out[i] = np.bincount(self.label[top].ravel(), minlength=n_labels) / top.size
        return out


def knn_reference(lib, train_ids: list[str], names: list[str], k: int = 10) -> KnnReference:
    vecs, labs = [], []
    for sid in train_ids:
        v, _ = track_patches(lib, sid)
        vecs.append(v)
        labs.append(np.full(len(v), names.index(lib.song(sid).labels[0])))
    v = np.concatenate(vecs)
    return KnnReference(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9), np.concatenate(labs), k)


# -- scoring ---------------------------------------------------------------------------------
@dataclass
class SingleLabelResult:
    """One method's single-label answers on the held-out tracks, per aggregation."""

    method: str
    accuracy: dict[str, float] = field(default_factory=dict)  # aggregation → track accuracy
    macro: dict[str, LabelScores] = field(default_factory=dict)
    micro: dict[str, LabelScores] = field(default_factory=dict)
    per_label: dict[str, list[LabelScores]] = field(default_factory=dict)
    confusion: dict[str, np.ndarray] = field(default_factory=dict)
    segment_accuracy: float = 0.0  # every segment on its own
    train_s: float = 0.0

    def to_dict(self) -> dict:
        """Plain numbers (NaN as None) for report.json and :func:`.classifiers_report.render`."""
        return {"method": self.method, "accuracy": {h: _num(a) for h, a in self.accuracy.items()},
                "macro": {h: scores_dict(x) for h, x in self.macro.items()},
                "micro": {h: scores_dict(x) for h, x in self.micro.items()},
                "per_label": {h: [scores_dict(x) for x in rows] for h, rows in self.per_label.items()},
                "confusion": {h: np.asarray(m).tolist() for h, m in self.confusion.items()},
                "segment_accuracy": _num(self.segment_accuracy), "train_s": round(self.train_s, 1)}


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else round(float(x), 4)


def scores_dict(x: LabelScores) -> dict:
    return {"name": x.name, "precision": _num(x.precision), "recall": _num(x.recall), "f1": _num(x.f1),
            "ap": _num(x.ap), "support": int(x.support)}


def score_single(method: str, true_index: np.ndarray, segment_probs: list[np.ndarray], names: list[str]) -> SingleLabelResult:
    """Score a method's per-track segment probabilities three ways (aggregate.py)."""
    from tuneprint.server.classify.aggregate import aggregate

    res = SingleLabelResult(method)
    for how in HOW:
        P = np.stack([aggregate(p, how) for p in segment_probs])
        rows, micro, macro, confusion, acc = single_label_scores(true_index, P, names)
        res.accuracy[how], res.micro[how], res.macro[how] = acc, micro, macro
        res.per_label[how], res.confusion[how] = rows, confusion
    seg_true = np.concatenate([np.full(len(p), t) for p, t in zip(segment_probs, true_index)])
    res.segment_accuracy = float(np.mean(np.concatenate(segment_probs).argmax(axis=1) == seg_true))
    return res


def score_tags(truth: np.ndarray, segment_probs: list[np.ndarray], tags: list[str], threshold: float):
    """Multi-label tags per aggregation: {how: (per_label, micro, macro)}."""
    from tuneprint.server.classify.aggregate import aggregate

    out = {}
    for how in HOW:
        P = np.stack([aggregate(p, how, multi_label=True, threshold=threshold) for p in segment_probs])
        out[how] = label_scores(truth, P >= threshold, P, tags)
    return out


def tag_truth(song_tags: list[tuple[str, ...]], tags: list[str]) -> np.ndarray:
    """0/1 [shape=(tracks, tags)]; a tag the classifier folded into "Others" counts as "Others"."""
    from tuneprint.server.classify.config import OTHERS

    known = set(tags)
    return np.array([[t in own or (t == OTHERS and bool(set(own) - known)) for t in tags] for own in song_tags])


# -- the whole evaluation --------------------------------------------------------------------
@dataclass
class ClassifierEvaluation:
    """Everything the benchmark section reports."""

    labels: list[str]
    train_tracks: int
    heldout_tracks: int
    results: list[SingleLabelResult]  # head, CNN(s), 10-NN vote
    tags: list[str]
    tag_scores: dict  # aggregation → (per_label, micro, macro)
    tag_counts: dict[str, int]  # tag → held-out tracks carrying it
    timing: dict[str, float]  # wall-clock seconds: "head_100" (train on 100 tracks), ...
    timing_tracks: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain numbers (NaN as None) for report.json and :func:`.classifiers_report.render`."""
        return {"labels": list(self.labels), "train_tracks": self.train_tracks, "heldout_tracks": self.heldout_tracks,
                "results": [r.to_dict() for r in self.results], "tags": list(self.tags),
                "tag_scores": {h: {"per_label": [scores_dict(x) for x in per], "micro": scores_dict(micro),
                                   "macro": scores_dict(macro)} for h, (per, micro, macro) in self.tag_scores.items()},
                "tag_counts": dict(self.tag_counts), "timing": {k: round(v, 1) for k, v in self.timing.items()},
                "timing_tracks": self.timing_tracks, "notes": list(self.notes)}


def evaluate_classifiers(lib, split: dict[str, str], *, cnn_inputs=("mel",), cnn_epochs: int = 10,
                         timing_tracks: int = 100, progress=None) -> ClassifierEvaluation:
    """Train on the train songs, answer the held-out (val + test) songs, and time a head on
    ``timing_tracks`` tracks (0: no timing).

    Parameters
    ----------
    lib : an open library whose split songs carry labels (on the corpus, :func:`build_library` with
        tags derived by :func:`derive_tags`; on a user's library, its own labels and tags)
    split : {song_id: "train" | "val" | "test"}; every held-out song's first label must be among
        the training songs' labels (:func:`split_labelled` makes such a split)
    cnn_inputs : the CNN's inputs to train and measure ("mel", "cqt"); () for none. An input that
        cannot be read (a missing spectrogram, an unreadable file) is left out with a note
    cnn_epochs : the CNN's training epochs (fewer than a head's: it is slow on a CPU)
    """
    from tuneprint.server.classify.config import ClassifierConfig
    from tuneprint.server.classify.train import fit_classifier

    say = progress or (lambda msg: log.info(msg))
    train_ids = sorted(s for s, part in split.items() if part == "train")
    test_ids = sorted(s for s, part in split.items() if part != "train")
    songs = {s.song_id: s for s in lib.tracks()}
    timing: dict[str, float] = {}

    t0 = time.perf_counter()
    head, _ = fit_classifier(lib, ClassifierConfig(), song_ids=train_ids)
    timing["head_train_split"] = time.perf_counter() - t0
    names = head.labels
    true_index = np.array([names.index(songs[s].labels[0]) for s in test_ids])
    say(f"head trained on {len(train_ids)} tracks in {timing['head_train_split']:.0f} s")

    head_p, tag_p, knn_p = [], [], []
    knn = knn_reference(lib, train_ids, names)
    for sid in test_ids:
        vectors, offsets = track_patches(lib, sid)
        groups, lp, tp = head_segments(head, lib, vectors, offsets)
        head_p.append(lp)
        tag_p.append(tp)
        knn_p.append(knn.segment_probs(vectors, groups, len(names)))
    results = [score_single("head on embeddings", true_index, head_p, names)]
    results[0].train_s = timing["head_train_split"]
    results.append(score_single("10-NN vote (training songs)", true_index, knn_p, names))
    say("head and 10-NN scored")

    notes = []
    for inp in cnn_inputs:
        try:
            results.append(_cnn_result(lib, inp, cnn_epochs, train_ids, [songs[s] for s in test_ids], true_index, names))
        except TuneprintError as e:
            notes.append(f"CNN on {inp} not measured: {e}")
            continue
        timing[f"cnn_{inp}"] = results[-1].train_s
        say(f"CNN ({inp}) trained in {timing[f'cnn_{inp}']:.0f} s")

    truth = tag_truth([songs[s].tags for s in test_ids], head.tags)
    tag_scores = score_tags(truth, tag_p, head.tags, head.config.tag_threshold) if head.tags else {}

    timing_ids = sorted(songs)[:timing_tracks]
    if timing_ids:
        t0 = time.perf_counter()
        fit_classifier(lib, ClassifierConfig(), song_ids=timing_ids)
        timing["head_100"] = time.perf_counter() - t0
        say(f"head on {len(timing_ids)} tracks: {timing['head_100']:.0f} s")
    return ClassifierEvaluation(names, len(train_ids), len(test_ids), results, head.tags, tag_scores,
                                dict(zip(head.tags, truth.sum(axis=0).astype(int).tolist())), timing, len(timing_ids),
                                notes)


def _cnn_result(lib, inp: str, epochs: int, train_ids: list[str], test_songs: list, true_index: np.ndarray,
                names: list[str]) -> SingleLabelResult:
    """Train the CNN on ``inp`` ("mel", "cqt") and score it on the held-out songs."""
    from tuneprint.server.classify.config import ClassifierConfig
    from tuneprint.server.classify.train import fit_classifier

    t0 = time.perf_counter()
    cnn, _ = fit_classifier(lib, ClassifierConfig(model="cnn", input=inp, epochs=epochs), song_ids=train_ids)
    train_s = time.perf_counter() - t0
    if cnn.labels != names:
        raise LibraryError(f"its training tracks gave other labels ({', '.join(cnn.labels)})")
    res = score_single(f"CNN on {'log-mel' if inp == 'mel' else 'CQT'}", true_index,
                       [cnn_segments(cnn, lib, song) for song in test_songs], names)
    res.train_s = train_s
    return res
