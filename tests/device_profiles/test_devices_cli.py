"""``devicefit devices list|show``, ``calibrate`` input errors and ``fit --predict``: plain, one-line answers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devicefit.device_profiles import find_profiles
from devicefit.device_profiles._cli import LIST_COLUMNS, device_rows

DEVICEFIT = [sys.executable, "-m", "devicefit.search.cli"]
REQUIRED = {"host-x86", "sd865-cpu-1t", "sd865-cpu-4t", "sd855-cpu-1t", "sd855-cpu-4t", "sd845-cpu-1t", "sd845-cpu-4t",
            "sd865-gpu-opencl", "kirin990-npu", "sa8295p-qnn", "mt8168-apu", "sd865-nnapi", "rpi4-cpu"}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DEVICEFIT, *args], capture_output=True, text=True, timeout=300)


def test_every_required_device_has_a_profile_that_says_how_it_is_predicted() -> None:
    profiles = {e.profile.id: e.profile for e in find_profiles()}
    assert REQUIRED <= set(profiles)
    places = {p.places for p in profiles.values()}
    assert {"x86", "arm", "opencl,arm", "huawei_kirin_npu,arm", "qualcomm_qnn,arm", "mediatek_apu,arm",
            "android_nnapi,arm"} <= places
    for profile in profiles.values():
        assert profile.predictor is not None, profile.id
        if profile.id == "host-x86":
            assert profile.calibrated and profile.predictor.provenance.error is not None
        else:
            provenance = profile.predictor.provenance
            assert not provenance.calibrated and provenance.sources and provenance.error is None, profile.id


def test_devices_list_shows_calibration_and_error_per_device() -> None:
    result = run_cli("devices", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [c.upper() for c in LIST_COLUMNS for c in c.split()]
    rows = {line.split()[0]: line for line in lines[1:] if line and line.split()[0] in REQUIRED}
    assert set(rows) == REQUIRED
    assert "calibrated" in rows["host-x86"] and "MAPE" in rows["host-x86"] and "UNCALIBRATED" not in rows["host-x86"]
    assert "UNCALIBRATED (seeded from public figures)" in rows["kirin990-npu"] and "not measured" in rows["kirin990-npu"]
    assert "are seeded from public figures, not calibrated" in result.stdout


def test_device_rows_are_plain_data() -> None:
    rows = {r["id"]: r for r in device_rows(find_profiles())}
    assert rows["rpi4-cpu"]["places"] == "arm" and rows["rpi4-cpu"]["reach"] == "none"
    assert rows["host-x86"]["file"] == "shipped" and rows["host-x86"]["reach"] == "local"


def test_devices_show_cites_the_public_figures_of_a_seeded_profile() -> None:
    result = run_cli("devices", "show", "sd865-gpu-opencl")
    assert result.returncode == 0, result.stderr
    assert "UNCALIBRATED" in result.stdout and "source       Snapdragon 865 opencl MobileNetV1" in result.stdout
    assert "opencl/fc/fp16" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["devices", "show", "pixel-9"], "unknown device 'pixel-9' (known: "),
        (["calibrate", "--device", "sd865-cpu-4t"], "sd865-cpu-4t is reached by 'none': nothing here can time models on it"),
        (["devices", "calibrate", "--device", "sd865-cpu-4t"], "sd865-cpu-4t is reached by 'none': nothing here"),
        (["fit", "--device", "host-x86", "--predict", "sd865-cpu-1t"], "--predict sd865-cpu-1t: not one of the --device"),
    ],
)
def test_bad_device_input_is_one_line_exit_2(args: list[str], message: str, tmp_path) -> None:
    result = run_cli(*args, *(["--out", str(tmp_path / "run")] if args[0] == "fit" else []))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_help_of_the_device_commands_is_instant() -> None:
    probe = (
        "import sys\n"
        "from devicefit.search.cli import main\n"
        "for argv in (['devices', '--help'], ['calibrate', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, exit.code\n"
        "print('HEAVY', sorted(m for m in ('paddle', 'optuna', 'numpy', 'devicefit.device_profiles') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "HEAVY []" in result.stdout, result.stderr
