"""What a trial produced, as it is stored on the Optuna trial (so plain Optuna can read it back).

Each finished trial carries:
  - flat user attributes for ``study.trials_dataframe()`` and optuna-dashboard: ``key``, ``accuracy``,
    ``accuracy_fidelity``, ``latency_ms:<device>``, ``latency_source:<device>``, ``size_bytes``; for measured
    latencies also ``latency_cache_hit:<device>`` and ``latency_noisy:<device>``, and where known
    ``memory_peak_bytes:<device>`` (peak memory of inference, the figure a memory limit constrains) and
    ``cpu_fallback_ops:<device>`` (NNAdapter places: op type -> ops left on the CPU);
  - ``record``: the whole :class:`TrialRecord` as JSON-ready data (what reports and exports rebuild from).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from devicefit.evaluators._types import AccuracyResult, LatencyResult
from devicefit.spaces._candidate import Candidate

RECORD_ATTR = "record"
#: Study user attribute: candidate key -> what rung 3 did for that Pareto member (``search._final.FinalOutcome``).
FINAL_ATTR = "final"


@dataclasses.dataclass(frozen=True)
class Objective:
    """One objective of the study, with its unit."""

    name: str
    direction: str  # "maximize" | "minimize"
    unit: str


LATENCY_OBJECTIVES = ("per-device", "worst")
WORST_LATENCY = "latency_ms:worst"


def objectives_for(devices: tuple[str, ...], latency: str = "per-device") -> list[Objective]:
    """The study's objectives, in the order of Optuna's values.

    Args:
        devices: Device ids.
        latency: ``per-device`` (one latency objective per device) or ``worst`` (one objective: the largest
            latency over the devices).
    """
    if latency not in LATENCY_OBJECTIVES:
        raise ValueError(f"latency objective must be one of {LATENCY_OBJECTIVES}, got {latency!r}")
    latencies = (
        [Objective(WORST_LATENCY, "minimize", "ms")]
        if latency == "worst"
        else [Objective(f"latency_ms:{device}", "minimize", "ms") for device in devices]
    )
    return [Objective("accuracy", "maximize", "fraction"), *latencies, Objective("size_bytes", "minimize", "bytes")]


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
        nonzero_parameters: Parameters of the student that are not zero (unstructured sparsity shows here).
        compressed_size_bytes: The first device's ``.nb`` compressed with zlib (level 6), in bytes: the size
            a compressed download carries, which zeros and narrower weights shrink even where the ``.nb``
            itself does not. ``None`` in records of older versions.
        screening: What the fidelity ladder's screening found (values in objective order, accuracy and its
            fidelity, latency and its source per device, the decision); ``None`` with the ladder off.
        screened_out: Why the ladder did not promote the candidate (then its figures are the screening ones and
            it is never on the front); ``None`` when promoted or without a ladder.
    """

    candidate: Candidate
    accuracy: AccuracyResult
    latencies: dict[str, LatencyResult]
    size_bytes: int
    parameters: int
    artifact_dir: str
    seconds: float
    nonzero_parameters: int | None = None
    compressed_size_bytes: int | None = None
    screening: dict[str, Any] | None = None
    screened_out: str | None = None

    @property
    def key(self) -> str:
        return self.candidate.key()

    def value(self, objective: str) -> float:
        """The value of one objective (a name from :func:`objectives_for`)."""
        if objective == "accuracy":
            return self.accuracy.accuracy
        if objective == "size_bytes":
            return float(self.size_bytes)
        if objective == WORST_LATENCY:
            return max(result.latency_ms for result in self.latencies.values())
        if objective.startswith("latency_ms:"):
            return self.latencies[objective.split(":", 1)[1]].latency_ms
        raise KeyError(f"unknown objective {objective!r}")

    def values(self, objectives: list[Objective]) -> list[float]:
        """Objective values in the order of ``objectives``."""
        return [self.value(objective.name) for objective in objectives]

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
            "nonzero_parameters": self.nonzero_parameters,
            "compressed_size_bytes": self.compressed_size_bytes,
            "screening": self.screening,
            "screened_out": self.screened_out,
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
            nonzero_parameters=data.get("nonzero_parameters"),
            compressed_size_bytes=data.get("compressed_size_bytes"),
            screening=data.get("screening"),
            screened_out=data.get("screened_out"),
        )

    def user_attrs(self) -> dict[str, Any]:
        """The attributes to set on the Optuna trial (flat ones first, then the full record)."""
        attrs: dict[str, Any] = {
            "key": self.key,
            "accuracy": self.accuracy.accuracy,
            "accuracy_fidelity": self.accuracy.fidelity,
            "size_bytes": self.size_bytes,
        }
        if self.screened_out is not None:
            attrs["screened_out"] = self.screened_out
        if self.compressed_size_bytes is not None:
            attrs["compressed_size_bytes"] = self.compressed_size_bytes
        for device, result in self.latencies.items():
            attrs[f"latency_ms:{device}"] = result.latency_ms
            attrs[f"latency_source:{device}"] = result.source_label
            if result.source == "measured":
                attrs[f"latency_cache_hit:{device}"] = result.cache_hit
                attrs[f"latency_noisy:{device}"] = result.noisy
            if result.memory_peak_bytes is not None:
                attrs[f"memory_peak_bytes:{device}"] = result.memory_peak_bytes
            if result.cpu_fallback_ops is not None:
                attrs[f"cpu_fallback_ops:{device}"] = result.cpu_fallback_ops
        attrs[RECORD_ATTR] = self.to_dict()
        return attrs
