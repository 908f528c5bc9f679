"""The classifier head of a training run, evaluated like labels by neighbours: its softmax per
sub-track, aggregated three ways (:func:`server.evaluation.labels.score_tracks`), on query tracks
whose label it was trained on."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tuneprint.errors import CheckpointError

from .data import Provenance, checkpoint_provenance
from .labels import LabelGroups, TrackAnswer, score_tracks


@dataclass(frozen=True)
class ClassifierHead:
    """The network whose classifier head is evaluated, its labels and its training run; or, with
    ``net`` None, a note saying why there is none."""

    net: object | None = None
    labels: list[str] | None = None
    source: str = ""
    provenance: Provenance | None = None
    note: str = ""

    def queries(self, song) -> bool:
        """Whether the head answers ``song`` (a song its run did not train on)."""
        return self.net is not None and not self.provenance.trained_on(song)


def classifier_head(lib, checkpoint: str | None, provenance: Provenance) -> ClassifierHead:
    """The library's encoder's head, or the one of ``checkpoint`` when given (a run's full checkpoint)."""
    net = lib.embedder.net if getattr(lib.embedder.net, "classifier", None) is not None else None
    labels, source, trained = provenance.seen_labels, "the library's encoder", provenance
    if checkpoint:
        from tuneprint.encoder.checkpoint import load_checkpoint

        try:
            loaded = load_checkpoint(checkpoint)
        except CheckpointError as e:
            return ClassifierHead(note=f"could not load --classifier: {e}")
        if loaded.net.classifier is None:
            return ClassifierHead(note=f"{checkpoint} has no classifier head (an encoder-only export?)")
        trained = checkpoint_provenance(checkpoint) or Provenance("unknown")
        net, labels, source = loaded.net, trained.seen_labels, f"checkpoint {checkpoint}"
        if loaded.model_id != lib.model_id:
            source += " (not the library's encoder: its own embeddings feed its head)"
    if net is None:
        return ClassifierHead(note="the library's model has no classifier head (the shipped default is exported "
                                   "encoder-only); pass --classifier RUN/model.safetensors to evaluate a training run's head")
    if not labels or len(labels) != net.cfg.n_classes:
        return ClassifierHead(note=f"the classifier head has {net.cfg.n_classes} classes but its label list was not "
                                   "found (the training run's config.json 'labels'); pass --train-config")
    if trained.train_keys is None:
        source += "; its training songs are unknown, so they may be among the queries"
    return ClassifierHead(net.eval(), list(labels), source, trained)


def classifier_probs(net, patches: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Softmax of the network's classifier head on patches [shape=(p, n_mels, frames)] → (p, n_classes)."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(patches), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(patches[i : i + batch_size])).unsqueeze(1)
            out.append(torch.softmax(net.classifier(net.forward_features(x)), dim=1).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.cfg.n_classes), np.float32)


def score_classifier(head: ClassifierHead, probs: dict[int, np.ndarray], songs,
                     groups: LabelGroups) -> tuple[dict, list[TrackAnswer]]:
    """The head's sub-track softmax (song position → [shape=(subtracks, classes)]) aggregated three
    ways, on query tracks whose label it knows; the section and the track answers."""
    if head.net is None:
        return {"note": head.note}, []
    labels = head.labels
    known = {i: tuple(labels.index(l) for l in songs[i].labels if l in labels) for i in probs}
    answers = [TrackAnswer(i, known[i], p) for i, p in probs.items() if len(p) and known[i]]
    skipped = sum(1 for i in probs if not known[i])
    trained = sum(1 for i in groups.members["all"] if head.provenance.trained_on(songs[i]))
    notes = [f"{skipped} query tracks have labels the head was not trained on and are left out" if skipped else "",
             f"{trained} query tracks the head's run trained on are left out" if trained else ""]
    section = {"source": head.source, "labels": labels, "note": "; ".join(n for n in notes if n),
               **{g: score_tracks([a for a in answers if a.song in members], labels)
                  for g, members in groups.members.items() if g != "unseen"}}
    return section, answers
