"""The verbs beyond fit: instant help, ``devices check-ops`` through the Lite worker, and ``dashboard``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest

DEVICEFIT = [sys.executable, "-m", "devicefit.search.cli"]
VERBS = ("fit", "search", "report", "export", "dashboard", "worker", "devices", "devices check-ops", "devices list",
         "devices show", "devices calibrate", "calibrate")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEVICEFIT, *args], capture_output=True, text=True, timeout=600, env=env)


def test_every_verbs_help_is_instant() -> None:
    probe = textwrap.dedent(
        f"""
        import sys
        from devicefit.search.cli import main
        for verb in {list(VERBS)!r}:
            try:
                main([*verb.split(), '--help'])
            except SystemExit as exit:
                assert exit.code == 0, (verb, exit.code)
        heavy = sorted(m for m in ('paddle', 'optuna', 'paddleslim', 'numpy', 'pandas') if m in sys.modules)
        print('HEAVY', heavy)
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    for text in ("--candidate KEY", "-c FILE, --config FILE", "--model FILE.py:FUNC|MODEL.pdmodel", "check-ops",
                 "--predict ID", "--all-versions", "--quick"):
        assert text in result.stdout


def test_devices_without_a_command_is_one_line_exit_2() -> None:
    result = _run("devices")
    assert result.returncode == 2
    assert result.stderr.strip() == "devicefit: error: devices: name a command (list, show, calibrate, check-ops) (see --help)"


@pytest.fixture(scope="module")
def program(tmp_path_factory, paddle, toy_encoder_factory) -> Path:
    folder = tmp_path_factory.mktemp("program")
    spec = [paddle.static.InputSpec([None, 6, 8], "float32", "features")]
    paddle.jit.save(paddle.jit.to_static(toy_encoder_factory(), input_spec=spec, full_graph=True), str(folder / "model"))
    return folder


def test_check_ops_asks_paddle_lite_about_every_op(program) -> None:
    result = _run("devices", "check-ops", str(program), "--device", "host-x86", "--json")
    assert result.returncode == 0, result.stderr
    (device,) = json.loads(result.stdout)["devices"]
    assert device["device"] == "host-x86" and device["supported"] is True and device["unsupported_ops"] == []
    assert {"layer_norm", "softmax", "matmul_v2"} <= set(device["model_ops"])
    text = _run("devices", "check-ops", str(program / "model.pdmodel"), "--device", "host-x86")
    assert text.returncode == 0 and text.stdout.splitlines()[0] == "host-x86 (x86): every op has a kernel"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "pixel-9"], "unknown device 'pixel-9'"),
        (["--device", "host-x86", "--model-is-missing"], "unrecognized arguments: --model-is-missing"),
    ],
)
def test_check_ops_bad_input(program, args, message) -> None:
    result = _run("devices", "check-ops", str(program), *args)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def _a_run(folder: Path) -> Path:
    folder.mkdir()
    optuna.create_study(study_name="devicefit", storage=f"sqlite:///{folder / 'study.db'}")
    (folder / "run.json").write_text(json.dumps({"study": {"storage": "study.db", "name": "devicefit"}}))
    return folder


def test_dashboard_without_optuna_dashboard_says_how_to_install_it(tmp_path) -> None:
    result = _run("dashboard", str(_a_run(tmp_path / "run")))
    assert result.returncode == 2
    assert result.stderr.strip() == ("devicefit: error: optuna-dashboard is not installed: pip install optuna-dashboard "
                                     "(in this environment), then rerun")


def test_dashboard_serves_the_runs_study(tmp_path) -> None:
    fake = tmp_path / "site" / "optuna_dashboard"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "import json, os\n"
        "def run_server(storage, host, port):\n"
        "    with open(os.environ['DASHBOARD_CALL'], 'w') as f:\n"
        "        json.dump({'storage': storage, 'host': host, 'port': port}, f)\n"
    )
    run = _a_run(tmp_path / "run")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "DASHBOARD_CALL": str(tmp_path / "call.json")}
    result = _run("dashboard", str(run), "--port", "8099", env=env)
    assert result.returncode == 0, result.stderr
    call = json.loads((tmp_path / "call.json").read_text())
    assert call == {"storage": f"sqlite:///{(run / 'study.db').resolve()}", "host": "127.0.0.1", "port": 8099}
    assert "http://127.0.0.1:8099/" in result.stderr
