"""Metrics of a classifier's logits, and how they compare with the teacher's: plain NumPy, no Paddle.

A metric maps ``(logits [N, C], labels [N])`` to a float where higher is better. Two are built in
(:data:`ACCURACY`, :data:`MACRO_F1`); any callable with that signature can be passed where a metric is
expected (see :func:`as_metric`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

MetricFunction = Callable[[np.ndarray, np.ndarray], float]


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples whose arg-max logit is the label, in [0, 1]."""
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def macro_f1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean over classes of the F1 score of the arg-max prediction, in [0, 1].

    The classes are ``0 .. C-1`` with ``C = logits.shape[1]``. A class that is neither present in
    ``labels`` nor predicted is left out of the mean (its F1 is undefined); a class that is present or
    predicted but never right scores 0.
    """
    predictions = np.argmax(logits, axis=1)
    scores = []
    for cls in range(logits.shape[1]):
        predicted, actual = predictions == cls, labels == cls
        true_positives = int(np.sum(predicted & actual))
        denominator = int(np.sum(predicted)) + int(np.sum(actual))
        if denominator:
            scores.append(2.0 * true_positives / denominator)
    return float(np.mean(scores)) if scores else 0.0


@dataclasses.dataclass(frozen=True)
class Metric:
    """A named metric: ``function(logits, labels) -> float``, higher is better.

    Attributes:
        name: Recorded next to every figure it produces (``AccuracyResult.metric``).
        function: Takes logits ``[N, C]`` and integer labels ``[N]``; returns a finite float.
    """

    name: str
    function: MetricFunction

    def __call__(self, logits: np.ndarray, labels: np.ndarray) -> float:
        value = float(self.function(logits, labels))
        if not np.isfinite(value):
            raise ValueError(f"metric {self.name} returned {value}")
        return value


ACCURACY = Metric("accuracy", top1_accuracy)
MACRO_F1 = Metric("macro_f1", macro_f1)
BUILTIN_METRICS: dict[str, Metric] = {metric.name: metric for metric in (ACCURACY, MACRO_F1)}


def as_metric(metric: Metric | str | MetricFunction) -> Metric:
    """A :class:`Metric` from a metric, a built-in name (``accuracy``, ``macro_f1``) or a plain callable.

    A plain callable is named by its ``__name__``.

    Raises:
        ValueError: An unknown name.
    """
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        try:
            return BUILTIN_METRICS[metric]
        except KeyError:
            raise ValueError(f"unknown metric '{metric}' (built in: {', '.join(BUILTIN_METRICS)})") from None
    if callable(metric):
        return Metric(getattr(metric, "__name__", "custom"), metric)
    raise TypeError(f"a metric is a Metric, a name or a callable, got {type(metric).__name__}")


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise log-softmax of ``logits / temperature``, in float64."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    return scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))


def teacher_agreement(student_logits: np.ndarray, teacher_logits: np.ndarray) -> float:
    """Share of samples on which student and teacher predict the same class, in [0, 1]."""
    return float(np.mean(np.argmax(student_logits, axis=1) == np.argmax(teacher_logits, axis=1)))


def teacher_kl(student_logits: np.ndarray, teacher_logits: np.ndarray, temperature: float = 1.0) -> float:
    """Mean over samples of ``KL(teacher || student)`` of the tempered softmaxes, in nats (>= 0)."""
    teacher_log = log_softmax(teacher_logits, temperature)
    student_log = log_softmax(student_logits, temperature)
    return float(np.mean(np.sum(np.exp(teacher_log) * (teacher_log - student_log), axis=1)))
