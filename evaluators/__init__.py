"""Evaluators: accuracy proxies, latency (measured by Paddle Lite, or predicted), size.

Importing this package does not import Paddle or start a Lite worker.
"""

from __future__ import annotations

from devicefit.evaluators._data import DataError, Split, TaskData
from devicefit.evaluators._types import AccuracyResult, LatencyResult, LatencySource

__all__ = ["AccuracyResult", "DataError", "LatencyResult", "LatencySource", "Split", "TaskData"]
