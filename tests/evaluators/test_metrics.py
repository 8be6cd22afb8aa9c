from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from devicefit.evaluators._metrics import (
    ACCURACY,
    MACRO_F1,
    Metric,
    as_metric,
    macro_f1,
    teacher_agreement,
    teacher_kl,
    top1_accuracy,
)


def _one_hot_logits(predictions: np.ndarray, classes: int) -> np.ndarray:
    return np.eye(classes)[predictions] * 3.0


def test_top1_accuracy_counts_argmax_hits() -> None:
    logits = _one_hot_logits(np.array([0, 1, 2, 2]), 3)
    assert top1_accuracy(logits, np.array([0, 1, 1, 2])) == 0.75


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_matches_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, size=200)
    predictions = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 5, size=200))
    expected = f1_score(labels, predictions, average="macro")
    assert macro_f1(_one_hot_logits(predictions, 5), labels) == pytest.approx(expected)


def test_macro_f1_punishes_ignoring_a_rare_class_where_accuracy_does_not() -> None:
    labels = np.array([0] * 95 + [1] * 5)
    always_zero = _one_hot_logits(np.zeros(100, dtype=int), 2)
    assert top1_accuracy(always_zero, labels) == 0.95
    assert macro_f1(always_zero, labels) < 0.5


def test_as_metric_accepts_names_metrics_and_callables() -> None:
    assert as_metric("accuracy") is ACCURACY and as_metric("macro_f1") is MACRO_F1
    assert as_metric(MACRO_F1) is MACRO_F1

    def error_rate_complement(logits: np.ndarray, labels: np.ndarray) -> float:
        return 1.0 - float(np.mean(np.argmax(logits, 1) != labels))

    metric = as_metric(error_rate_complement)
    assert metric.name == "error_rate_complement"
    assert metric(_one_hot_logits(np.array([1, 1]), 2), np.array([1, 0])) == 0.5
    with pytest.raises(ValueError, match="unknown metric 'top5'"):
        as_metric("top5")


def test_a_metric_returning_nan_is_an_error() -> None:
    with pytest.raises(ValueError, match="broken returned nan"):
        Metric("broken", lambda logits, labels: float("nan"))(np.zeros((2, 2)), np.zeros(2, dtype=int))


def test_agreement_and_kl_against_the_teacher() -> None:
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(50, 4))
    assert teacher_agreement(teacher, teacher) == 1.0
    assert teacher_kl(teacher, teacher) == pytest.approx(0.0, abs=1e-12)
    other = rng.normal(size=(50, 4))
    assert teacher_kl(other, teacher) > 0.05
    assert teacher_agreement(-teacher, teacher) == 0.0
