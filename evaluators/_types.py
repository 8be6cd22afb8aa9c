"""Results of evaluators: plain frozen data with units in the names, ready for JSON."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

LatencySource = Literal["measured", "predicted"]


@dataclasses.dataclass(frozen=True)
class AccuracyResult:
    """An accuracy figure and where it came from.

    Attributes:
        accuracy: The metric's value (``metric`` names it; top-1 accuracy in [0, 1] by default). Higher is
            better.
        split: The split it was measured on (``val`` during search, ``test`` only for final models).
        fidelity: The rung of the accuracy ladder that produced it, e.g. ``zero-cost``, ``distill-2ep``,
            ``final-distill-30ep``. Shown next to the figure wherever the figure is shown.
        seconds: Wall time the evaluation cost (fine-tuning included).
        details: Extra figures of the rung (losses before/after, other scores, steps...).
        metric: Name of the metric behind ``accuracy`` (``accuracy``, ``macro_f1`` or a user metric's name).
    """

    accuracy: float
    split: str
    fidelity: str
    seconds: float
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    metric: str = "accuracy"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LatencyResult:
    """A latency figure for one model on one device, and whether it was measured or predicted.

    Attributes:
        device_id: The device profile's id.
        latency_ms: The figure used for decisions (see ``statistic``), in milliseconds.
        source: ``measured`` on the device, or ``predicted`` by a profile's model. Never mixed silently.
        statistic: How ``latency_ms`` was derived from the runs (e.g. ``min-of-block-medians``).
        p10_ms: 10th percentile of all timed runs (measured only).
        p90_ms: 90th percentile of all timed runs (measured only).
        cv: Coefficient of variation of all timed runs (measured only).
        repeats: Timed runs (0 when predicted).
        threads: Inference threads.
        seconds: Wall time the measurement (or prediction) cost, conversion included.
        model_bytes: Size of the deployed Paddle Lite ``.nb`` file, in bytes.
    """

    device_id: str
    latency_ms: float
    source: LatencySource
    statistic: str
    p10_ms: float | None
    p90_ms: float | None
    cv: float | None
    repeats: int
    threads: int
    seconds: float
    model_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
