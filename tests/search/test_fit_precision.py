"""The fit with the new dimensions: int8, weight-only and sparse candidates evaluated for real, and
candidates a device cannot run rejected before any work, with the reason on the trial.

ARM devices cannot be measured here, so their latency evaluator converts with the real Paddle Lite
(``MeasuredLatency.convert``) and reports a stand-in figure marked ``predicted``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from devicefit.device_profiles import load_profile
from devicefit.device_profiles._profile import DeviceProfile, Reach
from devicefit.evaluators import Split, TaskData
from devicefit.evaluators._accuracy import DistillationSettings
from devicefit.evaluators._latency import LatencyEvaluator, MeasuredLatency, MeasureSettings
from devicefit.evaluators._lite_client import LiteWorker
from devicefit.evaluators._types import LatencyResult
from devicefit.search._fit import Fit, FitSettings, rejection_reason
from devicefit.search._progress import Progress
from devicefit.search._screening import LadderSettings
from devicefit.search._task import Task
from devicefit.spaces import Candidate, SpaceBounds, TransformerSpace

HOST = load_profile("host-x86")
ARM = DeviceProfile(
    id="arm-test",
    name="An ARM CPU nobody can reach from here",
    soc="test",
    unit="cpu",
    places="arm",
    reach=Reach("none"),
    precisions=("fp32", "fp16", "int8"),
)


class ConvertThenStandIn(LatencyEvaluator):
    """Converts for real (as the measured evaluator does), then reports the .nb size as a 'predicted' ms."""

    def __init__(self, worker: LiteWorker) -> None:
        self.converter = MeasuredLatency(worker, runners={})
        self.converted: list[tuple[str, str]] = []

    def latency(self, artifact, profile, sample_inputs):
        nb = self.converter.convert(artifact, profile)
        self.converted.append((profile.id, artifact.precision))
        size = nb.stat().st_size
        return LatencyResult(profile.id, size / 1e5, "predicted", "stand-in", None, None, None, 0, 1, 0.0, size,
                             calibrated=False)


def _split(rng: np.random.Generator, n: int) -> Split:
    features = rng.normal(size=(n, 6, 8)).astype("float32")
    labels = (features[:, :, 0].mean(axis=1) > 0).astype("int64") + 2 * (features[:, :, 1].mean(axis=1) > 0)
    return Split((features,), labels)


@pytest.fixture(scope="module")
def toy_task(paddle, toy_encoder_factory) -> Task:
    rng = np.random.default_rng(0)
    data = TaskData(_split(rng, 128), _split(rng, 64), _split(rng, 64), num_classes=5)
    spec = [paddle.static.InputSpec([None, 6, 8], "float32", "features")]
    return Task("toy", toy_encoder_factory(), spec, data, "3-layer toy encoder on synthetic sequences")


@pytest.fixture(scope="module")
def lite():
    with LiteWorker() as worker:
        yield worker


def _fit(task: Task, out: Path, devices: tuple[DeviceProfile, ...], bounds: SpaceBounds, latency=None, trials: int = 1) -> Fit:
    settings = FitSettings(
        out=out,
        devices=devices,
        trials=trials,
        distillation=DistillationSettings(epochs=1),
        measure=MeasureSettings(warmup=1, blocks=1, runs_per_block=3),
        calibration_samples=64,
        ladder=LadderSettings(enabled=False),  # precision mechanics only; the ladder is test_fit_ladder's
    )
    calibration = task.data.train.take(slice(0, 64))
    space = TransformerSpace(task.teacher, calibration.inputs, calibration.labels, bounds=bounds)
    return Fit(task, settings, progress=Progress(trials, quiet=True), latency=latency, space=space)


def test_an_int8_candidate_is_quantized_scored_as_quantized_and_converted_for_arm(toy_task, lite, tmp_path) -> None:
    latency = ConvertThenStandIn(lite)
    fit = _fit(toy_task, tmp_path / "run", (ARM,), SpaceBounds(precisions=("fp32", "int8")), latency)
    candidate = Candidate((0, 2), (4, 2), (64, 32), "int8", calibration="avg")
    record = fit.evaluate(candidate)
    assert record.accuracy.fidelity == "distill-1ep+ptq-avg"
    assert 0.0 <= record.accuracy.details["fp32_accuracy"] <= 1.0
    assert record.accuracy.details["quantization"]["quantized_weights"] == 2 * 6 + 2  # blocks, embed and head
    directory = tmp_path / "run" / record.artifact_dir
    assert (directory / "fp32" / "model.pdmodel").is_file() and (directory / "arm-test.nb").is_file()
    assert latency.converted == [("arm-test", "int8")]
    assert record.compressed_size_bytes is not None and record.compressed_size_bytes < record.size_bytes


def test_weight_only_shrinks_the_arm_model_and_is_scored_by_its_simulation(toy_task, lite, tmp_path) -> None:
    fit = _fit(toy_task, tmp_path / "run", (ARM,), SpaceBounds(weight_only_bits=(8,)), ConvertThenStandIn(lite))
    full = Candidate((0, 1, 2), (4, 4, 4), (64, 64, 64))
    dense = fit.evaluate(full)
    quantized = fit.evaluate(Candidate(full.layers, full.heads, full.ffn, weight_only_bits=8))
    assert dense.accuracy.fidelity == "distill-1ep" and quantized.accuracy.fidelity == "distill-1ep+wo8-sim"
    assert quantized.size_bytes < 0.7 * dense.size_bytes  # weights shrink 4x; the program itself does not


def test_sparsity_shows_in_nonzero_parameters_and_compressed_size(toy_task, lite, tmp_path) -> None:
    fit = _fit(toy_task, tmp_path / "run", (HOST,), SpaceBounds(sparsities=(0.0, 0.75)), ConvertThenStandIn(lite))
    full = Candidate((0, 1, 2), (4, 4, 4), (64, 64, 64))
    dense = fit.evaluate(full)
    sparse = fit.evaluate(Candidate(full.layers, full.heads, full.ffn, sparsity=0.75))
    assert dense.nonzero_parameters == dense.parameters
    projections = 3 * (4 * 32 * 32 + 2 * 32 * 64)
    assert sparse.parameters == dense.parameters
    assert sparse.parameters - sparse.nonzero_parameters >= 0.74 * projections  # zeros survived the fine-tune
    assert sparse.compressed_size_bytes < 0.75 * dense.compressed_size_bytes
    assert sparse.size_bytes == pytest.approx(dense.size_bytes, rel=0.01)  # the dense .nb itself does not shrink


def test_candidates_the_device_cannot_run_are_rejected_before_any_work(toy_task, tmp_path) -> None:
    int8 = Candidate((0,), (1,), (8,), "int8", calibration="avg")
    assert rejection_reason(int8, (HOST,)) == "host-x86 has no int8 kernels (its profile lists ['fp32'])"
    x86_int8 = DeviceProfile("x86-int8", "x86 claiming int8", "x86", "cpu", "x86", Reach("none"), precisions=("fp32", "int8"))
    assert "NaN" in rejection_reason(int8, (x86_int8,))
    assert "NaN" in rejection_reason(Candidate((0,), (1,), (8,), weight_only_bits=8), (HOST,))
    assert rejection_reason(int8, (ARM,)) is None

    class NeverCalled(LatencyEvaluator):
        def latency(self, artifact, profile, sample_inputs):
            raise AssertionError("a rejected candidate must not be measured")

    out = tmp_path / "run"
    fit = _fit(toy_task, out, (HOST,), SpaceBounds(precisions=("int8",)), NeverCalled(), trials=2)
    result = fit.run()
    assert result.completed == 0 and result.pareto == []
    trials = optuna.load_study(study_name="devicefit", storage=f"sqlite:///{out / 'study.db'}").get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert trials[0].user_attrs["rejected"] == "host-x86 has no int8 kernels (its profile lists ['fp32'])"
    assert not (out / "candidates").exists()  # nothing was built
