"""The run's deliverables: ``pareto.csv``, ``pareto.json`` and ``models/<key>/``, built from the study alone.

Files are written to a temporary name and renamed into place, so an interrupted write never leaves a
half-written front behind.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from devicefit.search._budget import feasible
from devicefit.search._final import FinalOutcome, final_outcomes
from devicefit.search._pareto import pareto_front_mask, to_minimization
from devicefit.search._records import RECORD_ATTR, Objective, TrialRecord
from devicefit.search._task import Task
from devicefit.spaces._export import MODEL_FILE, PARAMS_FILE
from devicefit.spaces._precision import SIMULATION_DIR


@dataclasses.dataclass(frozen=True)
class ParetoMember:
    """One Pareto-optimal candidate.

    Attributes:
        trial: The Optuna trial number that evaluated it.
        record: What the trial produced.
        test_accuracy: The run's metric of the exported model on the held-out test split (not used for any
            choice): the rung-3 model's when rung 3 re-trained it, else the search's.
        model_dir: ``models/<key>`` relative to the output folder.
        test_fidelity: The rung the exported model (and so ``test_accuracy``) is at: the rung-3 label, or the
            search's (``distill-1ep+2ep``: no training after the search).
        final: What rung 3 did for it (``devicefit fit --final``), whether it succeeded or failed; None when it
            did not run.
    """

    trial: int
    record: TrialRecord
    test_accuracy: float | None
    model_dir: str
    test_fidelity: str | None = None
    final: FinalOutcome | None = None

    @property
    def retrained(self) -> bool:
        """The exported files are rung 3's re-trained model."""
        return self.final is not None and self.final.done


@dataclasses.dataclass(frozen=True)
class Evaluated:
    """A distinct evaluated candidate of the study.

    Attributes:
        trial: Trial number.
        record: What the trial produced.
        constraints: Budget name -> violation (<= 0: met); empty without a budget.
    """

    trial: int
    record: TrialRecord
    constraints: dict[str, float]

    @property
    def feasible(self) -> bool:
        return feasible(list(self.constraints.values()))

    @property
    def worst_violation(self) -> float:
        return max(self.constraints.values(), default=0.0)


@dataclasses.dataclass(frozen=True)
class OutputSummary:
    """What :func:`write_outputs` wrote.

    Attributes:
        members: The Pareto-optimal candidates that meet the budget, best accuracy first.
        budget_met: Whether any evaluated candidate met the budget (True without a budget).
        closest: When none met it: the three candidates closest to meeting it, with their violations.
    """

    members: list[ParetoMember]
    budget_met: bool
    closest: list[Evaluated]


def evaluated_records(study: Any) -> list[Evaluated]:
    """Every distinct evaluated candidate of the study, duplicates left out."""
    import optuna

    records = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if RECORD_ATTR in trial.user_attrs and "duplicate_of" not in trial.user_attrs:
            constraints = {name: float(value) for name, value in trial.constraints.items()}
            records.append(Evaluated(trial.number, TrialRecord.from_dict(trial.user_attrs[RECORD_ATTR]), constraints))
    return records


def pareto_records(records: list[Evaluated], objectives: list[Objective]) -> list[Evaluated]:
    """The non-dominated records among those that meet the budget, best accuracy first."""
    candidates = [item for item in records if item.feasible and item.record.screened_out is None]
    if not candidates:
        return []
    values = np.array([item.record.values(objectives) for item in candidates])
    mask = pareto_front_mask(to_minimization(values, [o.direction == "maximize" for o in objectives]))
    front = [item for item, keep in zip(candidates, mask) if keep]
    return sorted(front, key=lambda item: (-item.record.accuracy.accuracy, item.record.size_bytes))


def _exported_test_accuracy(model_dir: Path, task: Task, metric: Any) -> float:
    """The run's metric of the deployed numerics on test: the exported program, or its simulation (fp16, weight-only)."""
    from devicefit.spaces._export import program_logits

    scoring = model_dir / SIMULATION_DIR if (model_dir / SIMULATION_DIR).is_dir() else model_dir
    return metric(program_logits(scoring, task.data.test.inputs), task.data.test.labels)


def _atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _export_members(front: list[Evaluated], out: Path, devices: tuple[str, ...], task: Task | None, metric: Any,
                    finals: dict[str, FinalOutcome]) -> list[ParetoMember]:
    """Copy the front to ``out/models/<key>/`` (replacing the previous export whole) and score it on test.

    A member that rung 3 re-trained is copied from its re-trained files, and its test figure is rung 3's.
    """
    staging = out / "models.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    members = []
    for item in front:
        trial_number, record = item.trial, item.record
        final = finals.get(record.key)
        retrained = final is not None and final.done and final.artifact_dir is not None
        source = out / (final.artifact_dir if retrained else record.artifact_dir)  # type: ignore[union-attr,operator]
        target = staging / record.key
        target.mkdir()
        for name in (MODEL_FILE, PARAMS_FILE, *(f"{device}.nb" for device in devices)):
            shutil.copy2(source / name, target / name)
        if (source / SIMULATION_DIR).is_dir():  # fp16 / weight-only: what the deployed numerics are scored with
            shutil.copytree(source / SIMULATION_DIR, target / SIMULATION_DIR)
        if retrained:
            test_accuracy, test_fidelity = final.test, final.fidelity  # type: ignore[union-attr]
        else:
            test_accuracy = _exported_test_accuracy(target, task, metric) if task is not None else None
            test_fidelity = record.accuracy.fidelity if task is not None else None
        members.append(ParetoMember(trial_number, record, test_accuracy, f"models/{record.key}", test_fidelity, final))
    final = out / "models"
    old = out / "models.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
    return members


