"""Small real runs for the report, export and API tests: the toy encoder, a stand-in for latency, and
studies whose records carry the extra fields other evaluators add (predicted latency, per-kernel
breakdown, NPU fallback), written as those evaluators will store them.

The stand-in latency is not a device fake: it replaces measurement where the Lite path is not the point,
so that a whole run takes seconds. Its ``.nb`` files are copies of the weights, not Paddle Lite models.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from devicefit.device_profiles import load_profile
from devicefit.evaluators import Split, TaskData
from devicefit.evaluators._accuracy import DistillationSettings
from devicefit.evaluators._latency import LatencyEvaluator
from devicefit.evaluators._types import LatencyResult
from devicefit.search._fit import Fit, FitResult, FitSettings
from devicefit.search._progress import Progress
from devicefit.search._task import Task

HOST = load_profile("host-x86")


class StandInLatency(LatencyEvaluator):
    """Latency proportional to the exported size (smaller is faster); writes a stand-in ``.nb``."""

    def latency(self, artifact, profile, sample_inputs):  # noqa: ANN001, ANN201  (the contract's signature)
        (artifact.directory / f"{profile.id}.nb").write_bytes(artifact.params_file.read_bytes())
        latency_ms = artifact.size_bytes / 100_000
        return LatencyResult(profile.id, latency_ms, "measured", "stand-in", latency_ms * 0.95, latency_ms * 1.2,
                             0.05, 10, 1, 0.0, artifact.size_bytes)


def toy_split(rng: np.random.Generator, n: int) -> Split:
    features = rng.normal(size=(n, 6, 8)).astype("float32")
    labels = (features[:, :, 0].mean(axis=1) > 0).astype("int64") + 2 * (features[:, :, 1].mean(axis=1) > 0)
    return Split((features,), labels)


def toy_data(seed: int = 1) -> TaskData:
    rng = np.random.default_rng(seed)
    return TaskData(toy_split(rng, 128), toy_split(rng, 64), toy_split(rng, 64), num_classes=5)


def toy_task(paddle: Any, toy_encoder_factory: Callable[..., Any]) -> Task:
    spec = [paddle.static.InputSpec([None, 6, 8], "float32", "features")]
    return Task("toy", toy_encoder_factory(), spec, toy_data(), "3-layer toy encoder on synthetic sequences")


def run_toy(task: Task, out: Path, *, trials: int = 6, export: bool = True,
            latency: LatencyEvaluator | None = None, epochs: int = 0) -> FitResult:
    """A toy fit with the stand-in latency (random sampler, so that the front has several members)."""
    settings = FitSettings(out=out, devices=(HOST,), trials=trials, sampler="random",
                           distillation=DistillationSettings(epochs=epochs))
    with Fit(task, settings, progress=Progress(trials, quiet=True), latency=latency or StandInLatency()) as fit:
        return fit.run(export=export)


def copy_study_with(source_url: str, target_url: str, name: str, devices: list[str],
                    change: Callable[[int, dict[str, Any]], dict[str, Any]]) -> Any:
    """A copy of the toy run's study whose records ``change(trial number, record)`` rewrites.

    Used to write records as the latency predictor (issue 6) and the NNAdapter runner (issue 5) store them;
    the study's objectives follow the devices of the rewritten records.
    """
    import optuna

    from devicefit.search._records import RECORD_ATTR, objectives_for

    source = optuna.load_study(study_name="devicefit", storage=source_url)
    objectives = objectives_for(tuple(devices))
    target = optuna.create_study(study_name=name, storage=target_url, directions=[o.direction for o in objectives])
    target.set_user_attr("objectives", [o.name for o in objectives])
    target.set_user_attr("units", {o.name: o.unit for o in objectives})
    target.set_user_attr("teacher_accuracy", source.user_attrs.get("teacher_accuracy"))
    target.set_user_attr("spec", {"example": "toy", "devices": devices})
    for trial in source.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        attrs = copy.deepcopy(dict(trial.user_attrs))
        record = change(trial.number, attrs[RECORD_ATTR])
        attrs[RECORD_ATTR] = record
        values = [
            record["accuracy"]["accuracy"] if o.name == "accuracy"
            else record["size_bytes"] if o.name == "size_bytes"
            else record["latencies"][o.name.split(":", 1)[1]]["latency_ms"]
            for o in objectives
        ]
        target.add_trial(optuna.trial.create_trial(values=values, user_attrs=attrs, params=trial.params,
                                                   distributions=trial.distributions))
    return target


def predicted_npu_record(number: int, record: dict[str, Any]) -> dict[str, Any]:
    """The record with a second device, ``kirin-npu``, whose latency is predicted (uncalibrated on odd trials)
    with a per-kernel breakdown and NPU fallback ops; every third host latency is predicted too."""
    record = copy.deepcopy(record)
    host = record["latencies"]["host-x86"]
    npu = dict(host, device_id="kirin-npu", latency_ms=host["latency_ms"] * 0.4, source="predicted",
               statistic="kernel-linear", p10_ms=None, p90_ms=None, cv=None, repeats=0)
    npu["kernels_ms"] = {
        "nnadapter/fc/int8": npu["latency_ms"] * 0.5,
        "arm/fc/fp32": npu["latency_ms"] * 0.1,
        "arm/softmax/fp32": npu["latency_ms"] * 0.15,
        "nnadapter/layer_norm/fp16": npu["latency_ms"] * 0.15,
    }
    npu["overhead_ms"] = npu["latency_ms"] * 0.1
    npu["calibrated"] = number % 2 == 0
    npu["cpu_fallback_ops"] = {"softmax": 3, "fc": 1} if number % 2 else {}
    npu["nnadapter_ops"] = {"fc": 11, "layer_norm": 6}
    record["latencies"]["kirin-npu"] = npu
    if number % 3 == 2:
        record["latencies"]["host-x86"] = dict(host, source="predicted", calibrated=True, statistic="kernel-linear")
    return record
