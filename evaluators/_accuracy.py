"""Accuracy evaluators: the contract, and the short distillation fine-tune (rung 2 of the ladder).

The accuracy ladder, from cheap to exact (each rung's ``fidelity`` is recorded next to its figures):
  1. ``zero-cost``: no training (:class:`~devicefit.evaluators._zero_cost.ZeroCostEvaluator`).
  2. ``distill-...``: a short distillation fine-tune scored on validation (:class:`DistillationEvaluator`).
  3. ``final-...``: the full fine-tune, then held-out test evaluation, for Pareto candidates only
     (:class:`~devicefit.evaluators._final.FinalEvaluator`; for int8 candidates, quantization-aware
     training: :class:`~devicefit.evaluators._final.QuantAwareEvaluator`).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from devicefit.evaluators._data import TaskData
from devicefit.evaluators._distill import DistillationSettings, Distiller
from devicefit.evaluators._metrics import ACCURACY, Metric, MetricFunction, as_metric, teacher_agreement, teacher_kl
from devicefit.evaluators._metrics import top1_accuracy as top1_accuracy
from devicefit.evaluators._predict import predict_logits as predict_logits
from devicefit.evaluators._types import AccuracyResult
from devicefit.spaces._layout import ModelLayout

# The default rung 2, chosen from the table of bench/proxy_fidelity.py (bench/results/proxy_fidelity.txt): one
# epoch of logit distillation at lr 2e-3. On 32 digits-ViT candidates its validation accuracy ranks them
# against the final test accuracy with Kendall tau 0.79 at 5.7% of the final rung's cost; the former default
# (3 epochs at lr 5e-4) reached 0.77 at 13%. The ceiling is the data's noise: the final rung's own
# validation accuracy ranks its test accuracy at 0.75.
DEFAULT_DISTILLATION = DistillationSettings()

__all__ = [
    "DEFAULT_DISTILLATION",
    "AccuracyEvaluator",
    "DistillationEvaluator",
    "DistillationSettings",
    "NoFinetuneEvaluator",
    "predict_logits",
    "test_accuracy",
    "top1_accuracy",
]


class AccuracyEvaluator(abc.ABC):
    """Scores a student ``paddle.nn.Layer``: one rung of the accuracy ladder.

    Contract:
        - :meth:`evaluate` may train the student in place (a fine-tuning rung does); afterwards the student
          is in eval mode and is the model the returned figure describes, so exporting it exports exactly
          what was scored.
        - :meth:`evaluate` scores on the validation split. Only an evaluator whose ``reads_test`` is true
          (the last rung) may read the test split, and only in a separate method for held-out figures that
          no choice is made from.
        - The result names its rung in ``fidelity`` (the same string as :attr:`fidelity`) and its metric
          in ``metric``.
        - The teacher is never modified.
    """

    reads_test: ClassVar[bool] = False

    @property
    @abc.abstractmethod
    def fidelity(self) -> str:
        """The rung's name, as recorded in every result."""

    @abc.abstractmethod
    def evaluate(self, student: Any, *, teacher_layers: Sequence[int] | None = None) -> AccuracyResult:
        """Score (and possibly fine-tune) ``student``.

        Args:
            student: The materialized student.
            teacher_layers: The teacher encoder layer each student encoder layer was cut from (a
                candidate's ``layers``), for rungs that align layers; ``None`` when unknown.
        """


class DistillationEvaluator(AccuracyEvaluator):
    """Rung 2: fine-tunes the student against the teacher (and the labels), then scores it on ``val``.

    Besides the metric, the result's details hold the student's agreement with the teacher on ``val``
    (``val_agreement``) and the KL divergence of its logits from the teacher's (``val_kl``, nats), and what
    the fine-tune did (steps, seconds, losses).

    Args:
        teacher: The trained model.
        data: The task's splits (``train`` to fine-tune, ``val`` to score).
        settings: Budget, optimiser and distillation terms.
        metric: The figure reported as ``accuracy`` (``accuracy``, ``macro_f1`` or a callable).
        layout: Where the teacher's blocks are (the search space's ``layout``), for the hidden and relation
            terms; found with the default family adapters on first use.
    """

    def __init__(
        self,
        teacher: Any,
        data: TaskData,
        settings: DistillationSettings = DEFAULT_DISTILLATION,
        *,
        metric: Metric | str | MetricFunction = ACCURACY,
        layout: ModelLayout | None = None,
    ) -> None:
        self.teacher = teacher
        self.data = data
        self.settings = settings
        self.metric = as_metric(metric)
        self.distiller = Distiller(teacher, data.train, layout=layout)
        self._teacher_val_logits: np.ndarray | None = None

    @property
    def fidelity(self) -> str:
        return self.settings.fidelity

    @property
    def teacher_logits(self) -> np.ndarray:
        """The teacher's logits on the training split (computed once)."""
        return self.distiller.teacher_logits

    @property
    def teacher_val_logits(self) -> np.ndarray:
        """The teacher's logits on the validation split (computed once)."""
        if self._teacher_val_logits is None:
            self._teacher_val_logits = predict_logits(self.teacher, self.data.val)
        return self._teacher_val_logits

    def distill(self, student: Any, *, teacher_layers: Sequence[int] | None = None) -> dict[str, Any]:
        """Run the fine-tune in place; returns what it did (see :class:`DistillationLog`)."""
        return self.distiller.run(student, self.settings, teacher_layers=teacher_layers).to_details()

    def evaluate(self, student: Any, *, teacher_layers: Sequence[int] | None = None) -> AccuracyResult:
        started = time.perf_counter()
        details: dict[str, Any] = self.distill(student, teacher_layers=teacher_layers)
        logits = predict_logits(student, self.data.val)
        details["val_agreement"] = teacher_agreement(logits, self.teacher_val_logits)
        details["val_kl"] = teacher_kl(logits, self.teacher_val_logits)
        value = self.metric(logits, self.data.val.labels)
        return AccuracyResult(value, "val", self.fidelity, time.perf_counter() - started, details, self.metric.name)


class NoFinetuneEvaluator(DistillationEvaluator):
    """Scores the student as it was built, without training it: for students that cannot be fine-tuned.

    Used for the candidates of an inference program without its code (Paddle 2.6 computes no gradient
    through a ``jit.load``-ed program). It is :class:`DistillationEvaluator` with a fine-tune that does
    nothing: the figure is the student's metric on ``val``; the details hold its agreement with the teacher
    (``val_agreement``) and the KL divergence of its logits (``val_kl``, nats).

    Args:
        teacher: The trained model.
        data: The task's splits (``val`` is scored).
        metric: The figure reported as ``accuracy``.
    """

    def __init__(self, teacher: Any, data: TaskData, *, metric: Metric | str | MetricFunction = ACCURACY) -> None:
        super().__init__(teacher, data, metric=metric)

    @property
    def fidelity(self) -> str:
        return "no-finetune"

    def distill(self, student: Any, *, teacher_layers: Sequence[int] | None = None) -> dict[str, Any]:
        """Nothing to run: the student is scored as built."""
        return {}


def test_accuracy(model: Any, data: TaskData) -> float:
    """Top-1 accuracy on the held-out test split (for final models only)."""
    return top1_accuracy(predict_logits(model, data.test), data.test.labels)


test_accuracy.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