def member_to_dict(member: ParetoMember, devices: tuple[str, ...]) -> dict[str, Any]:
    """JSON form of a member: every metric with its unit and its source or fidelity."""
    record = member.record
    return {
        "key": record.key,
        "trial": member.trial,
        "candidate": record.candidate.to_dict(),
        "accuracy": {
            "value": record.accuracy.accuracy,
            "unit": "fraction",
            "metric": record.accuracy.metric,
            "split": record.accuracy.split,
            "fidelity": record.accuracy.fidelity,
        },
        "test_accuracy": {
            "value": member.test_accuracy,
            "unit": "fraction",
            "metric": member.final.metric if member.retrained else record.accuracy.metric,  # type: ignore[union-attr]
            "split": "test",
            "fidelity": member.test_fidelity or record.accuracy.fidelity,
            "model": "re-trained by rung 3 (--final)" if member.retrained else "the search's, no further training",
        },
        "final": None if member.final is None else member.final.to_dict(),
        "latency": {
            device: {
                "value": record.latencies[device].latency_ms,
                "unit": "ms",
                "source": record.latencies[device].source,
                "calibrated": record.latencies[device].calibrated,
                "predictor": record.latencies[device].predictor,
                "statistic": record.latencies[device].statistic,
                "p10_ms": record.latencies[device].p10_ms,
                "p90_ms": record.latencies[device].p90_ms,
                "cv": record.latencies[device].cv,
                "repeats": record.latencies[device].repeats,
                "threads": record.latencies[device].threads,
                "nb_bytes": record.latencies[device].model_bytes,
            }
            for device in devices
        },
        "size_bytes": {"value": record.size_bytes, "unit": "bytes", "what": f"Paddle Lite .nb for {devices[0]}"},
        "parameters": {"value": record.parameters, "unit": "count"},
        "nonzero_parameters": {"value": record.nonzero_parameters, "unit": "count"},
        "compressed_size_bytes": {
            "value": record.compressed_size_bytes,
            "unit": "bytes",
            "what": f"Paddle Lite .nb for {devices[0]}, zlib level 6",
        },
        "files": {
            "model": f"{member.model_dir}/{MODEL_FILE}",
            "params": f"{member.model_dir}/{PARAMS_FILE}",
            **{f"nb:{device}": f"{member.model_dir}/{device}.nb" for device in devices},
        },
    }


CSV_CANDIDATE = ["key", "trial", "depth", "layers", "heads", "ffn", "precision", "hidden", "sparsity", "calibration",
                 "fp32_layers", "weight_only_bits"]


def csv_header(metric: str, devices: tuple[str, ...], *, final: bool = False) -> list[str]:
    """``pareto.csv``'s columns. The figures' columns are named by the run's metric (``accuracy``, ``macro_f1``
    ...): ``<metric>``, ``<metric>_split``, ``<metric>_fidelity`` (the search's figure, which chose the front),
    ``test_<metric>`` and ``test_<metric>_fidelity`` (the exported model's); then size, parameters, latency and
    its source per device. With ``final`` (rung 3 ran), rung 3's columns follow: ``final_status`` (``done``,
    or ``failed: <why>``), ``final_<metric>`` (val), ``search_test_<metric>`` (the search's model on test, for
    comparison), ``qat_gain_over_ptq`` (test, int8 members), ``final_size_bytes``, and the re-trained model's
    ``final_latency_ms:<device>``, ``final_latency_source:<device>``.
    """
    header = [*CSV_CANDIDATE, metric, f"{metric}_split", f"{metric}_fidelity", f"test_{metric}",
              f"test_{metric}_fidelity", "size_bytes", "parameters"]
    for device in devices:
        header += [f"latency_ms:{device}", f"latency_source:{device}"]
    if final:
        header += ["final_status", f"final_{metric}", f"search_test_{metric}", "qat_gain_over_ptq", "final_size_bytes"]
        for device in devices:
            header += [f"final_latency_ms:{device}", f"final_latency_source:{device}"]
    return header


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _final_cells(final: FinalOutcome | None, devices: tuple[str, ...]) -> list[Any]:
    from devicefit.search._results import latency_provenance

    if final is None:
        return ["not run", "", "", "", ""] + ["", ""] * len(devices)
    if not final.done:
        return [f"failed: {final.error}", "", "", "", ""] + ["", ""] * len(devices)
    cells: list[Any] = ["done", _number(final.val), _number(final.search_test),
                        _number((final.qat or {}).get("gain_test")), "" if final.size_bytes is None else final.size_bytes]
    for device in devices:
        latency = final.latencies.get(device)
        cells += ["", ""] if latency is None else [f"{float(latency['latency_ms']):.6f}", latency_provenance(latency)]
    return cells


