"""The fidelity ladder in a fit: every candidate screened (search rung, predicted latency), only the promising
ones measured and fine-tuned longer; the screened-out ones never reach the front."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import optuna
import pytest

from devicefit.device_profiles import load_profile
from devicefit.evaluators import Split, TaskData
from devicefit.evaluators._accuracy import AccuracyEvaluator, DistillationSettings
from devicefit.evaluators._latency import LatencyEvaluator
from devicefit.evaluators._metrics import as_metric
from devicefit.evaluators._types import AccuracyResult, LatencyResult
from devicefit.search._fit import Fit, FitSettings
from devicefit.search._progress import Progress
from devicefit.search._screening import (
    SCREEN_ATTR,
    LadderSettings,
    latency_margin,
    objective_margins,
    screen,
)
from devicefit.search._task import Task

HOST = load_profile("host-x86")
PHONE = load_profile("sd865-cpu-4t")


# -- the decision, as arithmetic -------------------------------------------------------------------------------


def test_a_candidate_is_screened_out_only_when_dominated_beyond_the_margins() -> None:
    maximize = [True, False, False]  # accuracy, latency, size
    margins = [0.02, 0.1, 0.0]
    others = [(0, [0.90, 1.00, 100.0])]
    # Better accuracy than trial 0: it could be optimal.
    assert screen([0.95, 2.0, 200.0], others, maximize=maximize, margins=margins).promote
    # Worse everywhere by more than the margins: out, naming the trial that rules it out.
    decision = screen([0.80, 2.0, 200.0], others, maximize=maximize, margins=margins)
    assert not decision.promote and "trial #0" in decision.reason
    # Worse, but within the accuracy margin and not bigger: the benefit of the doubt.
    assert screen([0.89, 1.05, 100.0], others, maximize=maximize, margins=margins).promote
    # No other trial yet: always promoted.
    assert screen([0.1, 9.0, 900.0], [], maximize=maximize, margins=margins).promote


def test_margins_come_from_the_predictors_measured_error() -> None:
    assert HOST.predictor is not None and HOST.predictor.provenance.calibrated
    error = HOST.predictor.provenance.error
    assert error is not None
    expected = max(0.10, 2 * error.mape_percent / 100)
    assert latency_margin(HOST, final_is_predicted=False) == pytest.approx(expected)
    assert latency_margin(HOST, final_is_predicted=True) == 0.0  # the screening figure is the final one
    assert PHONE.predictor is not None and not PHONE.predictor.provenance.calibrated
    assert math.isinf(latency_margin(PHONE, final_is_predicted=False))  # an uncalibrated guess rules nothing out
    names = ["accuracy", "latency_ms:host-x86", "size_bytes"]
    assert objective_margins(names, [0.9, 2.0, 10.0], 0.05, {"host-x86": 0.1}) == [0.05, pytest.approx(0.2), 0.0]


# -- the ladder in a fit -------------------------------------------------------------------------------------------


def _split(rng: np.random.Generator, n: int) -> Split:
    features = rng.normal(size=(n, 6, 8)).astype("float32")
    return Split((features,), (features[:, :, 0].mean(axis=1) > 0).astype("int64"))


@pytest.fixture(scope="module")
def task(paddle, toy_encoder_factory) -> Task:
    rng = np.random.default_rng(3)
    data = TaskData(_split(rng, 96), _split(rng, 48), _split(rng, 48), num_classes=5)
    return Task("toy", toy_encoder_factory(), [paddle.static.InputSpec([None, 6, 8], "float32")], data, "toy")


class SizeLatency(LatencyEvaluator):
    """Latency proportional to the exported size, labelled ``source``; remembers the folders it was called on."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.calls: list[str] = []

    def latency(self, artifact, profile, sample_inputs):
        self.calls.append(artifact.directory.name)
        (artifact.directory / f"{profile.id}.nb").write_bytes(artifact.params_file.read_bytes())
        return LatencyResult(profile.id, artifact.size_bytes / 100_000, self.source, "stand-in", None, None, None, 0, 1,
                             0.0, artifact.size_bytes, calibrated=True if self.source == "predicted" else None)


