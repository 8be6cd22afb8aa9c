"""The fit loop end to end on a tiny encoder, through the real Lite worker (run once, shared by the tests)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import optuna
import pytest

from devicefit.device_profiles import load_profile
from devicefit.evaluators import Split, TaskData
from devicefit.evaluators._accuracy import DistillationSettings
from devicefit.evaluators._latency import LatencyEvaluator, MeasureSettings
from devicefit.evaluators._lite_client import LiteWorker
from devicefit.search._fit import Fit, FitSettings
from devicefit.search._progress import Progress
from devicefit.search._records import objectives_for
from devicefit.search._samplers import make_sampler
from devicefit.search._study import finished_trial_count, open_study, sqlite_url
from devicefit.search._task import Task

HOST = load_profile("host-x86")


def _synthetic_split(rng: np.random.Generator, n: int) -> Split:
    features = rng.normal(size=(n, 6, 8)).astype("float32")
    labels = (features[:, :, 0].mean(axis=1) > 0).astype("int64") + 2 * (features[:, :, 1].mean(axis=1) > 0)
    return Split((features,), labels)


@pytest.fixture(scope="module")
def toy_task(paddle, toy_encoder_factory) -> Task:
    rng = np.random.default_rng(0)
    data = TaskData(_synthetic_split(rng, 192), _synthetic_split(rng, 64), _synthetic_split(rng, 64), num_classes=5)
    spec = [paddle.static.InputSpec([None, 6, 8], "float32", "features")]
    return Task("toy", toy_encoder_factory(), spec, data, "3-layer toy encoder on synthetic sequences")


def _settings(out: Path, trials: int) -> FitSettings:
    return FitSettings(
        out=out,
        devices=(HOST,),
        trials=trials,
        distillation=DistillationSettings(epochs=1),
        measure=MeasureSettings(warmup=2, blocks=2, runs_per_block=5),
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, toy_task):
    out = tmp_path_factory.mktemp("fit") / "run"
    with Fit(toy_task, _settings(out, trials=3), progress=Progress(3, quiet=True)) as fit:
        result = fit.run()
    return out, result


def test_outputs_are_written_with_sources_and_units(finished_run) -> None:
    out, result = finished_run
    assert result.completed == 3 and result.failed == 0
    rows = list(csv.DictReader((out / "pareto.csv").open()))
    document = json.loads((out / "pareto.json").read_text())
    assert [row["key"] for row in rows] == [m["key"] for m in document["members"]] == [m.record.key for m in result.pareto]
    assert 1 <= len(rows) <= 3
    for row, member in zip(rows, document["members"]):
        assert row["latency_source:host-x86"] == "measured"
        assert member["latency"]["host-x86"]["source"] == "measured"
        assert member["latency"]["host-x86"]["unit"] == "ms"
        assert float(row["latency_ms:host-x86"]) > 0
        # Front members were promoted by the ladder: screened after 1 epoch, fine-tuned 2 more, then measured.
        assert 0.0 <= float(row["accuracy"]) <= 1.0 and row["accuracy_fidelity"] == "distill-1ep+2ep"
        model_dir = out / "models" / row["key"]
        assert sorted(p.name for p in model_dir.iterdir()) == ["host-x86.nb", "model.pdiparams", "model.pdmodel"]
        assert int(row["size_bytes"]) == (model_dir / "host-x86.nb").stat().st_size
    # The first trial is the teacher itself (warm start): it keeps every layer, head and FFN unit.
    assert document["objectives"][0] == {"name": "accuracy", "direction": "maximize", "unit": "fraction"}


def test_plain_optuna_reads_the_study(finished_run) -> None:
    out, _ = finished_run
    study = optuna.load_study(study_name="devicefit", storage=f"sqlite:///{out / 'study.db'}")
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 3
    assert trials[0].user_attrs["candidate"] == {"layers": [0, 1, 2], "heads": [4, 4, 4], "ffn": [64, 64, 64], "precision": "fp32"}
    for trial in trials:
        assert trial.user_attrs["latency_source:host-x86"] == "measured"
        assert trial.values[1] == pytest.approx(trial.user_attrs["latency_ms:host-x86"])
    frame = study.trials_dataframe()
    assert "user_attrs_key" in frame.columns and frame["user_attrs_key"].nunique() == 3


def test_the_deployed_nb_computes_what_the_exported_model_computes(finished_run, paddle, toy_task, tmp_path) -> None:
    out, result = finished_run
    model_dir = out / result.pareto[0].model_dir
    sample = toy_task.data.test.inputs[0][:4]
    np.save(tmp_path / "input.npy", sample)
    with LiteWorker() as lite:
        lite.run(model_dir / "host-x86.nb", [tmp_path / "input.npy"], [tmp_path / "output.npy"])
    exported = paddle.jit.load(str(model_dir / "model"))
    expected = exported(paddle.to_tensor(sample)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "output.npy"), expected, atol=1e-4)


def test_rerunning_resumes_without_losing_or_repeating_trials(finished_run, toy_task) -> None:
    out, first = finished_run
    before = optuna.load_study(study_name="devicefit", storage=f"sqlite:///{out / 'study.db'}").get_trials()
    with Fit(toy_task, _settings(out, trials=4), progress=Progress(4, quiet=True)) as fit:
        result = fit.run()
    after = optuna.load_study(study_name="devicefit", storage=f"sqlite:///{out / 'study.db'}").get_trials()
    assert len(after) == 4 and result.completed == 4
    assert [t.values for t in after[:3]] == [t.values for t in before]
    keys = [t.user_attrs["key"] for t in after if "duplicate_of" not in t.user_attrs]
    assert len(keys) == len(set(keys))


class _FailingLatency(LatencyEvaluator):
    """Fails on the second candidate it is given, like a Lite crash would."""

    def __init__(self) -> None:
        self.calls = 0

    def latency(self, artifact, profile, sample_inputs):
        from devicefit.evaluators._types import LatencyResult

        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("the Lite worker crashed: [F 11/28 ...] boom")
        (artifact.directory / f"{profile.id}.nb").write_bytes(b"not a real model")  # the contract's file
        return LatencyResult(profile.id, 1.0 + artifact.size_bytes / 1e6, "measured", "fake", None, None, None, 0, 1, 0.0, artifact.size_bytes)


def test_a_failing_candidate_fails_its_trial_and_the_search_goes_on(tmp_path, toy_task) -> None:
    out = tmp_path / "run"
    with Fit(toy_task, _settings(out, trials=3), progress=Progress(3, quiet=True), latency=_FailingLatency()) as fit:
        result = fit.run()
    assert result.completed == 2 and result.failed == 1
    study = optuna.load_study(study_name="devicefit", storage=f"sqlite:///{out / 'study.db'}")
    failed = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert failed[0].user_attrs["error"] == "RuntimeError: the Lite worker crashed: [F 11/28 ...] boom"
    assert (out / "pareto.csv").exists()


def test_a_study_with_other_devices_is_not_mixed_in(tmp_path) -> None:
    url = sqlite_url(tmp_path / "study.db")
    sampler = make_sampler("random", seed=0, trials=4)
    open_study(url, "devicefit", objectives_for(("host-x86",)), sampler)
    with pytest.raises(ValueError, match="other --out folder"):
        open_study(url, "devicefit", objectives_for(("host-x86", "phone")), sampler)


def test_a_candidate_the_predictor_cannot_price_is_screened_on_a_measurement(tmp_path, toy_task) -> None:
    import dataclasses
    import io

    # host-x86 as if its calibration had never seen a softmax: the ladder's screening prediction cannot price
    # any candidate, and the trial must still complete, on a measured latency, saying so.
    assert HOST.predictor is not None
    kernels = {k: v for k, v in HOST.predictor.kernels.items() if k != "x86/softmax/fp32"}
    blind = dataclasses.replace(HOST, predictor=dataclasses.replace(HOST.predictor, kernels=kernels))
    settings = dataclasses.replace(_settings(tmp_path / "run", trials=1), devices=(blind,))
    assert settings.ladder.enabled
    stream = io.StringIO()
    with Fit(toy_task, settings, progress=Progress(1, stream=stream)) as fit:
        result = fit.run(export=False)
    assert result.completed == 1 and result.failed == 0
    assert "no coefficients for x86/softmax/fp32" in stream.getvalue()
    assert "screened on a measurement instead" in stream.getvalue()
    record = result.pareto[0].record
    assert record.latencies["host-x86"].source == "measured"


def test_the_surrogate_sampler_compares_candidates_as_the_space_encodes_them(tmp_path, toy_task) -> None:
    """A fit with ``--sampler surrogate`` hands the sampler the space's encoding: once the surrogates take over,
    every proposal is a candidate not tried before (parameters that differ only in widths of dropped blocks
    are the same candidate)."""
    import dataclasses

    from devicefit.search._surrogate import SurrogateSampler

    settings = dataclasses.replace(_settings(tmp_path / "run", trials=20), sampler="surrogate")
    (tmp_path / "run").mkdir()
    with Fit(toy_task, settings, progress=Progress(20, quiet=True)) as fit:
        study = fit._open(create=True)
        assert isinstance(study.sampler, SurrogateSampler) and study.sampler.encoder is not None
        keys = []
        for number in range(20):  # values made up from the candidate (no training): what matters is the proposals
            trial = study.ask()
            candidate = fit.space.suggest(trial)
            keys.append(candidate.key())
            assert np.array_equal(study.sampler.encoder(trial.params), fit.space.encode(candidate))
            values = [sum(candidate.heads) / 10 + len(candidate.layers), candidate.depth + sum(candidate.ffn) / 100]
            study.tell(trial, values[: len(study.directions)] + [1.0] * (len(study.directions) - 2))
    later = keys[6:]  # after the random start-up
    assert len(set(later)) == len(later) and not set(later) & set(keys[:6])
