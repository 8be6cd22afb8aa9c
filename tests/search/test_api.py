"""The Python API: the CLI's verbs as functions, on the toy encoder with the stand-in latency."""

from __future__ import annotations

import pytest

import devicefit.search as dfs
from devicefit.search._budget import Budget
from tests.support.toy_runs import StandInLatency, toy_data, toy_task


@pytest.fixture(scope="module")
def api_run(tmp_path_factory, paddle, toy_encoder_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    result = dfs.fit(toy_task(paddle, toy_encoder_factory), out=out, trials=5, epochs=0, sampler="random",
                     quiet=True, latency=StandInLatency())
    return out, result


def test_fit_returns_the_front_and_writes_the_report(api_run) -> None:
    out, result = api_run
    assert result.completed + result.failed == 5 and result.pareto
    assert (out / "report.html").is_file() and (out / "models").is_dir()
    data = dfs.report_data(out)
    assert [m.key for m in data.members] == [m.record.key for m in result.pareto]


def test_trials_dataframe_has_a_row_per_trial_units_in_names_and_sources_beside_latency(api_run) -> None:
    out, result = api_run
    frame = dfs.trials_dataframe(out)
    assert len(frame) == 5 and frame.index.name == "number"
    columns = list(frame.columns)
    for name in ("accuracy_fraction", "test_accuracy_fraction", "latency_ms:host-x86", "size_bytes",
                 "parameters_count", "trial_seconds", "nb_bytes:host-x86"):
        assert name in columns
    assert columns.index("latency_source:host-x86") == columns.index("latency_ms:host-x86") + 1
    front = frame[frame["on_front"]]
    assert sorted(front["key"]) == sorted(m.record.key for m in result.pareto)
    assert front["test_accuracy_fraction"].notna().all()
    assert frame.loc[~frame["on_front"], "test_accuracy_fraction"].isna().all()


def test_report_and_export_as_functions(api_run, tmp_path) -> None:
    out, result = api_run
    path = dfs.report(out, to=tmp_path / "again.html")
    assert path == tmp_path / "again.html" and path.stat().st_size > 5000
    with pytest.raises(ValueError, match="no evaluated candidate of the run has that key"):
        dfs.export(out, "d9-nope", tmp_path / "deploy")
    assert not (tmp_path / "deploy").exists()


def test_a_layer_with_its_input_spec_and_task_data(paddle, toy_encoder_factory, tmp_path) -> None:
    spec = [paddle.static.InputSpec([None, 6, 8], "float32", "features")]
    result = dfs.search(toy_encoder_factory(seed=1), toy_data(), input_spec=spec, out=tmp_path / "run", trials=2,
                        epochs=0, quiet=True, latency=StandInLatency(), budget=Budget(latency_ms={"host-x86": 1e3}))
    assert result.completed == 2 and not (tmp_path / "run" / "report.html").exists()
    with pytest.raises(ValueError, match="needs input_spec"):
        dfs.fit(toy_encoder_factory(), toy_data(), out=tmp_path / "other", quiet=True)
    with pytest.raises(ValueError, match="unknown device 'pixel-9'"):
        dfs.fit(example="digits-vit", devices=["pixel-9"], out=tmp_path / "third")
    assert not (tmp_path / "other").exists() and not (tmp_path / "third").exists()



def test_the_default_rung_is_the_benchmarks_and_bad_data_is_bad_input(paddle, toy_encoder_factory, tmp_path) -> None:
    import dataclasses
    import json

    from devicefit.evaluators._accuracy import DEFAULT_DISTILLATION
    from devicefit.search._errors import BadInput

    task = toy_task(paddle, toy_encoder_factory)
    result = dfs.search(task, out=tmp_path / "run", trials=1, quiet=True, latency=StandInLatency())
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["distillation"] == dataclasses.asdict(DEFAULT_DISTILLATION)
    assert DEFAULT_DISTILLATION.fidelity == "distill-1ep"
    assert result.pareto[0].record.accuracy.fidelity.split("+")[0] == "distill-1ep"
    too_many_classes = dataclasses.replace(task, data=dataclasses.replace(task.data, num_classes=9))
    with pytest.raises(BadInput, match="num_classes 9"):
        dfs.fit(too_many_classes, out=tmp_path / "bad", quiet=True, latency=StandInLatency())
    assert not (tmp_path / "bad").exists()
