"""Predicted latency: converted by opt, never run; the result says predicted, and whether it was calibrated."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from devicefit.device_profiles import load_profile
from devicefit.evaluators._lite_client import LiteWorker
from devicefit.evaluators._predicted import LatencyByDevice, PredictedLatency, input_tensors
from devicefit.search._results import kernel_breakdown_ms
from devicefit.spaces import export_inference_model


@pytest.fixture(scope="module")
def toy_artifact(paddle, toy_encoder_factory, tmp_path_factory):
    directory = tmp_path_factory.mktemp("predicted")
    artifact = export_inference_model(toy_encoder_factory(num_layers=2), [paddle.static.InputSpec([None, 6, 8], "float32")],
                                      directory / "model")
    sample = directory / "input_0.npy"
    np.save(sample, np.random.default_rng(0).normal(size=(1, 6, 8)).astype("float32"))
    return artifact, sample


def test_a_seeded_profile_gives_a_predicted_latency_flagged_uncalibrated(toy_artifact) -> None:
    artifact, sample = toy_artifact
    phone = load_profile("sd865-cpu-1t")
    assert phone.reach.kind == "none" and not phone.calibrated
    with LiteWorker() as lite:
        result = PredictedLatency(lite).latency(artifact, phone, [sample])
    assert result.source == "predicted" and result.calibrated is False
    assert result.source_label == "predicted (uncalibrated)"
    assert "NOT calibrated" in result.predictor and result.repeats == 0 and result.p10_ms is None
    assert result.latency_ms > 0 and result.model_bytes == (artifact.directory / "sd865-cpu-1t.nb").stat().st_size
    assert result.to_dict()["calibrated"] is False
    # the per-kernel breakdown adds up to the figure, on the phone's ARM kernels, and the report reads it
    assert any(key.startswith("arm/fc/") for key in result.kernels_ms)
    assert sum(result.kernels_ms.values()) + result.overhead_ms + result.subgraphs_ms == pytest.approx(result.latency_ms)
    breakdown = kernel_breakdown_ms(result.to_dict())
    assert breakdown is not None and breakdown["fc"] == pytest.approx(
        sum(ms for key, ms in result.kernels_ms.items() if key.split("/")[1] == "fc")
    )
    assert sum(breakdown.values()) == pytest.approx(result.latency_ms)


def test_the_calibrated_host_profile_predicts_a_calibrated_figure(toy_artifact) -> None:
    artifact, sample = toy_artifact
    host = load_profile("host-x86")
    assert host.calibrated
    with LiteWorker() as lite:
        result = LatencyByDevice({"host-x86": PredictedLatency(lite)}).latency(artifact, host, [sample])
    assert (result.source, result.calibrated, result.source_label) == ("predicted", True, "predicted (calibrated)")
    assert "calibrated" in result.predictor and "MAPE" in result.predictor


def test_a_profile_without_predictor_cannot_be_predicted(toy_artifact) -> None:
    artifact, sample = toy_artifact
    bare = dataclasses.replace(load_profile("host-x86"), predictor=None)
    with LiteWorker() as lite, pytest.raises(ValueError, match="has no predictor"):
        PredictedLatency(lite).latency(artifact, bare, [sample])


def test_inputs_must_be_a_batch_of_one(tmp_path) -> None:
    np.save(tmp_path / "two.npy", np.zeros((2, 6, 8), "float32"))
    np.save(tmp_path / "ids.npy", np.zeros((1, 12), "int64"))
    assert [(t.shape, t.dtype) for t in input_tensors([tmp_path / "ids.npy"])] == [((1, 12), "int64")]
    with pytest.raises(ValueError, match="batch of one"):
        input_tensors([tmp_path / "two.npy"])


@pytest.mark.parametrize("example", ["digits-vit", "digits-bert"])
def test_the_shipped_examples_are_predicted_on_a_seeded_phone(paddle, example, tmp_path) -> None:
    from devicefit.examples import load_example
    from devicefit.spaces import export_inference_model

    task = load_example(example)
    artifact = export_inference_model(task.teacher, task.input_spec, tmp_path / "model")
    inputs = []
    for index, array in enumerate(task.data.val.inputs):
        inputs.append(tmp_path / f"input_{index}.npy")
        np.save(inputs[-1], np.asarray(array[:1]))
    phone = load_profile("sd865-cpu-4t")
    with LiteWorker() as lite:
        result = PredictedLatency(lite).latency(artifact, phone, inputs)
    assert result.source_label == "predicted (uncalibrated)" and result.latency_ms > 0
    assert any(key.startswith("arm/fc/") for key in result.kernels_ms)
    # zeros_like (and arange for the BERT) have no coefficients of their own: priced by a stand-in, and said so
    assert "host/fill_any_like/any priced as host/fill_constant/any" in result.predictor
