"""The run's report: first its data, computed from the study alone (:func:`build_report_data`), then the page.

:class:`ReportData` is plain, JSON-ready data: the Pareto front per device, the hypervolume history, the
Pareto members with every metric (value, unit, source), and, where the records carry them, per-kernel-type
latency and the ops that fall back from an NPU to the CPU. Every latency figure travels with its
provenance (``measured``, ``predicted (calibrated)``, ``predicted (uncalibrated)``: the labels of
``LatencyResult.source_label``), and the report states how many of each it shows.
:mod:`devicefit.search._report_html` only draws this data.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from devicefit.search._final import FinalOutcome, final_outcomes
from devicefit.search._hypervolume import normalization_box, normalized_history
from devicefit.search._pareto import pareto_front_mask
from devicefit.search._records import WORST_LATENCY, Objective
from devicefit.search._results import (
    TrialView,
    accelerator_ops,
    fallback_ops,
    front_views,
    kernel_breakdown_ms,
    latency_provenance,
    record_value,
    study_devices,
    test_accuracies,
    trial_views,
)

REPORT_FILE = "report.html"
HYPERVOLUME_METHOD = (
    "exact hypervolume computed by devicefit (search/_hypervolume.py: a sweep in 2-D, slicing along the last "
    "objective above), each objective scaled to the box between the best value seen and a reference 10% "
    "beyond the worst; feasible candidates only"
)
#: Above this many objectives the all-objective hypervolume is not computed (slicing grows as n^(d-1)).
MAX_HYPERVOLUME_OBJECTIVES = 4


@dataclasses.dataclass(frozen=True)
class Metric:
    """One figure of a Pareto member.

    Attributes:
        name: What it is (``accuracy``, ``latency host-x86``, ...).
        value: The figure, or None when it was not evaluated.
        unit: ``fraction``, ``ms``, ``bytes`` or ``count``.
        source: Where it comes from: the split and accuracy rung, ``measured`` / ``predicted`` (and whether
            the predictor was calibrated), or what a size counts.
    """

    name: str
    value: float | None
    unit: str
    source: str


@dataclasses.dataclass(frozen=True)
class FrontPoint:
    """An evaluated candidate, placed on one device's accuracy-latency plane.

    Attributes:
        trial: The trial that evaluated it.
        key: The candidate's key.
        accuracy: Validation accuracy (fraction).
        latency_ms: Latency on the device, in ms.
        provenance: ``measured``, ``predicted (calibrated)``, ``predicted (uncalibrated)``, or plain
            ``predicted`` for a record that does not say.
        feasible: It meets every budget.
        on_device_front: Not dominated in (accuracy, this device's latency) among the feasible candidates.
        member: One of the run's Pareto members (over all objectives).
    """

    trial: int
    key: str
    accuracy: float
    latency_ms: float
    provenance: str
    feasible: bool
    on_device_front: bool
    member: bool


@dataclasses.dataclass(frozen=True)
class DeviceFront:
    """Every evaluated candidate on one device's accuracy-latency plane.

    Attributes:
        device: Device id.
        unit: ``cpu``, ``gpu`` or ``npu`` when the device's profile is known here.
        points: One per evaluated candidate.
        provenance_counts: How many latencies of each provenance the plane shows.
    """

    device: str
    unit: str | None
    points: tuple[FrontPoint, ...]
    provenance_counts: Mapping[str, int]

    @property
    def mixed(self) -> bool:
        """Measured and predicted latencies on the same plane."""
        return len({p.split(" ")[0] for p in self.provenance_counts}) > 1


@dataclasses.dataclass(frozen=True)
class HypervolumeSeries:
    """How the hypervolume of the feasible candidates grew, trial after trial.

    Attributes:
        name: What it measures (``host-x86``: accuracy x latency; ``all objectives``).
        objectives: The objectives it spans, with their units.
        trials: Trial numbers, in order (the x axis).
        values: Hypervolume after each trial, as a share of the box (0..1).
        ideal: Best value seen of each objective (natural sign: accuracy as a fraction).
        reference: The reference point of each objective (natural sign).
        latency_provenance: Provenance -> how many latency figures went in (to say when kinds are mixed).
    """

    name: str
    objectives: tuple[str, ...]
    trials: tuple[int, ...]
    values: tuple[float, ...]
    ideal: tuple[float, ...]
    reference: tuple[float, ...]
    latency_provenance: Mapping[str, int]


@dataclasses.dataclass(frozen=True)
class MemberRow:
    """A Pareto member with every metric.

    Attributes:
        trial: The trial that evaluated it.
        key: The candidate's key.
        description: The candidate in words (layers, heads, FFN, precision).
        metrics: Each figure with its unit and source.
    """

    trial: int
    key: str
    description: str
    metrics: tuple[Metric, ...]


@dataclasses.dataclass(frozen=True)
class KernelBreakdown:
    """Latency per kernel type of one member on one device.

    Attributes:
        key: The member's key.
        device: Device id.
        provenance: Whether the breakdown was measured or predicted.
        latency_ms: The member's whole latency on the device.
        kernels: (kernel type, ms) pairs, largest first.
    """

    key: str
    device: str
    provenance: str
    latency_ms: float
    kernels: tuple[tuple[str, float], ...]


@dataclasses.dataclass(frozen=True)
class Fallback:
    """Where one member's ops run on an accelerator device.

    Attributes:
        key: The member's key.
        device: Device id.
        cpu_ops: Op type -> ops that fall back to the CPU (empty: none does).
        accelerator_ops: Op type -> ops that run on the accelerator, when recorded.
    """

    key: str
    device: str
    cpu_ops: Mapping[str, int]
    accelerator_ops: Mapping[str, int] | None


@dataclasses.dataclass(frozen=True)
class ReportData:
    """Everything the report shows, as plain data.

    Attributes:
        title: The page title.
        study_name: The Optuna study.
        storage: Where the study is stored (a password in the URL is masked).
        generated: When the data was computed (ISO 8601, local time with offset).
        task: The task's name, when the study records it.
        devices: Device ids.
        objectives: The study's objectives with direction and unit.
        teacher_accuracy: The teacher's validation accuracy, when recorded.
        budget: The budget in words ("none" without one).
        trial_counts: ``complete``, ``duplicates``, ``failed``, ``rejected``, ``running``, ``waiting``.
        fronts: One accuracy-latency plane per device.
        hypervolume: Hypervolume histories.
        hypervolume_method: How they were computed.
        members: The run's Pareto members (over all objectives), best accuracy first.
        breakdowns: Per-kernel-type latency of members, where recorded.
        fallbacks: NPU-to-CPU fallback of members, where recorded.
        notes: Sentences the reader must see (provenance of the figures, what was not recorded).
    """

    title: str
    study_name: str
    storage: str
    generated: str
    task: str | None
    devices: tuple[str, ...]
    objectives: tuple[Objective, ...]
    teacher_accuracy: float | None
    budget: str
    trial_counts: Mapping[str, int]
    fronts: tuple[DeviceFront, ...]
    hypervolume: tuple[HypervolumeSeries, ...]
    hypervolume_method: str
    members: tuple[MemberRow, ...]
    breakdowns: tuple[KernelBreakdown, ...]
    fallbacks: tuple[Fallback, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``report.json`` beside the page holds it)."""
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------
# building it


def mask_password(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, at, host = rest.rpartition("@")
    if ":" in credentials:
        credentials = credentials.split(":", 1)[0] + ":***"
    return f"{scheme}://{credentials}{at}{host}"


def study_objectives(study: Any) -> tuple[Objective, ...]:
    """The study's objectives as devicefit recorded them (names and units), with Optuna's directions."""
    names = study.user_attrs.get("objectives") or []
    units = study.user_attrs.get("units") or {}
    directions = [d.name.lower() for d in study.directions]
    if len(names) != len(directions):
        raise ValueError(
            f"study '{study.study_name}' records objectives {names} but has {len(directions)} directions: "
            "it was not written by devicefit"
        )
    return tuple(Objective(name, direction, str(units.get(name, ""))) for name, direction in zip(names, directions))


def _budget_text(study: Any, views: Sequence[TrialView]) -> str:
    spec = study.user_attrs.get("spec") or {}
    parts = [f"latency {text}" for text in spec.get("max_latency") or []]
    if spec.get("max_size"):
        parts.append(f"size <= {int(spec['max_size'])} bytes")
    if spec.get("max_accuracy_drop") is not None:
        parts.append(f"accuracy drop <= {100 * float(spec['max_accuracy_drop']):g} points")
    if parts:
        return ", ".join(parts)
    names = sorted({name for view in views for name in view.constraints})
    return ("constraints " + ", ".join(names)) if names else "none"


def _device_unit(device: str) -> str | None:
    from devicefit.device_profiles import SchemaError, UnknownDeviceError, load_profile

    try:
        return load_profile(device).unit
    except (UnknownDeviceError, SchemaError, OSError):
        return None


def _device_fronts(
    evaluated: Sequence[TrialView], devices: Sequence[str], member_keys: set[str]
) -> tuple[DeviceFront, ...]:
    fronts = []
    for device in devices:
        rows = [v for v in evaluated if device in (v.record or {}).get("latencies", {})]
        latencies = [v.record["latencies"][device] for v in rows]  # type: ignore[index]
        accuracy = np.array([float(v.record["accuracy"]["accuracy"]) for v in rows])  # type: ignore[index]
        latency = np.array([float(lat["latency_ms"]) for lat in latencies])
        feasible = np.array([v.feasible for v in rows], dtype=bool)
        on_front = np.zeros(len(rows), dtype=bool)
        if feasible.any():
            on_front[feasible] = pareto_front_mask(np.column_stack([-accuracy[feasible], latency[feasible]]))
        points = tuple(
            FrontPoint(
                trial=v.number,
                key=str(v.key),
                accuracy=float(acc),
                latency_ms=float(ms),
                provenance=latency_provenance(lat),
                feasible=bool(ok),
                on_device_front=bool(front),
                member=v.key in member_keys,
            )
            for v, lat, acc, ms, ok, front in zip(rows, latencies, accuracy, latency, feasible, on_front)
        )
        counts = Counter(point.provenance for point in points)
        fronts.append(DeviceFront(device, _device_unit(device), points, dict(counts)))
    return tuple(fronts)


def _series(
    name: str, objectives: Sequence[Objective], views: Sequence[TrialView], devices_in: Sequence[str]
) -> HypervolumeSeries | None:
    if not views:
        return None
    values = np.array([[record_value(view.record or {}, o.name) for o in objectives] for view in views])
    signs = np.array([-1.0 if o.direction == "maximize" else 1.0 for o in objectives])
    minimized = values * signs
    ideal, reference = normalization_box(minimized)
    history = normalized_history(minimized)
    provenance = Counter(
        latency_provenance(view.record["latencies"][device])  # type: ignore[index]
        for view in views
        for device in devices_in
        if device in view.record["latencies"]  # type: ignore[index]
    )
    return HypervolumeSeries(
        name=name,
        objectives=tuple(f"{o.name} ({o.unit}, {o.direction})" for o in objectives),
        trials=tuple(view.number for view in views),
        values=tuple(float(v) for v in history),
        ideal=tuple(float(v) for v in ideal * signs),
        reference=tuple(float(v) for v in reference * signs),
        latency_provenance=dict(provenance),
    )


def _hypervolume(
    views: Sequence[TrialView], devices: Sequence[str], objectives: Sequence[Objective]
) -> tuple[list[HypervolumeSeries], list[str]]:
    feasible = [view for view in views if view.evaluated and view.feasible]
    series: list[HypervolumeSeries] = []
    notes: list[str] = []
    accuracy = Objective("accuracy", "maximize", "fraction")
    for device in devices:
        rows = [v for v in feasible if device in v.record["latencies"]]  # type: ignore[index]
        item = _series(f"{device}: accuracy x latency", [accuracy, Objective(f"latency_ms:{device}", "minimize", "ms")],
                       rows, [device])
        if item is not None:
            series.append(item)
    if len(objectives) > 2 and len(objectives) <= MAX_HYPERVOLUME_OBJECTIVES:
        latency_devices = [d for d in devices if any(o.name in (f"latency_ms:{d}", WORST_LATENCY) for o in objectives)]
        item = _series("all objectives", objectives, feasible, latency_devices)
        if item is not None:
            series.append(item)
    elif len(objectives) > MAX_HYPERVOLUME_OBJECTIVES:
        notes.append(
            f"The hypervolume over all {len(objectives)} objectives is not drawn (more than "
            f"{MAX_HYPERVOLUME_OBJECTIVES}); the per-device histories are."
        )
    return series, notes


def _final_metrics(final: FinalOutcome | None, devices: Sequence[str]) -> list[Metric]:
    """Rung 3's figures of a member (``devicefit fit --final``): none when it did not run; a failure says why."""
    if final is None:
        return []
    if not final.done:
        return [Metric("final accuracy", None, "fraction", f"rung 3 failed: {final.error}; the search's figures stand")]
    metrics = [Metric("final accuracy", final.val, "fraction", f"val split, {final.fidelity}")]
    if final.search_test is not None:
        metrics.append(Metric("test accuracy before rung 3", final.search_test, "fraction",
                              "test split, the search's model (no further training)"))
    if final.qat is not None and final.qat.get("gain_test") is not None:
        metrics.append(Metric("QAT gain over PTQ", float(final.qat["gain_test"]), "fraction",
                              "test split, QAT minus PTQ of the same fine-tuned student (same quantizers)"))
    for device in devices:
        latency = final.latencies.get(device)
        if latency is not None:
            metrics.append(Metric(f"final latency {device}", float(latency["latency_ms"]), "ms",
                                  f"{latency_provenance(latency)}, the re-trained model"))
    if final.size_bytes is not None:
        metrics.append(Metric("final size", float(final.size_bytes), "bytes",
                              f"Paddle Lite .nb for {devices[0]}, the re-trained model" if devices else "Paddle Lite .nb"))
    return metrics


def _member_rows(
    members: Sequence[TrialView], devices: Sequence[str], test_accuracy: Mapping[str, float],
    finals: Mapping[str, FinalOutcome] | None = None,
) -> tuple[MemberRow, ...]:
    finals = finals or {}
    rows = []
    for view in members:
        record = view.record or {}
        accuracy = record["accuracy"]
        final = finals.get(str(view.key))
        if final is not None and final.done:
            test_source = f"test split, {final.fidelity}: the exported model, re-trained by rung 3"
        elif view.key in test_accuracy:
            test_source = f"test split, {accuracy['fidelity']}: the exported model, no further training"
        else:
            test_source = "not evaluated"
        metrics = [
            Metric("accuracy", float(accuracy["accuracy"]), "fraction", f"{accuracy['split']} split, {accuracy['fidelity']}"),
            Metric("test accuracy", test_accuracy.get(str(view.key)), "fraction", test_source),
        ]
        for device in devices:
            latency = record["latencies"].get(device)
            if latency is None:
                metrics.append(Metric(f"latency {device}", None, "ms", "not evaluated"))
                continue
            provenance = latency_provenance(latency)
            statistic = latency.get("statistic")
            metrics.append(Metric(f"latency {device}", float(latency["latency_ms"]), "ms",
                                  f"{provenance}" + (f", {statistic}" if statistic and provenance == "measured" else "")))
            if latency.get("p10_ms") is not None and latency.get("p90_ms") is not None:
                metrics.append(Metric(f"latency p10 {device}", float(latency["p10_ms"]), "ms", f"{provenance}, all timed runs"))
                metrics.append(Metric(f"latency p90 {device}", float(latency["p90_ms"]), "ms", f"{provenance}, all timed runs"))
            if latency.get("memory_peak_bytes") is not None:
                method = latency.get("memory_method") or "measured"
                metrics.append(Metric(f"peak memory {device}", float(latency["memory_peak_bytes"]), "bytes", str(method)))
            if latency.get("model_bytes") is not None and device != devices[0]:  # the first device's is "size"
                metrics.append(Metric(f".nb size {device}", float(latency["model_bytes"]), "bytes",
                                      f"Paddle Lite .nb for {device}"))
        metrics.append(Metric("size", float(record["size_bytes"]), "bytes",
                              f"Paddle Lite .nb for {devices[0]}" if devices else "Paddle Lite .nb"))
        metrics.append(Metric("parameters", float(record["parameters"]), "count", "the student's weights"))
        metrics += _final_metrics(final, devices)
        candidate = record.get("candidate") or {}
        description = _describe_candidate(candidate)
        rows.append(MemberRow(view.number, str(view.key), description, tuple(metrics)))
    return tuple(rows)


def _describe_candidate(candidate: Mapping[str, Any]) -> str:
    parts = []
    if candidate.get("program"):  # the teacher's own inference program: no structure of its own to show
        parts.append("the teacher's program (no code)")
        candidate = {k: v for k, v in candidate.items() if k not in ("program", "layers", "heads", "ffn")}
    for name in ("layers", "heads", "ffn"):
        if name in candidate:
            parts.append(f"{name} {'/'.join(map(str, candidate[name]))}")
    for name, value in candidate.items():
        if name not in ("layers", "heads", "ffn"):
            parts.append(f"{name} {value}")
    return ", ".join(parts)


def _breakdowns_and_fallbacks(
    members: Sequence[TrialView], devices: Sequence[str]
) -> tuple[tuple[KernelBreakdown, ...], tuple[Fallback, ...]]:
    breakdowns, fallbacks = [], []
    for view in members:
        for device in devices:
            latency = (view.record or {}).get("latencies", {}).get(device)
            if latency is None:
                continue
            kernels = kernel_breakdown_ms(latency)
            if kernels:
                breakdowns.append(KernelBreakdown(str(view.key), device, latency_provenance(latency),
                                                  float(latency["latency_ms"]), tuple(kernels.items())))
            cpu = fallback_ops(latency)
            if cpu is not None:
                fallbacks.append(Fallback(str(view.key), device, cpu, accelerator_ops(latency)))
    return tuple(breakdowns), tuple(fallbacks)


def _provenance_notes(fronts: Sequence[DeviceFront], evaluated: Sequence[TrialView]) -> list[str]:
    notes = []
    for front in fronts:
        total = sum(front.provenance_counts.values())
        if not total:
            continue
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(front.provenance_counts.items()))
        statistics = sorted({
            str(v.record["latencies"][front.device].get("statistic"))  # type: ignore[index]
            for v in evaluated if front.device in (v.record or {}).get("latencies", {})
        })
        if front.mixed:
            notes.append(
                f"{front.device}: the latencies are of mixed kinds ({kinds}). The plot draws measured and predicted "
                "points with different markers, and this device's hypervolume mixes both."
            )
        else:
            notes.append(f"{front.device}: {kinds} latencies (statistic: {', '.join(statistics)}).")
    fidelities = sorted({str(v.record["accuracy"]["fidelity"]) for v in evaluated})  # type: ignore[index]
    splits = sorted({str(v.record["accuracy"]["split"]) for v in evaluated})  # type: ignore[index]
    if fidelities:
        notes.append(
            f"Accuracy on the {'/'.join(splits)} split after {', '.join(fidelities)}; test accuracy only for the "
            "exported Pareto members, never used for a choice."
        )
    return notes


def _final_notes(finals: Mapping[str, FinalOutcome], member_keys: set[str]) -> list[str]:
    ran = [finals[key] for key in sorted(member_keys) if key in finals]
    if not ran:
        return []
    done = [f for f in ran if f.done]
    fidelities = sorted({str(f.fidelity) for f in done})
    note = (f"Rung 3 (--final) re-trained {len(done)} of {len(ran)} members ({', '.join(fidelities) or 'none'}): their "
            "files and test figures are the re-trained models', their latency was measured or predicted again on them; "
            "the front was chosen by the search's figures.")
    failed = len(ran) - len(done)
    if failed:
        note += f" It failed for {failed}; they keep their search figures."
    return [note]


def build_report_data(study: Any, *, storage: str = "", out: Path | None = None) -> ReportData:
    """Compute everything the report shows, from the study alone (and ``pareto.json`` for older runs).

    Args:
        study: The run's Optuna study.
        storage: Its storage URL, shown in the report (a password is masked).
        out: The run's output folder, if known (only read for test accuracy that older runs did not store).

    Returns:
        The report's data.

    Raises:
        ValueError: The study was not written by devicefit.
    """
    objectives = study_objectives(study)
    views = trial_views(study)
    devices = study_devices(study, views)
    evaluated = [view for view in views if view.evaluated]
    members = front_views(views, objectives)
    member_keys = {str(view.key) for view in members}
    test_accuracy = test_accuracies(study, out)
    finals = final_outcomes(study)
    fronts = _device_fronts(evaluated, devices, member_keys)
    series, hv_notes = _hypervolume(views, devices, objectives)
    breakdowns, fallbacks = _breakdowns_and_fallbacks(members, devices)
    states = Counter(view.state for view in views)
    counts = {
        "complete": sum(1 for v in views if v.evaluated),
        "duplicates": sum(1 for v in views if v.state == "COMPLETE" and v.duplicate_of is not None),
        "failed": sum(1 for v in views if v.state == "FAIL" and not v.interrupted),
        "interrupted": sum(1 for v in views if v.interrupted),
        "rejected": states.get("PRUNED", 0),
        "running": states.get("RUNNING", 0),
        "waiting": states.get("WAITING", 0),
    }
    spec = study.user_attrs.get("spec") or {}
    task = spec.get("example") or spec.get("model")
    title = f"devicefit report: {task or study.study_name} on {', '.join(devices) or 'no device'}"
    teacher = study.user_attrs.get("teacher_accuracy")
    return ReportData(
        title=title,
        study_name=study.study_name,
        storage=mask_password(storage),
        generated=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        task=task,
        devices=devices,
        objectives=objectives,
        teacher_accuracy=None if teacher is None else float(teacher),
        budget=_budget_text(study, views),
        trial_counts=counts,
        fronts=fronts,
        hypervolume=tuple(series),
        hypervolume_method=HYPERVOLUME_METHOD,
        members=_member_rows(members, devices, test_accuracy, finals),
        breakdowns=breakdowns,
        fallbacks=fallbacks,
        notes=tuple(_provenance_notes(fronts, evaluated) + _final_notes(finals, member_keys) + hv_notes),
    )


def write_report(data: ReportData, path: Path) -> Path:
    """Render ``data`` to ``path`` (an HTML page with everything inline), written atomically.

    ``report.json`` (the same data) is written beside it.
    """
    from devicefit.search._report_html import render_html

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, text in ((path, render_html(data)), (path.with_suffix(".json"), json.dumps(data.to_dict(), indent=2) + "\n")):
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(target)
    return path
