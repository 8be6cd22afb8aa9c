"""The Lite worker's measurement ops added for the latency protocol: CPU pinning, power mode, peak memory."""

from __future__ import annotations

import os

import pytest

from devicefit.evaluators._lite_client import LiteOpError


@pytest.fixture(scope="module")
def x86_nb(worker, tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("worker-nb") / "tiny"
    return worker.convert(tiny.artifact.model_file, tiny.artifact.params_file, "x86", out).nb_file


def test_timing_pins_every_worker_thread_and_restores_them(worker, tiny, x86_nb) -> None:
    last = max(os.sched_getaffinity(0))
    pinned = worker.measure_detailed(x86_nb, tiny.inputs, warmup=1, repeats=3, cpu_affinity=[last])
    assert pinned.cpu_affinity_applied == (last,)
    free = worker.measure_detailed(x86_nb, tiny.inputs, warmup=1, repeats=3)
    assert free.cpu_affinity_applied is None
    # the masks were restored, also on threads the math libraries started while pinned
    tasks = os.listdir(f"/proc/{worker.pid}/task")
    assert all(os.sched_getaffinity(int(tid)) == os.sched_getaffinity(0) for tid in tasks)


def test_a_cpu_the_worker_may_not_use_is_not_pinned(worker, tiny, x86_nb) -> None:
    result = worker.measure_detailed(x86_nb, tiny.inputs, warmup=0, repeats=1, cpu_affinity=[4096])
    assert result.cpu_affinity_applied is None and len(result.times_ms) == 1


def test_power_mode_is_validated_and_not_applied_on_x86(worker, tiny, x86_nb) -> None:
    result = worker.measure_detailed(x86_nb, tiny.inputs, warmup=0, repeats=1, power_mode=2)
    assert result.power_mode_applied is False  # the x86 wheel's MobileConfig has no set_power_mode
    with pytest.raises(LiteOpError, match="power_mode must be 0..5"):
        worker.measure_detailed(x86_nb, tiny.inputs, warmup=0, repeats=1, power_mode=9, threads=3)


def test_memory_is_measured_in_a_fresh_process(worker, tiny, x86_nb, tmp_path) -> None:
    first = worker.measure_memory(x86_nb, tiny.inputs, runs=2)
    second = worker.measure_memory(x86_nb, tiny.inputs, runs=2)
    assert first.peak_reset and not first.lower_bound
    assert 0 < first.inference_peak_bytes < first.process_peak_bytes
    assert first.baseline_rss_bytes + first.inference_peak_bytes == first.process_peak_bytes
    # a fresh process each time: the same model gives the same figure within a few pages (a long-lived
    # worker would report 0 the second time, its peak already reached)
    assert abs(first.inference_peak_bytes - second.inference_peak_bytes) < 256 * 1024
    with pytest.raises(LiteOpError, match="nb_file not found"):
        worker.measure_memory(tmp_path / "missing.nb", tiny.inputs)


def test_the_thread_cpu_clock_times_the_running_thread_single_threaded_only(worker, tiny, x86_nb) -> None:
    wall = worker.measure_detailed(x86_nb, tiny.inputs, warmup=1, repeats=5)
    cpu = worker.measure_detailed(x86_nb, tiny.inputs, warmup=1, repeats=5, clock="thread_cpu")
    assert (wall.clock, cpu.clock) == ("wall", "thread_cpu")
    assert len(cpu.times_ms) == 5 and all(t > 0 for t in cpu.times_ms)
    # No ratio between the two clocks is asserted: they time different runs, and on this shared machine a
    # 0.04 ms model's thread CPU time measured 2x the wall median of the call before (fresh-check, load ~3).
    with pytest.raises(LiteOpError, match="thread_cpu clock times the calling thread only"):
        worker.measure_detailed(x86_nb, tiny.inputs, warmup=0, repeats=1, threads=2, clock="thread_cpu")
    with pytest.raises(LiteOpError, match="clock must be one of"):
        worker.measure_detailed(x86_nb, tiny.inputs, warmup=0, repeats=1, clock="sundial")


def test_runners_refuse_a_clock_their_tool_does_not_have(worker, fake_phone) -> None:
    import dataclasses

    from devicefit.device_profiles import load_profile
    from devicefit.evaluators._adb import AdbRunner
    from devicefit.evaluators._host import HostRunner
    from devicefit.evaluators._latency import MeasuredLatency

    from .conftest import QUICK

    cpu_clock = dataclasses.replace(QUICK, clock="thread_cpu")
    host = load_profile("host-x86")
    with pytest.raises(ValueError, match="needs threads: 1"):
        HostRunner(worker).open(dataclasses.replace(host, threads=2), cpu_clock)
    with HostRunner(worker).open(host, cpu_clock) as session:  # one thread: allowed on this host
        assert session.settings.clock == "thread_cpu"
    with pytest.raises(ValueError, match="benchmark_bin reports wall time only"):
        AdbRunner(str(fake_phone.adb)).open(fake_phone.profile(), cpu_clock)
    assert fake_phone.files_left() == []  # refused before anything was put on the phone
    with pytest.raises(ValueError, match="clock is for calibration only"):
        MeasuredLatency(worker, {"local": HostRunner(worker)}, cpu_clock)
    with pytest.raises(ValueError, match="invalid measure settings"):
        dataclasses.replace(QUICK, clock="sundial")


def test_a_reading_of_no_time_is_the_clock_not_advancing_and_is_left_out() -> None:
    from devicefit.evaluators._host import clock_readings

    assert clock_readings([0.0021, 0.0, 0.0019, -0.0]) == [0.0021, 0.0019]
    with pytest.raises(ValueError, match="clock did not advance"):
        clock_readings([0.0, 0.0])
