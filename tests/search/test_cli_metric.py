"""``--metric`` and ``--final`` on the command line and in config files: what reaches the run, its outputs
and its workers (through the run spec), and the one-line errors for what cannot be run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from devicefit.device_profiles import load_profile
from devicefit.evaluators._final import FINAL_DISTILLATION, QAT_DISTILLATION
from devicefit.evaluators._metrics import BUILTIN_METRICS, macro_f1, top1_accuracy
from devicefit.search import cli
from devicefit.search._config import SAMPLERS as CONFIG_SAMPLERS
from devicefit.search._fit import load_run_spec
from devicefit.search._samplers import DEFAULT_SAMPLER, SAMPLERS
from devicefit.spaces._export import program_logits

DEVICEFIT = [sys.executable, "-m", "devicefit.search.cli"]
HOST = load_profile("host-x86")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEVICEFIT, *args], capture_output=True, text=True, timeout=600)


def test_the_cli_knows_the_built_in_metrics_samplers_and_the_rung_3_defaults_without_importing_them() -> None:
    assert cli.METRIC_NAMES == tuple(BUILTIN_METRICS)
    assert cli.SAMPLER_NAMES == SAMPLERS == CONFIG_SAMPLERS and cli.DEFAULT_SAMPLER_NAME == DEFAULT_SAMPLER
    assert (cli.FINAL_EPOCHS, cli.FINAL_QAT_EPOCHS) == (FINAL_DISTILLATION.epochs, QAT_DISTILLATION.epochs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "--metric", "f1"], "devicefit fit: error: argument --metric: invalid choice: 'f1' (choose from 'accuracy', 'macro_f1')"),
        (["fit", "--final-epochs", "3"], "devicefit: error: --final-epochs sets the length of --final's fine-tune: add --final"),
        (["fit", "--final", "--final-epochs", "0"], "argument --final-epochs: expected a positive whole number, got 0"),
        (["search", "--final"], "devicefit: error: --final re-trains the exported members, and search exports nothing"),
    ],
)
def test_bad_metric_and_final_options_are_one_line_exit_2_and_write_nothing(tmp_path, args, message) -> None:
    result = run_cli(*args, "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "run").exists()


def test_a_bad_metric_in_a_config_file_names_the_file_and_line(tmp_path) -> None:
    config = tmp_path / "fit.yaml"
    config.write_text("trials: 2\nmetric: f1\n")
    result = run_cli("fit", "-c", str(config), "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert f"{config}:2:" in line and "key 'metric' must be one of 'accuracy', 'macro_f1'" in line
    assert not (tmp_path / "run").exists()


def _worker_settings(spec: dict) -> object:
    worker = cli.build_parser().parse_args(["worker", "--storage", "sqlite:///x.db", "--study", "s"])
    return cli._settings(cli._spec_args(spec, worker), [HOST], [], 1)


def test_metric_and_final_go_from_flags_and_config_to_a_workers_settings(tmp_path) -> None:
    config = tmp_path / "fit.yaml"
    config.write_text("metric: macro_f1\nfinal: true\nfinal_epochs: 3\n")
    for argv in (["fit", "--metric", "macro_f1", "--final", "--final-epochs", "3", "--out", str(tmp_path)],
                 ["fit", "-c", str(config), "--out", str(tmp_path)]):
        args = cli.build_parser().parse_args(argv)
        args.argv = argv
        from devicefit.search import _verbs

        args = _verbs.with_config(args)
        settings = cli._settings(args, [HOST], [], 1)
        assert settings.metric == "macro_f1" and settings.final.epochs == 3 and settings.final.qat_epochs == 5
        spec = cli._run_spec(args, ["host-x86"], type("Source", (), {"to_spec": lambda self: {}})())
        assert (spec["metric"], spec["final"], spec["final_epochs"]) == ("macro_f1", True, 3)
        assert _worker_settings(spec).metric == "macro_f1"
    # A run spec written before --metric existed means top-1 accuracy.
    spec.pop("metric")
    assert _worker_settings(spec).metric == "accuracy"


def test_metric_macro_f1_names_pareto_csvs_columns_and_reaches_the_worker(tmp_path) -> None:
    from devicefit.examples.digits_vit.task import build_task

    out = tmp_path / "run"
    result = run_cli("fit", "--example", "digits-vit", "--device", "host-x86", "--trials", "1", "--epochs", "0",
                     "--no-ladder", "--metric", "macro_f1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    with (out / "pareto.csv").open() as stream:
        reader = csv.DictReader(stream)
        header = list(reader.fieldnames or [])
        (row,) = list(reader)
    assert {"macro_f1", "macro_f1_fidelity", "test_macro_f1", "test_macro_f1_fidelity"} <= set(header)
    assert "accuracy" not in header and "test_accuracy" not in header
    # The test column is the macro-F1 of the exported model, which is not its top-1 accuracy here.
    test = build_task(seed=0).data.test
    logits = program_logits(out / "models" / row["key"], test.inputs)
    assert macro_f1(logits, test.labels) != pytest.approx(top1_accuracy(logits, test.labels), abs=1e-4)
    assert float(row["test_macro_f1"]) == pytest.approx(macro_f1(logits, test.labels), abs=1e-6)
    (member,) = json.loads((out / "pareto.json").read_text())["members"]
    assert member["accuracy"]["metric"] == member["test_accuracy"]["metric"] == "macro_f1"
    assert json.loads((out / "run.json").read_text())["metric"] == "macro_f1"
    spec = load_run_spec(f"sqlite:///{out / 'study.db'}", "devicefit")
    assert spec["metric"] == "macro_f1" and _worker_settings(spec).metric == "macro_f1"