class SameAccuracy(AccuracyEvaluator):
    """Every student scores 0.5: dominance then comes from latency and size alone, so it is predictable."""

    def __init__(self, fidelity: str) -> None:
        self._fidelity = fidelity
        self.calls = 0
        self.metric = as_metric("accuracy")

    @property
    def fidelity(self) -> str:
        return self._fidelity

    def evaluate(self, student, *, teacher_layers=None):
        self.calls += 1
        return AccuracyResult(0.5, "val", self._fidelity, 0.0, {})


def test_only_promoted_candidates_are_measured_and_fine_tuned_longer(tmp_path, task) -> None:
    out = tmp_path / "run"
    settings = FitSettings(out=out, devices=(HOST,), trials=10, sampler="random", seed=2,
                           distillation=DistillationSettings(epochs=0), ladder=LadderSettings(promote_epochs=1,
                                                                                               accuracy_margin=0.0))
    measured, predicted = SizeLatency("measured"), SizeLatency("predicted")
    with Fit(task, settings, progress=Progress(10, quiet=True), latency=measured, screening=predicted) as fit:
        fit.accuracy = SameAccuracy("screen-rung")
        fit._promotion = SameAccuracy("longer")
        fit.run(export=False)
    study = optuna.load_study(study_name="devicefit", storage=settings.storage_url)
    done = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE and "duplicate_of" not in t.user_attrs]
    promoted = [t for t in done if not t.user_attrs["record"].get("screened_out")]
    screened = [t for t in done if t.user_attrs["record"].get("screened_out")]
    assert promoted and screened, "10 random candidates of different sizes: some are ruled out by a smaller one"
    # Every candidate was screened with the predicted figure; only the promoted ones were measured.
    assert sorted(predicted.calls) == sorted(t.user_attrs["key"] for t in done)
    assert sorted(measured.calls) == sorted(t.user_attrs["key"] for t in promoted)
    assert fit._promotion.calls == len(promoted)
    for trial in done:
        assert len(trial.user_attrs[SCREEN_ATTR]) == 3
    for trial in screened:
        record = trial.user_attrs["record"]
        assert record["latencies"]["host-x86"]["source"] == "predicted"
        assert record["accuracy"]["fidelity"] == "screen-rung"
        assert "dominated on the screening figures by trial #" in record["screened_out"]
        assert trial.values == trial.user_attrs[SCREEN_ATTR]  # Optuna learns from what was actually known
    for trial in promoted:
        record = trial.user_attrs["record"]
        assert record["latencies"]["host-x86"]["source"] == "measured"
        assert record["accuracy"]["fidelity"] == "screen-rung+1ep"
    # The front is drawn from promoted candidates only.
    with (out / "pareto.csv").open() as handle:
        keys = {row["key"] for row in csv.DictReader(handle)}
    assert keys and keys <= {t.user_attrs["key"] for t in promoted}


def test_with_the_ladder_off_every_candidate_is_measured(tmp_path, task) -> None:
    settings = FitSettings(out=tmp_path / "run", devices=(HOST,), trials=4, sampler="random",
                           distillation=DistillationSettings(epochs=0), ladder=LadderSettings(enabled=False))
    measured, predicted = SizeLatency("measured"), SizeLatency("predicted")
    with Fit(task, settings, progress=Progress(4, quiet=True), latency=measured, screening=predicted) as fit:
        fit.run(export=False)
    study = optuna.load_study(study_name="devicefit", storage=settings.storage_url)
    keys = [t.user_attrs["key"] for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE
            and "duplicate_of" not in t.user_attrs]
    assert sorted(measured.calls) == sorted(keys) and predicted.calls == []
    assert all(SCREEN_ATTR not in t.user_attrs for t in study.get_trials())


def test_a_device_that_stays_predicted_is_predicted_once(tmp_path, task) -> None:
    """A phone (reach none) has no measurement to wait for: its screening figure is final, never redone."""
    settings = FitSettings(out=tmp_path / "run", devices=(PHONE,), trials=3, sampler="random",
                           distillation=DistillationSettings(epochs=0), ladder=LadderSettings(promote_epochs=0))
    final = SizeLatency("predicted")
    with Fit(task, settings, progress=Progress(3, quiet=True), latency=final, screening=SizeLatency("predicted")) as fit:
        fit.run(export=False)
    study = optuna.load_study(study_name="devicefit", storage=settings.storage_url)
    keys = [t.user_attrs["key"] for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE
            and "duplicate_of" not in t.user_attrs]
    assert sorted(final.calls) == sorted(keys)  # once per candidate: no second figure after promotion
    assert Path(settings.out).is_dir()
