"""A fit whose second device is only predicted (reach none, seeded profile): every output says so."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from devicefit.device_profiles import load_profile
from devicefit.evaluators import Split, TaskData
from devicefit.evaluators._accuracy import DistillationSettings
from devicefit.evaluators._latency import MeasureSettings
from devicefit.search._fit import Fit, FitSettings
from devicefit.search._progress import Progress
from devicefit.search._task import Task


@pytest.fixture(scope="module")
def toy_task(paddle, toy_encoder_factory) -> Task:
    rng = np.random.default_rng(0)

    def split(n: int) -> Split:
        features = rng.normal(size=(n, 6, 8)).astype("float32")
        return Split((features,), (features[:, :, 0].mean(axis=1) > 0).astype("int64"))

    spec = [paddle.static.InputSpec([None, 6, 8], "float32", "features")]
    return Task("toy", toy_encoder_factory(), spec, TaskData(split(96), split(32), split(32), num_classes=5), "toy")


def test_a_predicted_device_is_labelled_uncalibrated_everywhere(tmp_path, toy_task) -> None:
    host, phone = load_profile("host-x86"), load_profile("sd865-cpu-1t")
    settings = FitSettings(out=tmp_path / "run", devices=(host, phone), trials=2,
                           distillation=DistillationSettings(epochs=0),
                           measure=MeasureSettings(warmup=1, blocks=1, runs_per_block=3))
    assert settings.predicted(phone) and not settings.predicted(host)
    with Fit(toy_task, settings, progress=Progress(2, quiet=True)) as fit:
        described = dict(fit.describe())["latency"]
        assert "sd865-cpu-1t predicted (uncalibrated), never run" in described
        assert "host-x86 measured with Paddle Lite" in described
        result = fit.run()
    assert result.completed == 2
    rows = list(csv.DictReader((tmp_path / "run" / "pareto.csv").open()))
    document = json.loads((tmp_path / "run" / "pareto.json").read_text())
    for row, member in zip(rows, document["members"]):
        assert row["latency_source:host-x86"] == "measured"
        assert row["latency_source:sd865-cpu-1t"] == "predicted (uncalibrated)"
        latency = member["latency"]["sd865-cpu-1t"]
        assert latency["source"] == "predicted" and latency["calibrated"] is False
        assert "NOT calibrated" in latency["predictor"] and latency["repeats"] == 0
        assert (tmp_path / "run" / member["files"]["nb:sd865-cpu-1t"]).is_file()


def test_predicting_needs_a_predictor_unless_the_caller_gives_the_latency(toy_task, tmp_path) -> None:
    import dataclasses

    from tests.support.toy_runs import StandInLatency

    bare = dataclasses.replace(load_profile("sd865-cpu-1t"), predictor=None)
    settings = FitSettings(out=tmp_path, devices=(bare,))
    assert settings.predicted(bare)
    with pytest.raises(ValueError, match="sd865-cpu-1t has no latency predictor"):
        Fit(toy_task, settings)
    with Fit(toy_task, settings, latency=StandInLatency()) as fit:  # the caller's evaluator needs no predictor
        assert fit.latency.__class__ is StandInLatency
    with pytest.raises(ValueError, match="predict names devices that are not targets"):
        FitSettings(out=tmp_path, devices=(bare,), predict=("host-x86",))
