"""The command line: instant help, one-line errors with exit code 2 for bad input, and a real demo-sized run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DEVICEFIT = [sys.executable, "-m", "devicefit.search.cli"]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEVICEFIT, *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_help_does_not_import_paddle_or_optuna() -> None:
    probe = (
        "import sys\n"
        "from devicefit.search.cli import main\n"
        "for argv in (['--help'], ['fit', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, exit.code\n"
        "heavy = sorted(m for m in ('paddle', 'optuna', 'paddleslim', 'numpy') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    assert "--trials N" in result.stdout and "Exit codes" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "pixel-9"], "unknown device 'pixel-9' (known: host-x86"),
        (["--example", "mnist"], "unknown example 'mnist' (known: digits-bert, digits-vit)"),
        (["--trials", "0"], "argument --trials: expected a positive whole number, got 0"),
        (["--trials", "many"], "argument --trials: expected a positive whole number, got 'many'"),
        (["--out", "/proc/devicefit-run"], "--out /proc/devicefit-run: cannot write in /proc"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message) -> None:
    out_args = [] if "--out" in args else ["--out", str(tmp_path / "run")]
    result = run_cli("fit", *args, *out_args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_out_that_is_a_file_or_a_foreign_folder_is_refused(tmp_path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_text("x")
    for out, message in ((a_file, "exists and is not a folder"), (a_file / "run", "is a file"), (foreign, "other files")):
        result = run_cli("fit", "--out", str(out))
        assert result.returncode == 2 and message in result.stderr, result.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["cat.jpg"]


def test_a_missing_lite_interpreter_is_a_one_line_failure(tmp_path) -> None:
    env = {**os.environ, "DEVICEFIT_LITE_PYTHON": str(tmp_path / "no-such-python")}
    result = subprocess.run(
        [*DEVICEFIT, "fit", "--trials", "1", "--epochs", "0", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("devicefit: error: ") and "DEVICEFIT_LITE_PYTHON" in last
    assert "Traceback" not in result.stderr
    assert "Traceback" in (tmp_path / "run" / "error.log").read_text()


def test_fit_the_digits_example_from_the_command_line(tmp_path) -> None:
    out = tmp_path / "demo"
    result = run_cli("fit", "--example", "digits-vit", "--device", "host-x86", "--trials", "2", "--epochs", "1",
                     "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[  2/2 " in result.stderr
    rows = list(csv.DictReader((out / "pareto.csv").open()))
    assert rows and all(row["latency_source:host-x86"] == "measured" for row in rows)
    assert rows[0]["key"] in result.stdout
    members = json.loads((out / "pareto.json").read_text())["members"]
    for member in members:
        # A real Paddle Lite model: even the smallest candidate (the second warm start, 1 layer) is ~58 KB.
        assert Path(out / member["files"]["nb:host-x86"]).stat().st_size > 20_000
        assert member["test_accuracy"]["split"] == "test"
    # The first trial is the teacher (warm start); one distillation epoch keeps it near its 95% validation accuracy.
    assert float(rows[0]["accuracy"]) >= 0.9


def test_phones_and_boards_are_checked_before_anything_runs(tmp_path) -> None:
    from tests.fakes.devices import make_fake_board, make_fake_phone

    phone = make_fake_phone(tmp_path)
    board = make_fake_board(tmp_path)
    phone_yaml = phone.write_profile(tmp_path / "fake-phone.yaml")
    board_yaml = board.write_profile(tmp_path / "fake-board.yaml")
    tools = {"DEVICEFIT_ADB": str(phone.adb), "DEVICEFIT_SSH": str(board.ssh), "DEVICEFIT_SCP": str(board.scp)}
    phone.set_state(devices={"OTHER": "device"})
    board.set_state(hosts=[])
    cases = [
        ({"DEVICEFIT_ADB": str(tmp_path / "no-adb")}, phone_yaml, "adb is not available"),
        (tools, phone_yaml, "serial FAKE0001 is not listed by `adb devices` (listed: OTHER (device))"),
        (tools, board_yaml, "cannot reach board-1 while connecting: ssh: connect to host board-1 port 22"),
    ]
    for extra_env, profile, message in cases:
        result = subprocess.run(
            [*DEVICEFIT, "fit", "--device", str(profile), "--out", str(tmp_path / "run")],
            capture_output=True, text=True, env={**os.environ, **extra_env}, timeout=300,
        )
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
        assert lines[0].startswith(f"devicefit: error: --device {profile}: ")
    assert not (tmp_path / "run").exists()


def test_a_reader_that_leaves_early_is_not_an_error() -> None:
    """``devicefit devices list | head -1``: the pipe closes before devicefit writes; exit 0, nothing on stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([*DEVICEFIT, "devices", "list"], stdout=write_end, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr.decode()) == (0, "")
