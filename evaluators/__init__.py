"""Evaluators: accuracy proxies, latency (measured by Paddle Lite, or predicted), size, memory.

Latency is measured by :class:`MeasuredLatency` through a runner per reach kind (:class:`HostRunner` on this
host, :class:`AdbRunner` for Android phones, :class:`SshRunner` for ARM boards) with the protocol of
:class:`MeasureSettings`, one measurement per physical device at a time (:class:`DeviceLeases`) and a
:class:`LatencyCache`; both live in the study's database. A failed measurement raises a
:class:`MeasurementError` subclass that says why.

Importing this package does not import Paddle, SQLAlchemy or start a Lite worker.
"""

from __future__ import annotations

from devicefit.evaluators._adb import AdbRunner
from devicefit.evaluators._cache import CacheKey, LatencyCache
from devicefit.evaluators._data import DataError, Split, TaskData
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
from devicefit.evaluators._host import HostRunner
from devicefit.evaluators._latency import (
    LatencyEvaluator,
    MeasuredLatency,
    check_device,
    default_latency,
    host_latency,
)
from devicefit.evaluators._lease import DeviceLeases, Lease
from devicefit.evaluators._protocol import MeasureSettings
from devicefit.evaluators._reference import ReferenceSource
from devicefit.evaluators._runner import DeviceRunner, DeviceSession, MemoryFigure, StagedModel
from devicefit.evaluators._ssh import SshRunner
from devicefit.evaluators._types import AccuracyResult, LatencyResult, LatencySource

__all__ = [
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
    "HostRunner",
    "LatencyCache",
    "LatencyEvaluator",
    "LatencyResult",
    "LatencySource",
    "Lease",
    "LeaseLostError",
    "MeasureSettings",
    "MeasuredLatency",
    "MeasurementError",
    "MeasurementTimeout",
    "MemoryFigure",
    "ReferenceSource",
    "Split",
    "SshRunner",
    "StagedModel",
    "TaskData",
    "UnparsableOutputError",
    "check_device",
    "default_latency",
    "host_latency",
]
