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

from devicefit.search._pareto import pareto_front_mask, to_minimization
from devicefit.search._records import RECORD_ATTR, TrialRecord, objectives_for
from devicefit.search._task import Task
from devicefit.spaces._export import MODEL_FILE, PARAMS_FILE


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


def evaluated_records(study: Any) -> list[tuple[int, TrialRecord]]:
    """Every distinct evaluated candidate of the study: ``(trial number, record)``, duplicates left out."""
    import optuna

    records = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if RECORD_ATTR in trial.user_attrs and "duplicate_of" not in trial.user_attrs:
            records.append((trial.number, TrialRecord.from_dict(trial.user_attrs[RECORD_ATTR])))
    return records


def pareto_records(records: list[tuple[int, TrialRecord]], devices: tuple[str, ...]) -> list[tuple[int, TrialRecord]]:
    """The non-dominated records, best accuracy first."""
    if not records:
        return []
    objectives = objectives_for(devices)
    values = np.array([record.values(devices) for _, record in records])
    mask = pareto_front_mask(to_minimization(values, [o.direction == "maximize" for o in objectives]))
    front = [item for item, keep in zip(records, mask) if keep]
    return sorted(front, key=lambda item: (-item[1].accuracy.accuracy, item[1].size_bytes))


def _exported_test_accuracy(model_dir: Path, task: Task) -> float:
    from devicefit.evaluators._accuracy import test_accuracy
    from devicefit.spaces._paddle import import_paddle

    paddle = import_paddle()
    model = paddle.jit.load(str(model_dir / "model"))
    return test_accuracy(model, task.data)


def _atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


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
        "files": {
            "model": f"{member.model_dir}/{MODEL_FILE}",
            "params": f"{member.model_dir}/{PARAMS_FILE}",
            **{f"nb:{device}": f"{member.model_dir}/{device}.nb" for device in devices},
        },
    }


CSV_FIXED = ["key", "trial", "depth", "layers", "heads", "ffn", "precision", "accuracy", "accuracy_split",
             "accuracy_fidelity", "test_accuracy", "size_bytes", "parameters"]


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
            record.key, member.trial, candidate.depth,
            " ".join(map(str, candidate.layers)), " ".join(map(str, candidate.heads)),
            " ".join(map(str, candidate.ffn)), candidate.precision,
            f"{record.accuracy.accuracy:.6f}", record.accuracy.split, record.accuracy.fidelity,
            "" if member.test_accuracy is None else f"{member.test_accuracy:.6f}",
            record.size_bytes, record.parameters,
        ]
        for device in devices:
            row += [f"{record.latencies[device].latency_ms:.6f}", record.latencies[device].source_label]
        writer.writerow(row)
    return buffer.getvalue()


def write_outputs(study: Any, out: Path, devices: tuple[str, ...], task: Task | None) -> list[ParetoMember]:
    """Compute the front from ``study`` and write ``models/``, ``pareto.json`` and ``pareto.csv`` in ``out``.

    Args:
        study: The run's Optuna study.
        out: The output folder.
        devices: Device ids, in objective order.
        task: Used to score the exported members on the test split; ``None`` leaves test accuracy empty.
    """
    front = pareto_records(evaluated_records(study), devices)
    staging = out / "models.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    members = []
    for trial_number, record in front:
        source = out / record.artifact_dir
        target = staging / record.key
        target.mkdir()
        for name in (MODEL_FILE, PARAMS_FILE, *(f"{device}.nb" for device in devices)):
            shutil.copy2(source / name, target / name)
        test_accuracy = _exported_test_accuracy(target, task) if task is not None else None
        members.append(ParetoMember(trial_number, record, test_accuracy, f"models/{record.key}"))
    final = out / "models"
    old = out / "models.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)

    objectives = objectives_for(devices)
    document = {
        "study": {"storage": "study.db", "name": study.study_name},
        "devices": list(devices),
        "objectives": [dataclasses.asdict(o) for o in objectives],
        "trials": len(study.trials),
        "members": [member_to_dict(member, devices) for member in members],
    }
    _atomic_write_text(out / "pareto.json", json.dumps(document, indent=2) + "\n")
    _atomic_write_text(out / "pareto.csv", _csv_text(members, devices))
    return members
