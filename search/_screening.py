"""The fidelity ladder inside a fit: every candidate is screened cheaply, only those that could still be
Pareto-optimal are promoted (measured on the device, fine-tuned longer).

A trial runs in two steps (see ``Fit.evaluate``):

1. **Screening**, for every candidate: the search's accuracy rung (``FitSettings.distillation``, one epoch by
   default), and the latency the device profile *predicts* for every device that has a predictor (a device
   without one is measured straight away: there is nothing cheaper). Size is exact already.
2. **Promotion**, only when :func:`screen` says the candidate could still be on the front, given how wrong
   the screening figures can be: ``LadderSettings.promote_epochs`` more epochs of distillation on the same
   student, a new export, and the devices' final latency (measured where the device is reachable).

The screening values are compared with the *screening* values of the study's other trials (same rung, same
sources), with each objective's error allowance in the candidate's favour (``_ladder.should_promote``):

- accuracy: ``_ladder.DEFAULT_ACCURACY_MARGIN``, measured by ``bench/proxy_fidelity.py`` as how far the
  one-epoch rung's order can be from the final accuracy's;
- latency of a device that will be measured: the predictor's own measured error (twice its MAPE, at least
  10%), or infinite for an uncalibrated profile (its prediction cannot rule anything out); a device that stays
  predicted has no allowance (its screening figure *is* its final figure);
- size: none (the ``.nb`` is converted during screening).

A candidate that is not promoted keeps its screening record, labelled as such (its accuracy's fidelity is
the screening rung, its latencies say ``predicted``), Optuna is told those values, and it is marked
``screened_out`` with the reason: it never appears on the reported front.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from devicefit.search._ladder import DEFAULT_ACCURACY_MARGIN, should_promote

#: Trial attribute holding a trial's screening values (objective order of the study).
SCREEN_ATTR = "screen_values"
#: Smallest relative latency allowance for a predicted latency that will be replaced by a measurement.
MIN_LATENCY_MARGIN = 0.10


@dataclasses.dataclass(frozen=True)
class LadderSettings:
    """How the fit's fidelity ladder runs.

    Attributes:
        enabled: Screen every candidate and promote only the promising ones; ``False`` evaluates every
            candidate at full fidelity (final latency for every device, the longer fine-tune for all).
        promote_epochs: Further distillation epochs a promoted candidate gets (on top of the screening rung's).
        accuracy_margin: Allowance on the screening accuracy, in accuracy units (fraction).
    """

    enabled: bool = True
    promote_epochs: int = 2
    accuracy_margin: float = DEFAULT_ACCURACY_MARGIN

    def __post_init__(self) -> None:
        if self.promote_epochs < 0:
            raise ValueError(f"promote_epochs must be >= 0, got {self.promote_epochs}")
        if not self.accuracy_margin >= 0:
            raise ValueError(f"accuracy_margin must be >= 0, got {self.accuracy_margin}")

    def describe(self, screened_devices: Sequence[str]) -> str:
        if not self.enabled:
            return "off: every candidate gets the final latency and the longer fine-tune"
        latency = (f"latency predicted for {', '.join(screened_devices)}, measured when promoted; "
                   if screened_devices else "")
        promotion = (f"+{self.promote_epochs} distillation epoch(s)" if self.promote_epochs
                     else "the final latency, no further fine-tune")
        return (f"screen every candidate ({latency}accuracy after the search rung), promote those within the "
                f"measured margins of the screening front (accuracy +-{self.accuracy_margin:.3f}): {promotion}")


def latency_margin(profile: Any, *, final_is_predicted: bool) -> float:
    """Relative allowance on a device's screening latency (0.10 = 10%), see the module docstring."""
    if final_is_predicted or profile.predictor is None:
        return 0.0
    provenance = profile.predictor.provenance
    if not provenance.calibrated or provenance.error is None:
        return math.inf
    return max(MIN_LATENCY_MARGIN, 2.0 * provenance.error.mape_percent / 100.0)


@dataclasses.dataclass(frozen=True)
class Decision:
    """Whether a screened candidate goes on, and why."""

    promote: bool
    reason: str


def screen(
    values: Sequence[float],
    others: Sequence[tuple[int, Sequence[float]]],
    *,
    maximize: Sequence[bool],
    margins: Sequence[float],
) -> Decision:
    """Promote unless another trial's screening values dominate the candidate's even with the allowances.

    Args:
        values: The candidate's screening values (study objective order).
        others: ``(trial number, screening values)`` of the study's other screened trials.
        maximize: Per objective, whether larger is better.
        margins: Per objective, the allowance in its units (see :func:`objective_margins`).
    """
    if not others:
        return Decision(True, "the first screened candidate")
    for number, other in others:
        if not should_promote(values, np.asarray([other], dtype=float), maximize=maximize, margins=margins):
            return Decision(False, f"dominated on the screening figures by trial #{number}, even within the margins")
    return Decision(True, "could be Pareto-optimal within the screening margins")


def objective_margins(
    objective_names: Sequence[str], values: Sequence[float], accuracy_margin: float, relative: dict[str, float]
) -> list[float]:
    """Each objective's allowance in its own units, for a candidate with screening ``values``.

    Args:
        objective_names: The study's objectives (``accuracy``, ``latency_ms:<device>``, ``latency_ms:worst``,
            ``size_bytes``).
        values: The candidate's screening values.
        accuracy_margin: Allowance on accuracy.
        relative: Relative latency allowance per device id (:func:`latency_margin`).
    """
    margins = []
    for name, value in zip(objective_names, values):
        if name == "accuracy":
            margins.append(accuracy_margin)
        elif name.startswith("latency_ms:"):
            device = name.split(":", 1)[1]
            share = max(relative.values(), default=0.0) if device == "worst" else relative.get(device, 0.0)
            margins.append(math.inf if math.isinf(share) else share * value)
        else:
            margins.append(0.0)
    return margins
