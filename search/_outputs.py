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
        test_accuracy: Accuracy of the exported model on the held-out test split (not used for any choice).
        model_dir: ``models/<key>`` relative to the output folder.
    """

    trial: int
    record: TrialRecord
    test_accuracy: float | None
    model_dir: str


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
            constraints = {
                name.split(":", 1)[1]: float(value)
                for name, value in trial.system_attrs.items()
                if name.startswith("constraints:")
            }
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


def _exported_test_accuracy(model_dir: Path, task: Task) -> float:
    """Test accuracy of the deployed numerics: the exported program, or its simulation (fp16, weight-only)."""
    from devicefit.evaluators._accuracy import top1_accuracy
    from devicefit.spaces._export import program_logits

    scoring = model_dir / SIMULATION_DIR if (model_dir / SIMULATION_DIR).is_dir() else model_dir
    return top1_accuracy(program_logits(scoring, task.data.test.inputs), task.data.test.labels)


def _atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _export_members(front: list[Evaluated], out: Path, devices: tuple[str, ...], task: Task | None) -> list[ParetoMember]:
    """Copy the front to ``out/models/<key>/`` (replacing the previous export whole) and score it on test."""
    staging = out / "models.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    members = []
    for item in front:
        trial_number, record = item.trial, item.record
        source = out / record.artifact_dir
        target = staging / record.key
        target.mkdir()
        for name in (MODEL_FILE, PARAMS_FILE, *(f"{device}.nb" for device in devices)):
            shutil.copy2(source / name, target / name)
        if (source / SIMULATION_DIR).is_dir():  # fp16 / weight-only: what the deployed numerics are scored with
            shutil.copytree(source / SIMULATION_DIR, target / SIMULATION_DIR)
        test_accuracy = _exported_test_accuracy(target, task) if task is not None else None
        members.append(ParetoMember(trial_number, record, test_accuracy, f"models/{record.key}"))
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
            "split": "test",
            "fidelity": record.accuracy.fidelity,
        },
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


CSV_FIXED = ["key", "trial", "depth", "layers", "heads", "ffn", "precision", "hidden", "sparsity", "calibration",
             "fp32_layers", "weight_only_bits", "accuracy", "accuracy_split", "accuracy_fidelity", "test_accuracy",
             "size_bytes", "parameters"]


def _csv_text(members: list[ParetoMember], devices: tuple[str, ...]) -> str:
    header = list(CSV_FIXED)
    for device in devices:
        header += [f"latency_ms:{device}", f"latency_source:{device}"]
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
            "" if member.test_accuracy is None else f"{member.test_accuracy:.6f}",
            record.size_bytes, record.parameters,
        ]
        for device in devices:
            row += [f"{record.latencies[device].latency_ms:.6f}", record.latencies[device].source_label]
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
    """
    evaluated = evaluated_records(study)
    front = pareto_records(evaluated, objectives)
    budget_met = any(item.feasible for item in evaluated) or not evaluated
    closest = [] if budget_met else sorted(evaluated, key=lambda item: item.worst_violation)[:3]
    if export_models:
        members = _export_members(front, out, devices, task)
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
    _atomic_write_text(out / "pareto.csv", _csv_text(members, devices))
    return OutputSummary(members, budget_met, closest)
