"""Results of evaluators: plain frozen data with units in the names, ready for JSON."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

LatencySource = Literal["measured", "predicted"]


@dataclasses.dataclass(frozen=True)
class AccuracyResult:
    """An accuracy figure and where it came from.

    Attributes:
        accuracy: Top-1 accuracy in [0, 1].
        split: The split it was measured on (``val`` during search, ``test`` for final models).
        fidelity: The rung of the accuracy ladder that produced it, e.g. ``distill-3ep``.
        seconds: Wall time the evaluation cost.
        details: Extra figures of the rung (losses before/after, steps...).
    """

    accuracy: float
    split: str
    fidelity: str
    seconds: float
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

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
        calibrated: For a predicted figure, whether the profile's predictor was fitted on measurements of
            this device (False: seeded from public figures, to be read as a rough estimate); None when
            measured.
        predictor: For a predicted figure, which predictor made it and its measured error, in one line;
            None when measured.
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
    calibrated: bool | None = None
    predictor: str | None = None

    def __post_init__(self) -> None:
        if self.source == "predicted" and self.calibrated is None:
            raise ValueError("a predicted latency must say whether its predictor was calibrated")

    @property
    def source_label(self) -> str:
        """``measured``, ``predicted`` or ``predicted (uncalibrated)``: what every displayed figure carries."""
        if self.source == "predicted" and not self.calibrated:
            return "predicted (uncalibrated)"
        return self.source

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
