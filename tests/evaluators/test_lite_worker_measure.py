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
