"""Per-label precision / recall / F1 / AP, micro and macro averages, and the confusion matrix,
on hand-made cases whose answers are worked out in the comments."""
import numpy as np
import pytest

from tuneprint.server.evaluation.classifier_metrics import (average_precision, confusion_matrix, label_scores,
                                                            single_label_scores)

NAMES = ["A", "B", "C"]
TRUTH = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1]])
PREDICTED = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]])
SCORES = np.array([[0.9, 0.4, 0.1], [0.8, 0.6, 0.2], [0.3, 0.7, 0.45], [0.1, 0.2, 0.85]])


def test_per_label_and_averages_multi_label():
    rows, micro, macro = label_scores(TRUTH, PREDICTED, SCORES, NAMES)
    a, b, c = rows
    # A: tp 2, fp 0, fn 0.  B: tp 1, fp 1, fn 1.  C: tp 1, fp 0, fn 1.
    assert (a.precision, a.recall, a.f1) == (1.0, 1.0, 1.0)
    assert (b.precision, b.recall, b.f1) == (0.5, 0.5, 0.5)
    assert (c.precision, c.recall) == (1.0, 0.5) and c.f1 == pytest.approx(2 / 3)
    # AP. A: both positives on top → 1.  B: ranks 0.7(+) 0.6(-) 0.4(+) → (1 + 2/3) / 2.  C: 0.85(+) 0.45(+) → 1.
    assert a.ap == pytest.approx(1.0) and b.ap == pytest.approx(5 / 6) and c.ap == pytest.approx(1.0)
    assert [r.support for r in rows] == [2, 2, 2]
    # micro: TP 4, FP 1, FN 2
    assert micro.precision == pytest.approx(0.8) and micro.recall == pytest.approx(4 / 6)
    assert micro.f1 == pytest.approx(2 * 0.8 * (4 / 6) / (0.8 + 4 / 6))
    # micro AP ranks all 12 pairs: positives at ranks 1-4, 6, 7 → (4 + 5/6 + 6/7) / 6
    assert micro.ap == pytest.approx((4 + 5 / 6 + 6 / 7) / 6)
    # macro: plain means over the three labels
    assert macro.precision == pytest.approx(2.5 / 3) and macro.recall == pytest.approx(2 / 3)
    assert macro.f1 == pytest.approx((1 + 0.5 + 2 / 3) / 3) and macro.ap == pytest.approx((1 + 5 / 6 + 1) / 3)


def test_average_precision_ties_and_no_positives():
    assert average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)  # tied: ranked together
    assert average_precision([0, 1, 1], [0.9, 0.5, 0.1]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert np.isnan(average_precision([0, 0], [0.3, 0.2]))


def test_label_without_positives_is_left_out_of_macro():
    truth = np.array([[1, 0], [1, 0]])
    rows, _, macro = label_scores(truth, np.array([[1, 1], [0, 0]]), np.array([[0.9, 0.8], [0.2, 0.1]]), ["x", "y"])
    assert rows[1].precision == 0.0 and rows[1].support == 0 and np.isnan(rows[1].ap)
    assert macro.precision == pytest.approx(1.0) and macro.recall == pytest.approx(0.5)  # x only


def test_confusion_matrix_counts():
    true = [0, 0, 1, 2, 2, 2]
    predicted = [0, 1, 1, 2, 0, 2]
    np.testing.assert_array_equal(confusion_matrix(true, predicted, 3), [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


def test_single_label_scores():
    true = np.array([0, 0, 1, 2, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 2, 0, 2]] * 0.6 + 0.1  # top label = the answers above
    rows, micro, macro, confusion, accuracy = single_label_scores(true, probs, NAMES)
    np.testing.assert_array_equal(confusion, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert accuracy == pytest.approx(4 / 6)
    assert micro.precision == micro.recall == micro.f1 == pytest.approx(4 / 6)
    # A: tp 1 fp 1 fn 1; B: tp 1 fp 1 fn 0; C: tp 2 fp 0 fn 1
    assert [(r.precision, r.recall) for r in rows] == [(0.5, 0.5), (0.5, 1.0), (1.0, pytest.approx(2 / 3))]
    assert macro.recall == pytest.approx((0.5 + 1 + 2 / 3) / 3)
