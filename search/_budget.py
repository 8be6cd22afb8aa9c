"""Budgets: what a deployable candidate must meet, as Optuna constraints (a value <= 0 is met).

Each budget becomes a named constraint on the trial (``Trial.set_constraint(name, value)``), which the
samplers use and plain Optuna shows; infeasible trials never reach the reported front.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Budget:
    """Limits a candidate must meet to be deployable.

    Attributes:
        latency_ms: Maximum latency per device id, in milliseconds.
        size_bytes: Maximum size of the deployable model, in bytes.
        max_accuracy_drop: Largest accuracy loss against the teacher allowed, as a fraction (0.01 = one point).
    """

    latency_ms: Mapping[str, float] = dataclasses.field(default_factory=dict)
    size_bytes: int | None = None
    max_accuracy_drop: float | None = None

    def __post_init__(self) -> None:
        for device, limit in self.latency_ms.items():
            if limit <= 0:
                raise ValueError(f"the latency budget of {device} must be positive, got {limit} ms")
        if self.size_bytes is not None and self.size_bytes <= 0:
            raise ValueError(f"the size budget must be positive, got {self.size_bytes} bytes")
        if self.max_accuracy_drop is not None and not 0 <= self.max_accuracy_drop < 1:
            raise ValueError(f"the accuracy drop must be in [0, 1), got {self.max_accuracy_drop}")

    @property
    def empty(self) -> bool:
        return not self.latency_ms and self.size_bytes is None and self.max_accuracy_drop is None

    def names(self) -> list[str]:
        """Constraint names, in the order of :meth:`violations`."""
        names = [f"latency_ms:{device}" for device in self.latency_ms]
        if self.size_bytes is not None:
            names.append("size_bytes")
        if self.max_accuracy_drop is not None:
            names.append("accuracy_drop")
        return names

    def violations(
        self, *, accuracy: float, latency_ms: Mapping[str, float], size_bytes: int, teacher_accuracy: float | None
    ) -> list[float]:
        """How far past each limit a candidate is, relative to the limit (<= 0: met).

        Relative values keep constraints of different units comparable for the samplers.

        Raises:
            ValueError: The accuracy budget needs ``teacher_accuracy``.
        """
        values = [latency_ms[device] / limit - 1.0 for device, limit in self.latency_ms.items()]
        if self.size_bytes is not None:
            values.append(size_bytes / self.size_bytes - 1.0)
        if self.max_accuracy_drop is not None:
            if teacher_accuracy is None:
                raise ValueError("an accuracy-drop budget needs the teacher's accuracy")
            floor = teacher_accuracy - self.max_accuracy_drop
            values.append((floor - accuracy) / max(floor, 1e-9))
        return values

    def describe(self) -> str:
        parts = [f"{device} <= {limit:g} ms" for device, limit in self.latency_ms.items()]
        if self.size_bytes is not None:
            parts.append(f"size <= {self.size_bytes} bytes")
        if self.max_accuracy_drop is not None:
            parts.append(f"accuracy drop <= {self.max_accuracy_drop * 100:g} points")
        return ", ".join(parts) or "none"


def memory_violations(latencies: Mapping[str, Any]) -> dict[str, float]:
    """A device's memory limit (from its profile) as a constraint: ``memory_bytes:<device>`` (<= 0: fits).

    Phones kill apps that use too much memory, so a candidate whose measured inference memory exceeds the
    device's limit is not deployable there. Devices without a limit, or results without a memory figure
    (predicted latency), add no constraint.

    Args:
        latencies: Device id -> its ``LatencyResult``.
    """
    violations = {}
    for device, result in latencies.items():
        limit = getattr(result, "memory_limit_bytes", None)
        peak = getattr(result, "memory_peak_bytes", None)
        if limit and peak is not None:
            violations[f"memory_bytes:{device}"] = peak / limit - 1.0
    return violations


def feasible(violations: Sequence[float]) -> bool:
    return all(v <= 0 for v in violations)


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")


def parse_duration_seconds(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1h30m`` or a plain number of seconds -> seconds.

    Raises:
        ValueError: Not a positive duration.
    """
    text = text.strip().lower()
    try:
        seconds = float(text)
    except ValueError:
        match = _DURATION.match(text)
        if not text or match is None or not any(match.groups()):
            raise ValueError(f"expected a duration such as 90s, 30m, 2h or 1h30m, got '{text}'") from None
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got '{text}'")
    return seconds


def parse_latency_budget(text: str, devices: Sequence[str]) -> dict[str, float]:
    """``8`` (every device), ``8ms``, or ``sd865-cpu-4t=8ms`` -> {device: ms}.

    Raises:
        ValueError: Not a positive number of milliseconds, or an unknown device.
    """
    device_part, _, value_part = text.rpartition("=")
    value = value_part.strip().lower().removesuffix("ms").strip()
    try:
        limit = float(value)
    except ValueError:
        raise ValueError(f"expected a latency in ms such as 8 or 8ms or DEVICE=8ms, got '{text}'") from None
    if limit <= 0:
        raise ValueError(f"a latency budget must be positive, got '{text}'")
    if device_part:
        if device_part not in devices:
            raise ValueError(f"latency budget for '{device_part}', which is not one of the run's devices ({', '.join(devices)})")
        return {device_part: limit}
    return {device: limit for device in devices}
