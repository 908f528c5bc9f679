"""Scores of a classifier's answers: per-label precision, recall, F1 and average precision, their
micro and macro averages, and the single-label confusion matrix.

Pure functions over arrays (no torch, no library). Conventions, as scikit-learn's with
``zero_division=0``: a label never predicted has precision 0, a label absent from the truth has
recall 0 and no average precision (NaN, left out of the macro average of AP); macro averages
are over the labels present in the truth.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelScores:
    """One label's (or an average's) figures."""

    name: str
    precision: float
    recall: float
    f1: float
    ap: float  # average precision of the scores ranking (NaN without positives)
    support: int  # positives in the truth

    def row(self) -> list:
        return [self.name, self.precision, self.recall, self.f1, self.ap, self.support]


def _f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def average_precision(truth: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of one label: the mean, over its positives, of the precision at the
    score of each positive (items scoring the same are ranked together, as scikit-learn does).

    Parameters
    ----------
    truth : np.ndarray [shape=(n,)] 0/1
    scores : np.ndarray [shape=(n,)] higher = more likely positive
    """
    truth = np.asarray(truth, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives = int(truth.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], truth[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # the last item of each run of equal scores
    tp = np.cumsum(t)[last]
    precision = tp / (last + 1)
    recall_gain = np.diff(np.r_[0, tp]) / positives
    return float((precision * recall_gain).sum())


def label_scores(truth: np.ndarray, predicted: np.ndarray, scores: np.ndarray,
                 names: list[str]) -> tuple[list[LabelScores], LabelScores, LabelScores]:
    """Per-label figures and their micro and macro averages.

    Parameters
    ----------
    truth, predicted : np.ndarray [shape=(n, L)] 0/1: the true labels and the answered ones
    scores : np.ndarray [shape=(n, L)] the probabilities the answers came from (for AP)
    names : the L label names

    Returns
    -------
    per_label, micro, macro : micro pools every (item, label) decision (its AP ranks all the
        pairs together); macro is the plain mean over labels present in the truth
    """
    truth = np.asarray(truth, dtype=bool)
    predicted = np.asarray(predicted, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    tp = (truth & predicted).sum(axis=0)
    fp = (~truth & predicted).sum(axis=0)
    fn = (truth & ~predicted).sum(axis=0)
    rows = []
    for j, name in enumerate(names):
        p = tp[j] / (tp[j] + fp[j]) if tp[j] + fp[j] else 0.0
        r = tp[j] / (tp[j] + fn[j]) if tp[j] + fn[j] else 0.0
        rows.append(LabelScores(name, float(p), float(r), _f1(p, r), average_precision(truth[:, j], scores[:, j]),
                                int(truth[:, j].sum())))
    TP, FP, FN = tp.sum(), fp.sum(), fn.sum()
    mp = TP / (TP + FP) if TP + FP else 0.0
    mr = TP / (TP + FN) if TP + FN else 0.0
    micro = LabelScores("micro", float(mp), float(mr), _f1(mp, mr), average_precision(truth.ravel(), scores.ravel()),
                        int(truth.sum()))
    present = [row for row in rows if row.support > 0]
    macro = LabelScores("macro", *(float(np.mean([getattr(r, f) for r in present])) if present else 0.0
                                   for f in ("precision", "recall", "f1", "ap")), int(truth.sum()))
    return rows, micro, macro


def one_hot(index: np.ndarray, n: int) -> np.ndarray:
    """[shape=(len(index), n)] 0/1 rows with a 1 at each ``index``."""
    out = np.zeros((len(index), n), dtype=bool)
    out[np.arange(len(index)), np.asarray(index, dtype=int)] = True
    return out


def confusion_matrix(true_index: np.ndarray, predicted_index: np.ndarray, n: int) -> np.ndarray:
    """Counts [shape=(n, n), dtype=int64]: row = true label, column = answered label."""
    M = np.zeros((n, n), dtype=np.int64)
    np.add.at(M, (np.asarray(true_index, dtype=int), np.asarray(predicted_index, dtype=int)), 1)
    return M


def single_label_scores(true_index: np.ndarray, probs: np.ndarray, names: list[str]):
    """Single-label answers (the top label of each row of ``probs``) scored per label.

    Returns
    -------
    per_label, micro, macro : as :func:`label_scores` (micro P = R = F1 = accuracy here)
    confusion : np.ndarray [shape=(L, L)]
    accuracy : float
    """
    probs = np.asarray(probs, dtype=np.float64)
    predicted = probs.argmax(axis=1)
    rows, micro, macro = label_scores(one_hot(true_index, len(names)), one_hot(predicted, len(names)), probs, names)
    confusion = confusion_matrix(true_index, predicted, len(names))
    return rows, micro, macro, confusion, float(np.mean(predicted == np.asarray(true_index)))
