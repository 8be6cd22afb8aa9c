"""A study's results as plain data: one :class:`TrialView` per trial, and a pandas table of them.

Reports, exports and ``trials_dataframe`` read the trials through here. Records are read as the JSON data
stored on each trial (``user_attrs["record"]``), not through :class:`TrialRecord`, so fields that newer
evaluators add to a latency or accuracy result (a per-kernel breakdown, ops that fall back from the NPU to
the CPU, peak memory, a predictor's calibration) reach the report even though nothing here names them
all. The few that the report shows on their own are read by the functions below, in one place.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from devicefit.evaluators._types import latency_source_label
from devicefit.search._pareto import pareto_front_mask
from devicefit.search._records import RECORD_ATTR, WORST_LATENCY, Objective

#: Keys of a latency result that may hold a per-kernel latency breakdown, in milliseconds: a mapping from a
#: kernel key (``<op type>`` or ``<target>/<op type>/<precision>``) to ms. The first present one is used.
KERNEL_BREAKDOWN_KEYS = ("kernels_ms", "kernel_ms", "kernel_breakdown_ms")
#: Keys of a latency result that name, per op type, the ops that fall back from an accelerator to the CPU.
FALLBACK_KEYS = ("cpu_fallback_ops",)
#: ... and the ops that stay on the accelerator.
ACCELERATOR_KEYS = ("nnadapter_ops", "accelerator_ops")


@dataclasses.dataclass(frozen=True)
class TrialView:
    """One trial of a study, as plain data.

    Attributes:
        number: Optuna's trial number.
        state: ``COMPLETE``, ``FAIL``, ``PRUNED``, ``RUNNING`` or ``WAITING``.
        key: The candidate's key, when the trial got as far as drawing one.
        record: The trial's record as stored (JSON data of a :class:`TrialRecord`), when it evaluated one.
        duplicate_of: The trial whose result this one reused (same candidate), if any.
        constraints: Budget name -> violation relative to the limit (<= 0: met).
        error: Why the trial failed, if it did.
        rejected: Why the candidate was rejected before any work, if it was.
        interrupted: The trial was cut short (Ctrl-C, a dead worker): it does not count.
    """

    number: int
    state: str
    key: str | None
    record: Mapping[str, Any] | None
    duplicate_of: int | None
    constraints: Mapping[str, float]
    error: str | None
    rejected: str | None
    interrupted: bool

    @property
    def evaluated(self) -> bool:
        """A complete trial that evaluated its own candidate (not a reused duplicate)."""
        return self.state == "COMPLETE" and self.record is not None and self.duplicate_of is None

    @property
    def feasible(self) -> bool:
        """It meets every budget (always true without a budget)."""
        return all(value <= 0 for value in self.constraints.values())


def trial_views(study: Any) -> list[TrialView]:
    """Every trial of ``study``, in trial-number order."""
    views = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        constraints = {name: float(value) for name, value in trial.constraints.items()}
        duplicate = attrs.get("duplicate_of")
        views.append(
            TrialView(
                number=trial.number,
                state=trial.state.name,
                key=attrs.get("key"),
                record=attrs.get(RECORD_ATTR),
                duplicate_of=None if duplicate is None else int(duplicate),
                constraints=constraints,
                error=attrs.get("error"),
                rejected=attrs.get("rejected"),
                interrupted=bool(attrs.get("interrupted", False)),
            )
        )
    return sorted(views, key=lambda view: view.number)


def study_devices(study: Any, views: Sequence[TrialView]) -> tuple[str, ...]:
    """The run's device ids: from the study's run spec, else its per-device objectives, else its records."""
    spec = study.user_attrs.get("spec") or {}
    if spec.get("devices"):
        return tuple(spec["devices"])
    names = [str(name) for name in study.user_attrs.get("objectives") or []]
    per_device = [name.split(":", 1)[1] for name in names if name.startswith("latency_ms:") and name != WORST_LATENCY]
    if per_device:
        return tuple(per_device)
    seen: dict[str, None] = {}
    for view in views:
        for device in (view.record or {}).get("latencies", {}):
            seen.setdefault(device, None)
    return tuple(seen)


def record_value(record: Mapping[str, Any], objective: str) -> float:
    """The value of one objective (a name from ``objectives_for``) in a stored record.

    The same figures as :meth:`TrialRecord.value`, read from the stored JSON so that a record with fields this
    version does not know still counts.
    """
    if objective == "accuracy":
        return float(record["accuracy"]["accuracy"])
    if objective == "size_bytes":
        return float(record["size_bytes"])
    if objective == WORST_LATENCY:
        return max(float(latency["latency_ms"]) for latency in record["latencies"].values())
    if objective.startswith("latency_ms:"):
        return float(record["latencies"][objective.split(":", 1)[1]]["latency_ms"])
    raise KeyError(f"unknown objective {objective!r}")


def front_views(views: Sequence[TrialView], objectives: Sequence[Objective]) -> list[TrialView]:
    """The run's Pareto members: feasible, evaluated, non-dominated over every objective; best accuracy first.

    The rule of ``pareto.csv`` (``_outputs.pareto_records``), applied to the stored records.
    """
    candidates = [view for view in views if view.evaluated and view.feasible and not (view.record or {}).get("screened_out")]
    if not candidates:
        return []
    values = np.array([[record_value(view.record or {}, o.name) for o in objectives] for view in candidates])
    signs = np.array([-1.0 if o.direction == "maximize" else 1.0 for o in objectives])
    mask = pareto_front_mask(values * signs)
    front = [view for view, keep in zip(candidates, mask) if keep]
    return sorted(front, key=lambda v: (-record_value(v.record or {}, "accuracy"), record_value(v.record or {}, "size_bytes")))


def latency_provenance(latency: Mapping[str, Any]) -> str:
    """How a stored latency figure was obtained, labelled as everywhere else (``LatencyResult.source_label``).

    ``measured``; ``predicted (calibrated)`` (by a predictor fitted on that very device); ``predicted
    (uncalibrated)`` (by a profile seeded from public figures); plain ``predicted`` for a record that does not say.
    """
    calibrated = latency.get("calibrated")
    predictor = latency.get("predictor")
    if calibrated is None and isinstance(predictor, Mapping):
        calibrated = predictor.get("calibrated")
    return latency_source_label(str(latency.get("source", "unknown")), None if calibrated is None else bool(calibrated))


def _first_mapping(latency: Mapping[str, Any], keys: Sequence[str]) -> dict[str, float] | None:
    for key in keys:
        value = latency.get(key)
        if isinstance(value, Mapping) and value:
            return {str(k): float(v) for k, v in value.items()}
    return None


def kernel_type(kernel_key: str) -> str:
    """The op type of a kernel key: ``arm/fc/fp32`` -> ``fc``; ``fc`` -> ``fc``."""
    parts = kernel_key.split("/")
    return parts[1] if len(parts) >= 3 else parts[0]


def kernel_breakdown_ms(latency: Mapping[str, Any]) -> dict[str, float] | None:
    """Milliseconds per kernel type (summed over targets and precisions), or None when not recorded.

    A per-inference overhead the result records (``overhead_ms``) and the time spent handing data to and from
    accelerator subgraphs (``subgraphs_ms``) appear as their own entries.
    """
    kernels = _first_mapping(latency, KERNEL_BREAKDOWN_KEYS)
    if kernels is None:
        return None
    by_type: dict[str, float] = {}
    for key, ms in kernels.items():
        by_type[kernel_type(key)] = by_type.get(kernel_type(key), 0.0) + ms
    for extra, label in (("overhead_ms", "(overhead)"), ("subgraphs_ms", "(subgraph hand-off)")):
        value = latency.get(extra)
        if isinstance(value, (int, float)) and value > 0:
            by_type[label] = float(value)
    return dict(sorted(by_type.items(), key=lambda item: -item[1]))


def fallback_ops(latency: Mapping[str, Any]) -> dict[str, int] | None:
    """Op type -> ops of that type that fall back from the accelerator to the CPU, or None when not recorded.

    An empty mapping is a recorded "nothing falls back"; None (the key absent, or null, as it is for CPU
    places) means the result does not say.
    """
    for key in FALLBACK_KEYS:
        value = latency.get(key)
        if isinstance(value, Mapping):
            return {str(k): int(v) for k, v in value.items()}
    return None


def accelerator_ops(latency: Mapping[str, Any]) -> dict[str, int] | None:
    """Op type -> ops of that type that run on the accelerator, or None when not recorded."""
    ops = _first_mapping(latency, ACCELERATOR_KEYS)
    return None if ops is None else {k: int(v) for k, v in ops.items()}


def test_accuracies(study: Any, out: Path | None = None) -> dict[str, float]:
    """Candidate key -> accuracy on the held-out test split, for the models the run exported.

    Read from the study (user attribute ``test_accuracy``); runs made before devicefit stored it there have
    it only in ``<out>/pareto.json``, which is read when ``out`` is given.
    """
    found: dict[str, float] = {}
    if out is not None and (Path(out) / "pareto.json").is_file():
        try:
            members = json.loads((Path(out) / "pareto.json").read_text(encoding="utf-8")).get("members", [])
        except ValueError:
            members = []
        for member in members:
            test = member.get("test_accuracy")
            if isinstance(test, dict) and test.get("value") is not None:
                found[str(member["key"])] = float(test["value"])
    stored = study.user_attrs.get("test_accuracy") or {}
    found.update({str(key): float(value) for key, value in stored.items() if value is not None})
    return found


test_accuracies.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def _candidate_columns(candidate: Mapping[str, Any]) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for name, value in candidate.items():
        columns[f"candidate_{name}"] = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
    if "layers" in candidate:
        columns["depth"] = len(candidate["layers"])
    return columns


def trial_rows(
    views: Sequence[TrialView],
    devices: Sequence[str],
    *,
    front_keys: Sequence[str] = (),
    test_accuracy: Mapping[str, float] | None = None,
    test_fidelity: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One flat row per trial; the unit is in each metric's column name, the source beside each latency.

    Columns: ``number``, ``state``, ``key``, ``duplicate_of``, ``feasible``, ``on_front``,
    ``accuracy_fraction``, ``accuracy_split``, ``accuracy_fidelity``, ``test_accuracy_fraction`` and
    ``test_accuracy_fidelity`` (the rung of the exported model it is of: ``test_fidelity`` for the members
    rung 3 re-trained, the search's rung for the others), then per
    device ``latency_ms:<d>``, ``latency_source:<d>``, ``latency_p10_ms:<d>``, ``latency_p90_ms:<d>``,
    ``nb_bytes:<d>`` (and ``memory_peak_bytes:<d>`` where recorded), then ``size_bytes``,
    ``parameters_count``, ``trial_seconds``, one ``constraint:<name>`` column per budget (violation relative
    to the limit, <= 0 met), the candidate's fields (``candidate_<field>``, ``depth``), ``error``, ``rejected``.
    """
    test_accuracy = test_accuracy or {}
    test_fidelity = test_fidelity or {}
    front = set(front_keys)
    rows = []
    for view in views:
        record = view.record if view.state == "COMPLETE" else None
        row: dict[str, Any] = {
            "number": view.number,
            "state": view.state,
            "key": view.key,
            "duplicate_of": view.duplicate_of,
            "feasible": view.feasible if record is not None else None,
            "on_front": view.evaluated and view.key in front,
        }
        accuracy = (record or {}).get("accuracy") or {}
        row["accuracy_fraction"] = accuracy.get("accuracy")
        row["accuracy_split"] = accuracy.get("split")
        row["accuracy_fidelity"] = accuracy.get("fidelity")
        row["test_accuracy_fraction"] = test_accuracy.get(view.key or "") if view.evaluated else None
        row["test_accuracy_fidelity"] = (
            test_fidelity.get(view.key or "", accuracy.get("fidelity")) if row["test_accuracy_fraction"] is not None else None
        )
        latencies = (record or {}).get("latencies") or {}
        for device in devices:
            latency = latencies.get(device) or {}
            row[f"latency_ms:{device}"] = latency.get("latency_ms")
            row[f"latency_source:{device}"] = latency_provenance(latency) if latency else None
            row[f"latency_p10_ms:{device}"] = latency.get("p10_ms")
            row[f"latency_p90_ms:{device}"] = latency.get("p90_ms")
            row[f"nb_bytes:{device}"] = latency.get("model_bytes")
            if latency.get("memory_peak_bytes") is not None:
                row[f"memory_peak_bytes:{device}"] = latency["memory_peak_bytes"]
        row["size_bytes"] = (record or {}).get("size_bytes")
        row["parameters_count"] = (record or {}).get("parameters")
        row["trial_seconds"] = (record or {}).get("seconds")
        for name, value in view.constraints.items():
            row[f"constraint:{name}"] = value
        candidate = (record or {}).get("candidate")
        if candidate:
            row.update(_candidate_columns(candidate))
        row["error"] = view.error
        row["rejected"] = view.rejected
        rows.append(row)
    return rows
