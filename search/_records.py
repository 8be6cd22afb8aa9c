"""What a trial produced, as it is stored on the Optuna trial (so plain Optuna can read it back).

Each finished trial carries:
  - flat user attributes for ``study.trials_dataframe()`` and optuna-dashboard: ``key``, ``accuracy``,
    ``accuracy_fidelity``, ``latency_ms:<device>``, ``latency_source:<device>``, ``size_bytes``;
  - ``record``: the whole :class:`TrialRecord` as JSON-ready data (what reports and exports rebuild from).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from devicefit.evaluators._types import AccuracyResult, LatencyResult
from devicefit.spaces._candidate import Candidate

RECORD_ATTR = "record"


@dataclasses.dataclass(frozen=True)
class Objective:
    """One objective of the study, with its unit."""

    name: str
    direction: str  # "maximize" | "minimize"
    unit: str


def objectives_for(devices: tuple[str, ...]) -> list[Objective]:
    """The study's objectives, in the order of Optuna's values: accuracy, latency per device, size."""
    return [
        Objective("accuracy", "maximize", "fraction"),
        *(Objective(f"latency_ms:{device}", "minimize", "ms") for device in devices),
        Objective("size_bytes", "minimize", "bytes"),
    ]


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """Everything one evaluated candidate produced.

    Attributes:
        candidate: The point of the space.
        accuracy: Its accuracy (validation split, with the rung that produced it).
        latencies: Latency per device id, each measured or predicted (the result says which).
        size_bytes: Size of the deployable model: the ``.nb`` for the first device, in bytes.
        parameters: Number of parameters of the student.
        artifact_dir: Folder of the candidate's files, relative to the run's output folder.
        seconds: Wall time of the whole trial.
    """

    candidate: Candidate
    accuracy: AccuracyResult
    latencies: dict[str, LatencyResult]
    size_bytes: int
    parameters: int
    artifact_dir: str
    seconds: float

    @property
    def key(self) -> str:
        return self.candidate.key()

    def values(self, devices: tuple[str, ...]) -> list[float]:
        """Objective values in the order of :func:`objectives_for`."""
        return [self.accuracy.accuracy, *(self.latencies[d].latency_ms for d in devices), float(self.size_bytes)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "candidate": self.candidate.to_dict(),
            "accuracy": self.accuracy.to_dict(),
            "latencies": {device: result.to_dict() for device, result in self.latencies.items()},
            "size_bytes": self.size_bytes,
            "parameters": self.parameters,
            "artifact_dir": self.artifact_dir,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRecord:
        return cls(
            candidate=Candidate.from_dict(data["candidate"]),
            accuracy=AccuracyResult(**data["accuracy"]),
            latencies={device: LatencyResult(**result) for device, result in data["latencies"].items()},
            size_bytes=int(data["size_bytes"]),
            parameters=int(data["parameters"]),
            artifact_dir=str(data["artifact_dir"]),
            seconds=float(data["seconds"]),
        )

    def user_attrs(self) -> dict[str, Any]:
        """The attributes to set on the Optuna trial (flat ones first, then the full record)."""
        attrs: dict[str, Any] = {
            "key": self.key,
            "accuracy": self.accuracy.accuracy,
            "accuracy_fidelity": self.accuracy.fidelity,
            "size_bytes": self.size_bytes,
        }
        for device, result in self.latencies.items():
            attrs[f"latency_ms:{device}"] = result.latency_ms
            attrs[f"latency_source:{device}"] = result.source_label
        attrs[RECORD_ATTR] = self.to_dict()
        return attrs
