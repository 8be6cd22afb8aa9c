"""Evaluators: accuracy proxies (the fidelity ladder), latency (measured by Paddle Lite, or predicted), size.

The accuracy ladder, cheap to exact; every figure carries the rung that produced it (``fidelity``):
  1. :class:`ZeroCostEvaluator`: no training (agreement with the teacher, architecture proxies).
  2. :class:`DistillationEvaluator`: a short distillation fine-tune, scored on validation.
  3. :class:`FinalEvaluator` (fp32) and :class:`QuantAwareEvaluator` (int8, QAT): the full fine-tune, and
     the held-out test figure; for candidates that could be Pareto-optimal only.
Data: :class:`TaskData` (fixed splits), built from arrays, a ``paddle.io.Dataset`` or a CSV/NPZ file
(:func:`split_arrays`, :func:`from_dataset`, :func:`load_task_data`) and checked against the model
(:func:`check_task_data`). Metrics: :data:`ACCURACY`, :data:`MACRO_F1` or any callable.

Importing this package does not import Paddle or start a Lite worker.
"""

from __future__ import annotations

from devicefit.evaluators._accuracy import (
    DEFAULT_DISTILLATION,
    AccuracyEvaluator,
    DistillationEvaluator,
    predict_logits,
)
from devicefit.evaluators._data import DataError, Split, TaskData, check_input_spec, check_task_data
from devicefit.evaluators._distill import DistillationSettings
from devicefit.evaluators._final import FINAL_DISTILLATION, QAT_DISTILLATION, FinalEvaluator, QuantAwareEvaluator
from devicefit.evaluators._metrics import ACCURACY, MACRO_F1, Metric, macro_f1, top1_accuracy
from devicefit.evaluators._quant import QuantizationSettings
from devicefit.evaluators._sources import from_dataset, load_task_data, split_arrays
from devicefit.evaluators._types import AccuracyResult, LatencyResult, LatencySource
from devicefit.evaluators._zero_cost import ZeroCostEvaluator, ZeroCostSettings

__all__ = [
    "ACCURACY",
    "DEFAULT_DISTILLATION",
    "FINAL_DISTILLATION",
    "MACRO_F1",
    "QAT_DISTILLATION",
    "AccuracyEvaluator",
    "AccuracyResult",
    "DataError",
    "DistillationEvaluator",
    "DistillationSettings",
    "FinalEvaluator",
    "LatencyResult",
    "LatencySource",
    "Metric",
    "QuantAwareEvaluator",
    "QuantizationSettings",
    "Split",
    "TaskData",
    "ZeroCostEvaluator",
    "ZeroCostSettings",
    "check_input_spec",
    "check_task_data",
    "from_dataset",
    "load_task_data",
    "macro_f1",
    "predict_logits",
    "split_arrays",
    "top1_accuracy",
]
