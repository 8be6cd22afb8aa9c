"""The Android runner end to end through the fake adb and the fake benchmark_bin (see tests/fakes/).

Everything the runner does really happens: files are pushed into the fake phone's sandbox, the pushed
benchmark_bin really runs and times the pushed .nb with Paddle Lite, its report is parsed, and the session
folder is removed. Failures are real too: a benchmark_bin that hangs is killed, one that crashes or prints
something else fails the measurement with the reason, and a phone that disappears mid-measurement fails it
as gone.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from devicefit.evaluators._adb import AdbRunner
from devicefit.evaluators._errors import (
    DeviceCommandError,
    DeviceGoneError,
    DeviceUnavailableError,
    MeasurementTimeout,
    UnparsableOutputError,
)
from devicefit.evaluators._latency import MeasuredLatency
from devicefit.evaluators._reference import ReferenceSource

from .conftest import QUICK, broken_benchmark_bin


def _evaluator(worker, fake_phone, reference_dir, settings=QUICK) -> MeasuredLatency:
    return MeasuredLatency(
        worker, {"adb": AdbRunner(str(fake_phone.adb))}, settings, reference=ReferenceSource(reference_dir)
    )


def test_a_phone_is_measured_with_benchmark_bin_and_left_clean(worker, fake_phone, tiny, reference_dir) -> None:
    profile = fake_phone.profile(threads=2, power_mode="full", memory_limit_bytes=64 * 2**30)
    result = _evaluator(worker, fake_phone, reference_dir).latency(tiny.artifact, profile, tiny.inputs)
    assert result.source == "measured" and result.runner == "adb"
    assert result.statistic == "min-of-runs" and result.spread_basis == "block-means"
    assert result.blocks >= QUICK.blocks and result.repeats == result.blocks * QUICK.runs_per_block
    assert 0 < result.latency_ms <= result.median_ms
    assert result.threads == 2 and result.power_mode == "full"
    assert result.runtime.startswith("benchmark_bin sha256:")
    # benchmark_bin's memory report: peak RSS of its process, in MiB with 3 decimals
    assert result.memory_peak_bytes is not None and result.memory_peak_bytes > 10 * 2**20
    assert result.memory_limit_bytes == 64 * 2**30 and result.memory_over_limit_bytes < 0
    assert result.model_bytes == (tiny.artifact.directory / "fake-phone.nb").stat().st_size
    assert fake_phone.files_left() == []  # the session folder is gone from the phone


def test_the_reference_is_interleaved_on_the_phone_too(worker, fake_phone, tiny, reference_dir) -> None:
    settings = dataclasses.replace(QUICK, reference=True, blocks=2, max_blocks=2)
    result = _evaluator(worker, fake_phone, reference_dir, settings).latency(
        tiny.artifact, fake_phone.profile(), tiny.inputs
    )
    assert result.reference_id is not None and result.reference_latency_ms > 0
    assert result.reference_ratio == pytest.approx(result.reference_ratio)  # a number, not NaN
    assert result.reference_ratio > 0 and result.blocks == 2


def test_npu_places_get_the_nnadapter_backend_and_the_partition_is_recorded(
    worker, fake_phone, tiny, reference_dir, tmp_path
) -> None:
    # The fake benchmark_bin cannot run an NPU .nb on x86; a recording stand-in shows the flags the real one gets.
    record = tmp_path / "argv.txt"
    recorder = broken_benchmark_bin(
        tmp_path, "recording_benchmark_bin", [f'echo "$@" >> "{record}"', f'exec "{fake_phone.benchmark_bin}" "$@"']
    )
    profile = fake_phone.profile(places="huawei_kirin_npu,arm", benchmark_bin=recorder, unit="npu")
    try:
        result = _evaluator(worker, fake_phone, reference_dir).latency(tiny.artifact, profile, tiny.inputs)
    except (UnparsableOutputError, DeviceCommandError) as exc:  # a Kirin .nb may not run on x86 at all
        pytest.fail(f"the NPU .nb did not time on the fake phone: {exc}")
    argv = record.read_text()
    assert "--backend=nnadapter,arm" in argv and "--nnadapter_device_names=huawei_kirin_npu" in argv
    assert result.nnadapter_subgraphs == 1
    assert result.nnadapter_ops["matmul_v2"] > 0 and result.cpu_fallback_ops == {}


def test_android_nnapi_leaves_layer_norm_and_reduce_mean_on_the_cpu(worker, tiny, tmp_path) -> None:
    from devicefit.evaluators._nnadapter import parse_partition

    log = worker.convert(tiny.artifact.model_file, tiny.artifact.params_file, "android_nnapi,arm", tmp_path / "m").log
    partition = parse_partition(log)
    assert partition is not None and partition.cpu_ops == {"layer_norm": 2, "reduce_mean": 1}
    assert not partition.fully_offloaded and partition.subgraphs >= 2


def test_check_finds_adb_the_serial_and_benchmark_bin(fake_phone, tmp_path) -> None:
    runner = AdbRunner(str(fake_phone.adb))
    runner.check(fake_phone.profile())
    fake_phone.set_state(devices={"OTHER": "device", "FAKE0001": "unauthorized"})
    with pytest.raises(DeviceUnavailableError, match="'unauthorized' in `adb devices`"):
        runner.check(fake_phone.profile())
    fake_phone.set_state(devices={"OTHER": "device"})
    with pytest.raises(DeviceUnavailableError, match=r"serial FAKE0001 is not listed .*OTHER \(device\)"):
        runner.check(fake_phone.profile())
    with pytest.raises(DeviceUnavailableError, match="benchmark_bin .* does not exist"):
        runner.check(fake_phone.profile(benchmark_bin=tmp_path / "nope"))
    with pytest.raises(DeviceUnavailableError, match="adb is not available.*DEVICEFIT_ADB"):
        AdbRunner(str(tmp_path / "no-adb")).check(fake_phone.profile())


def test_a_hanging_benchmark_bin_is_killed_on_the_phone(worker, fake_phone, tiny, reference_dir, tmp_path) -> None:
    marker = tmp_path / "still-running"
    hanging = broken_benchmark_bin(tmp_path, "hanging", [f'touch "{marker}"', "sleep 600", f'rm -f "{marker}"'])
    settings = dataclasses.replace(QUICK, step_timeout_seconds=3.0, measure_memory=False)
    started = time.monotonic()
    with pytest.raises(MeasurementTimeout, match="timing candidate took more than 3 s") as caught:
        _evaluator(worker, fake_phone, reference_dir, settings).latency(
            tiny.artifact, fake_phone.profile(benchmark_bin=hanging), tiny.inputs
        )
    assert caught.value.timeout_seconds == 3.0
    assert time.monotonic() - started < 30
    assert fake_phone.files_left() == []


@pytest.mark.parametrize(
    ("lines", "error", "message"),
    [
        (["echo 'Segmentation fault'", "exit 139"], DeviceCommandError, r"benchmark_bin failed .*exit 139 \(SIGSEGV"),
        (["echo 'hello, I am not benchmark_bin'"], UnparsableOutputError, "no '======= Perf Info =======' section"),
        (
            ["echo '======= Perf Info ======='", "echo 'Time(unit: ms):'", "echo 'init  = 1.0'", "echo 'avg   = x'"],
            UnparsableOutputError,
            "'avg = x' is not a number",
        ),
        (
            ["echo 'Find and ignore unsupport nnadapter device: huawei_kirin_npu' >&2", "exit 0"],
            UnparsableOutputError,
            "does not know the NNAdapter device",
        ),
    ],
)
def test_a_broken_benchmark_bin_fails_the_measurement_with_the_reason(
    worker, fake_phone, tiny, reference_dir, tmp_path, lines, error, message
) -> None:
    broken = broken_benchmark_bin(tmp_path, "broken", lines)
    with pytest.raises(error, match=message):
        _evaluator(worker, fake_phone, reference_dir).latency(
            tiny.artifact, fake_phone.profile(benchmark_bin=broken), tiny.inputs
        )
    assert fake_phone.files_left() == []


def test_a_benchmark_bin_that_ignores_flags_is_refused(worker, fake_phone, tiny, reference_dir, tmp_path) -> None:
    # An old build that always runs 1 thread would silently time something else than asked.
    liar = broken_benchmark_bin(
        tmp_path, "liar", [f'exec "{fake_phone.benchmark_bin}" "$@" --threads=1']
    )
    with pytest.raises(UnparsableOutputError, match=r"did not run as asked: threads 1 \(asked 3\)"):
        _evaluator(worker, fake_phone, reference_dir).latency(
            tiny.artifact, fake_phone.profile(benchmark_bin=liar, threads=3), tiny.inputs
        )


def test_a_phone_unplugged_mid_measurement_is_reported_gone(worker, fake_phone, tiny, reference_dir) -> None:
    # Session set-up takes 4 adb commands (mkdir, push, chmod, push .nb) and 1 push per input: unplug during timing.
    fake_phone.set_state(unplug_after_commands=7)
    with pytest.raises(DeviceGoneError, match=r"FAKE0001\) went away while timing candidate"):
        _evaluator(worker, fake_phone, reference_dir).latency(tiny.artifact, fake_phone.profile(), tiny.inputs)
    assert "FAKE0001" not in fake_phone.state()["devices"]
    # the evaluator stays usable: a phone that is back is measured again
    fake_phone.set_state(devices={"FAKE0001": "device"}, commands={}, unplug_after_commands=None)
    result = _evaluator(worker, fake_phone, reference_dir).latency(tiny.artifact, fake_phone.profile(), tiny.inputs)
    assert result.latency_ms > 0


def test_runtime_version_follows_the_benchmark_bin_content(fake_phone, tmp_path) -> None:
    runner = AdbRunner(str(fake_phone.adb))
    first = runner.runtime_version(fake_phone.profile())
    copy = tmp_path / "copy_of_benchmark_bin"
    copy.write_bytes(fake_phone.benchmark_bin.read_bytes())
    assert runner.runtime_version(fake_phone.profile(benchmark_bin=copy)) == first  # same bytes, same runtime
    copy.write_bytes(copy.read_bytes() + b"\n# rebuilt\n")
    assert runner.runtime_version(fake_phone.profile(benchmark_bin=copy)) != first
    assert Path(copy).is_file()
