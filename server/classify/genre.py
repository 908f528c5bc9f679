"""``genre``: which model labels a clip. The library's trained classifier when it has one that
can read the clip's embeddings (a head, or a CNN on the log-mel), else the majority of the
labels of the tracks nearest to the clip in style (server/style.py; by fingerprint neighbours,
index/search.py, where the encoder has no style head). The answer says which (``model``, ``by``).

Either way a steady sound (a held tone, a hum: patches all alike) gets "no clear label": music
changes over seconds.
"""
from __future__ import annotations

import logging
from dataclasses import replace

from tuneprint.errors import LibraryError

from ..answers import LabelAnswer
from ..style import BY_FINGERPRINT, BY_STYLE
from .store import has_classifier, load_classifier

log = logging.getLogger(__name__)


def label_clip(lib, emb, *, name: str = "", exclude_song: str | None = None) -> LabelAnswer:
    """The label of an embedded clip; ``exclude_song``'s own snippets never vote (then the
    neighbours answer: a classifier has learnt from every track)."""
    from tuneprint.index.search import self_similarity

    steady = (len(emb.vectors) >= lib.settings.label_steady_patches
              and self_similarity(emb.vectors) >= lib.settings.label_steady_similarity)
    answer = _classifier_label(lib, emb, name) if exclude_song is None else None
    if answer is None:
        answer = _neighbour_label(lib, emb, name, exclude_song)
    if steady and answer.label is not None:
        return replace(answer, label=None, reason="no_clear_label")
    return answer


def _neighbour_label(lib, emb, name: str, exclude_song: str | None) -> LabelAnswer:
    if lib.style is not None:
        return _style_label(lib, emb, name, exclude_song)
    from tuneprint.index.search import label_votes

    cfg = lib.settings.vote
    k = cfg.k + (lib.settings.similar_k if exclude_song else 0)  # room for the excluded song's own patches
    neighbours = lib.neighbours(emb.vectors, k)
    if exclude_song is not None:
        neighbours = neighbours.without(exclude_song, cfg.k)
    top = label_votes(neighbours, top=cfg.top)
    if not top:
        return LabelAnswer(name, None, top, "no_clear_label", by=BY_FINGERPRINT)
    return LabelAnswer(name, top[0][0], top, by=BY_FINGERPRINT)


def _style_label(lib, emb, name: str, exclude_song: str | None) -> LabelAnswer:
    """The majority label of the ``style_k`` tracks nearest to the clip in style."""
    from ..style import clip_style, labels_by_style

    top = labels_by_style(lib, clip_style(emb), k=lib.settings.style_k, top=lib.settings.vote.top,
                          exclude={exclude_song} - {None})
    return LabelAnswer(name, top[0][0] if top else None, top, None if top else "no_clear_label", by=BY_STYLE)


def _classifier_label(lib, emb, name: str) -> LabelAnswer | None:
    """The trained classifier's answer, or None where there is none it can use here."""
    from .api import classify_embeddings

    if not has_classifier(lib.root):
        return None
    try:
        clf = load_classifier(lib)
    except LibraryError as e:  # trained for another encoder, damaged: the neighbours still answer
        log.warning("genre by neighbours: %s", e)
        return None
    if clf.config.model == "cnn" and clf.config.input == "cqt":
        return None  # needs the clip's samples, which genre does not keep
    answer = classify_embeddings(lib, emb, name=name, clf=clf, gate=False)  # the library judges music
    top = answer.labels[: lib.settings.vote.top]
    return LabelAnswer(name, answer.label, top, None if answer.label else "no_clear_label", answer.model)
