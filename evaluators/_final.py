"""Rung 3 of the accuracy ladder: the full fine-tune, and held-out test figures, for Pareto candidates only.

:class:`FinalEvaluator` fine-tunes an fp32 (or fp16) student for the full budget and scores it on ``val``
(the figure choices are made from); :meth:`FinalEvaluator.test` then gives its held-out ``test`` figure,
the one reported. It is the only evaluator that reads the test split.

:class:`QuantAwareEvaluator` is the rung for int8 candidates: the same full fp32 fine-tune, then
quantization-aware training with distillation, so the exported int8 program is the model that was trained.
On the way it measures plain post-training quantization of the same fine-tuned student with the same
quantizers, and reports what QAT gains over it (``qat_gain_over_ptq``, on ``val``, and on ``test`` by
:meth:`QuantAwareEvaluator.test`).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from devicefit.evaluators._accuracy import DistillationEvaluator, predict_logits
from devicefit.evaluators._data import TaskData
from devicefit.evaluators._distill import DistillationSettings
from devicefit.evaluators._metrics import ACCURACY, Metric, MetricFunction, teacher_agreement
from devicefit.evaluators._quant import (
    QuantizationSettings,
    calibrate,
    export_quantized,
    is_quantized,
    post_training_quantize,
    quantize_in_place,
)
from devicefit.evaluators._types import AccuracyResult
from devicefit.spaces._layout import ModelLayout
from devicefit.spaces._export import Artifact, export_inference_model

# The full fine-tune of rung 3 (bench/proxy_fidelity.py measures the ladder against it). On the digits ViT,
# pruned students still gained at 40 epochs with lr 5e-4 (a 2-layer student: 87.4% test at 10, 89.7% at 20,
# 92.7% at 40); with lr 2e-3, 30 epochs brought two pruned students to 97.0% and 95.7%, the teacher's level.
FINAL_DISTILLATION = DistillationSettings(epochs=30, learning_rate=2e-3)
# QAT after the full fp32 fine-tune: a few epochs at a lower learning rate, starting from the PTQ scales.
QAT_DISTILLATION = DistillationSettings(epochs=5, learning_rate=1e-4)


class FinalEvaluator(DistillationEvaluator):
    """Rung 3 for fp32 candidates: the full distillation fine-tune, scored on ``val``; ``test`` on request.

    Args:
        teacher: The trained model.
        data: The task's splits.
        settings: The full fine-tune.
        metric: The figure reported as ``accuracy``.
        layout: Where the teacher's blocks are (the search space's ``layout``), for the hidden and relation
            terms; found with the default family adapters on first use.
    """

    reads_test: ClassVar[bool] = True

    def __init__(
        self,
        teacher: Any,
        data: TaskData,
        settings: DistillationSettings = FINAL_DISTILLATION,
        *,
        metric: Metric | str | MetricFunction = ACCURACY,
        layout: ModelLayout | None = None,
    ) -> None:
        super().__init__(teacher, data, settings, metric=metric, layout=layout)

    @property
    def fidelity(self) -> str:
        return f"final-{self.settings.fidelity}"

    def evaluate(self, student: Any, *, teacher_layers: Sequence[int] | None = None) -> AccuracyResult:
        started = time.perf_counter()
        details = self.distill(student, teacher_layers=teacher_layers)
        value = self.metric(predict_logits(student, self.data.val), self.data.val.labels)
        return AccuracyResult(value, "val", self.fidelity, time.perf_counter() - started, details, self.metric.name)

    def test(self, student: Any) -> AccuracyResult:
        """The held-out figure of a student this evaluator fine-tuned: report it, choose nothing by it."""
        started = time.perf_counter()
        logits = predict_logits(student, self.data.test)
        value = self.metric(logits, self.data.test.labels)
        details = {"test_agreement": teacher_agreement(logits, predict_logits(self.teacher, self.data.test))}
        return AccuracyResult(value, "test", self.fidelity, time.perf_counter() - started, details, self.metric.name)

    def export(self, student: Any, input_spec: list[Any], directory: Path) -> Artifact:
        """Export the fine-tuned student (what was scored) as an inference program."""
        return export_inference_model(student, input_spec, directory)


class QuantAwareEvaluator(FinalEvaluator):
    """Rung 3 for int8 candidates: full fp32 fine-tune, then quantization-aware training with distillation.

    :meth:`evaluate` leaves ``student`` quantized (fake quantizers inserted) and trained; export it with
    :meth:`export` (int8 weights, ``quantize_linear`` format). Its details hold ``float_accuracy`` (the fp32
    student after the full fine-tune), ``ptq_accuracy`` (that student after plain PTQ with the same
    quantizers) and ``qat_gain_over_ptq`` (all on ``val``, in the metric's units).

    Args:
        teacher: The trained model.
        data: The task's splits.
        settings: The full fp32 fine-tune.
        qat_settings: The quantization-aware fine-tune that follows it.
        quantization: Quantizers and PTQ calibration.
        metric: The figure reported as ``accuracy``.
        layout: Where the teacher's blocks are (see :class:`FinalEvaluator`).
    """

    def __init__(
        self,
        teacher: Any,
        data: TaskData,
        settings: DistillationSettings = FINAL_DISTILLATION,
        *,
        qat_settings: DistillationSettings = QAT_DISTILLATION,
        quantization: QuantizationSettings = QuantizationSettings(),
        metric: Metric | str | MetricFunction = ACCURACY,
        layout: ModelLayout | None = None,
    ) -> None:
        super().__init__(teacher, data, settings, metric=metric, layout=layout)
        self.qat_settings = qat_settings
        self.quantization = quantization
        # The PTQ baseline of each evaluated student, kept until its test figure is taken.
        self._ptq_models: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    @property
    def fidelity(self) -> str:
        return f"final-{self.settings.fidelity}+qat-{self.qat_settings.fidelity}"

    def evaluate(self, student: Any, *, teacher_layers: Sequence[int] | None = None) -> AccuracyResult:
        if is_quantized(student):
            raise ValueError("the student is already quantized; QuantAwareEvaluator quantizes an fp32 student")
        started = time.perf_counter()
        val = self.data.val
        float_log = self.distiller.run(student, self.settings, teacher_layers=teacher_layers)
        float_value = self.metric(predict_logits(student, val), val.labels)
        ptq_model = post_training_quantize(student, self.data.train, self.quantization)
        ptq_value = self.metric(predict_logits(ptq_model, val), val.labels)
        quantize_in_place(student, self.quantization)
        calibrate(student, self.data.train, self.quantization)
        qat_log = self.distiller.run(student, self.qat_settings, teacher_layers=teacher_layers)
        value = self.metric(predict_logits(student, val), val.labels)
        self._ptq_models[student] = ptq_model
        details = {
            "float_accuracy": float_value,
            "ptq_accuracy": ptq_value,
            "qat_gain_over_ptq": value - ptq_value,
            "float_distillation": float_log.to_details(),
            "qat_distillation": qat_log.to_details(),
        }
        return AccuracyResult(value, "val", self.fidelity, time.perf_counter() - started, details, self.metric.name)

    def test(self, student: Any) -> AccuracyResult:
        """Held-out figure of the QAT student, with the PTQ baseline's and the gain when it is known."""
        result = super().test(student)
        ptq_model = self._ptq_models.pop(student, None)
        if ptq_model is None:
            return result
        ptq_value = self.metric(predict_logits(ptq_model, self.data.test), self.data.test.labels)
        details = {**result.details, "ptq_accuracy": ptq_value, "qat_gain_over_ptq": result.accuracy - ptq_value}
        return AccuracyResult(result.accuracy, "test", result.fidelity, result.seconds, details, result.metric)

    def export(self, student: Any, input_spec: list[Any], directory: Path) -> Artifact:
        """Export the QAT student as an int8 inference program (``quantize_linear`` format)."""
        if not is_quantized(student):
            raise ValueError("export a student that QuantAwareEvaluator.evaluate has quantized and trained")
        return export_quantized(student, self.quantization, input_spec, directory)