def _csv_text(members: list[ParetoMember], devices: tuple[str, ...], metric: str) -> str:
    with_final = any(member.final is not None for member in members)
    header = csv_header(metric, devices, final=with_final)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for member in members:
        record, candidate = member.record, member.record.candidate
        row: list[Any] = [
            record.key, member.trial, "" if candidate.program else candidate.depth,  # a program's depth is unknown
            " ".join(map(str, candidate.layers)), " ".join(map(str, candidate.heads)),
            " ".join(map(str, candidate.ffn)), candidate.precision,
            "" if candidate.hidden is None else candidate.hidden, f"{candidate.sparsity:g}", candidate.calibration or "",
            " ".join(map(str, candidate.fp32_layers)), candidate.weight_only_bits or "",
            f"{record.accuracy.accuracy:.6f}", record.accuracy.split, record.accuracy.fidelity,
            _number(member.test_accuracy), member.test_fidelity or "",
            record.size_bytes, record.parameters,
        ]
        for device in devices:
            row += [f"{record.latencies[device].latency_ms:.6f}", record.latencies[device].source_label]
        if with_final:
            row += _final_cells(member.final, devices)
        writer.writerow(row)
    return buffer.getvalue()


def write_outputs(
    study: Any,
    out: Path,
    devices: tuple[str, ...],
    objectives: list[Objective],
    task: Task | None,
    *,
    export_models: bool = True,
    metric: Any = None,
) -> OutputSummary:
    """Compute the front from ``study`` and write ``models/``, ``pareto.json`` and ``pareto.csv`` in ``out``.

    Candidates that miss the budget are never on the front. When none meets it, the front is empty and
    ``pareto.json`` lists the closest candidates under ``closest`` with their violations. Test accuracy of the
    exported members is also stored in the study (user attribute ``test_accuracy``: key -> fraction), so a
    report rebuilt from the study alone shows it.

    Args:
        study: The run's Optuna study.
        out: The output folder.
        devices: Device ids.
        objectives: The study's objectives, in Optuna's value order.
        task: Used to score the exported members on the test split; ``None`` leaves test accuracy empty.
        export_models: Copy the members to ``models/<key>/``; False leaves ``models/`` as it is and points
            each member's files at its candidate folder (``devicefit search``).
        metric: The run's metric (a name, a :class:`~devicefit.evaluators.Metric` or a callable): what the test
            figures measure and what ``pareto.csv``'s columns are named by. Default: the metric the records name.

    Members that rung 3 re-trained (``FitSettings.final``: outcomes stored on the study) are exported from
    their re-trained files with rung 3's test figure; one whose rung 3 failed keeps the search's.
    """
    from devicefit.evaluators._metrics import as_metric

    evaluated = evaluated_records(study)
    front = pareto_records(evaluated, objectives)
    budget_met = any(item.feasible for item in evaluated) or not evaluated
    closest = [] if budget_met else sorted(evaluated, key=lambda item: item.worst_violation)[:3]
    if metric is None:
        metric = next((item.record.accuracy.metric for item in evaluated if item.record.accuracy.metric), "accuracy")
    metric = as_metric(metric)
    finals = final_outcomes(study)
    if export_models:
        members = _export_members(front, out, devices, task, metric, finals)
        tested = {m.record.key: m.test_accuracy for m in members if m.test_accuracy is not None}
        if tested:
            study.set_user_attr("test_accuracy", {**(study.user_attrs.get("test_accuracy") or {}), **tested})
    else:
        members = [ParetoMember(item.trial, item.record, None, item.record.artifact_dir) for item in front]

    document = {
        "study": {"name": study.study_name},
        "devices": list(devices),
        "objectives": [dataclasses.asdict(o) for o in objectives],
        "teacher_accuracy": study.user_attrs.get("teacher_accuracy"),
        "trials": len(study.trials),
        "budget_met": budget_met,
        "members": [member_to_dict(member, devices) for member in members],
        "closest": [
            {"key": item.record.key, "trial": item.trial, "constraints": item.constraints,
             "accuracy": item.record.accuracy.accuracy,
             "latency_ms": {d: r.latency_ms for d, r in item.record.latencies.items()},
             "latency_source": {d: r.source for d, r in item.record.latencies.items()},
             "size_bytes": item.record.size_bytes}
            for item in closest
        ],
    }
    _atomic_write_text(out / "pareto.json", json.dumps(document, indent=2) + "\n")
    _atomic_write_text(out / "pareto.csv", _csv_text(members, devices, metric.name))
    return OutputSummary(members, budget_met, closest)
