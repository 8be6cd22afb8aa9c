"""Evaluators: accuracy proxies (the fidelity ladder), latency (measured by Paddle Lite, or predicted), size, memory.

Accuracy is a ladder, cheap to exact; every figure carries the rung that produced it (``fidelity``):
  1. :class:`ZeroCostEvaluator`: no training (agreement with the teacher, architecture proxies).
  2. :class:`DistillationEvaluator`: a short distillation fine-tune, scored on validation.
  3. :class:`FinalEvaluator` (fp32) and :class:`QuantAwareEvaluator` (int8, QAT): the full fine-tune, and
     the held-out test figure; for candidates that could be Pareto-optimal only.
A student that cannot be trained (a program without its code) is scored as built: :class:`NoFinetuneEvaluator`.
Data: :class:`TaskData` (fixed splits), built from arrays, a ``paddle.io.Dataset`` or a CSV/NPZ file
(:func:`split_arrays`, :func:`from_dataset`, :func:`load_task_data`) and checked against the model
(:func:`check_task_data`). Metrics: :data:`ACCURACY`, :data:`MACRO_F1` or any callable.

Latency is measured by :class:`MeasuredLatency` through a runner per reach kind (:class:`HostRunner` on this
host, :class:`AdbRunner` for Android phones, :class:`SshRunner` for ARM boards) with the protocol of
:class:`MeasureSettings`, one measurement per physical device at a time (:class:`DeviceLeases`) and a
:class:`LatencyCache`; both live in the study's database. A failed measurement raises a
:class:`MeasurementError` subclass that says why.

Importing this package does not import Paddle, SQLAlchemy or start a Lite worker.
"""

from __future__ import annotations

from devicefit.evaluators._accuracy import (
    DEFAULT_DISTILLATION,
    AccuracyEvaluator,
    DistillationEvaluator,
    NoFinetuneEvaluator,
    predict_logits,
)
from devicefit.evaluators._adb import AdbRunner
from devicefit.evaluators._cache import CacheKey, LatencyCache
from devicefit.evaluators._data import DataError, Split, TaskData, check_input_spec, check_task_data
from devicefit.evaluators._distill import DistillationSettings
from devicefit.evaluators._errors import (
    DeviceBusyError,
    DeviceCommandError,
    DeviceGoneError,
    DeviceUnavailableError,
    LeaseLostError,
    MeasurementError,
    MeasurementTimeout,
    UnparsableOutputError,
)
from devicefit.evaluators._final import FINAL_DISTILLATION, QAT_DISTILLATION, FinalEvaluator, QuantAwareEvaluator
from devicefit.evaluators._host import HostRunner
from devicefit.evaluators._latency import (
    LatencyEvaluator,
    MeasuredLatency,
    check_device,
    default_latency,
    host_latency,
)
from devicefit.evaluators._lease import DeviceLeases, Lease
from devicefit.evaluators._metrics import ACCURACY, MACRO_F1, Metric, macro_f1, top1_accuracy
from devicefit.evaluators._protocol import MeasureSettings
from devicefit.evaluators._quant import QuantizationSettings
from devicefit.evaluators._reference import ReferenceSource
from devicefit.evaluators._runner import DeviceRunner, DeviceSession, MemoryFigure, StagedModel
from devicefit.evaluators._sources import from_dataset, load_task_data, split_arrays
from devicefit.evaluators._ssh import SshRunner
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
    "AdbRunner",
    "CacheKey",
    "DataError",
    "DeviceBusyError",
    "DeviceCommandError",
    "DeviceGoneError",
    "DeviceLeases",
    "DeviceRunner",
    "DeviceSession",
    "DeviceUnavailableError",
    "DistillationEvaluator",
    "DistillationSettings",
    "FinalEvaluator",
    "HostRunner",
    "LatencyCache",
    "LatencyEvaluator",
    "LatencyResult",
    "LatencySource",
    "Lease",
    "LeaseLostError",
    "NoFinetuneEvaluator",
    "MeasureSettings",
    "MeasuredLatency",
    "MeasurementError",
    "MeasurementTimeout",
    "MemoryFigure",
    "Metric",
    "QuantAwareEvaluator",
    "QuantizationSettings",
    "ReferenceSource",
    "Split",
    "SshRunner",
    "StagedModel",
    "TaskData",
    "UnparsableOutputError",
    "ZeroCostEvaluator",
    "ZeroCostSettings",
    "check_device",
    "check_input_spec",
    "check_task_data",
    "default_latency",
    "from_dataset",
    "host_latency",
    "load_task_data",
    "macro_f1",
    "predict_logits",
    "split_arrays",
    "top1_accuracy",
]
