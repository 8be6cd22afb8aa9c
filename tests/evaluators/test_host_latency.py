"""Measured latency on this host through the real Lite worker: protocol, memory, pinning, cache and lease."""

from __future__ import annotations

import dataclasses
import os
import socket
import time

import pytest

from devicefit.device_profiles import load_profile
from devicefit.evaluators._cache import CacheKey, LatencyCache
from devicefit.evaluators._errors import DeviceBusyError
from devicefit.evaluators._host import HostRunner, pinning_cpus
from devicefit.evaluators._latency import MeasuredLatency, default_latency, host_latency
from devicefit.evaluators._lease import DeviceLeases
from devicefit.evaluators._reference import ReferenceSource
from devicefit.evaluators._types import LatencyResult

from .conftest import QUICK

HOST = load_profile("host-x86")


def _evaluator(worker, reference_dir, settings=QUICK, *, url: str | None = None, wait: float = 3600) -> MeasuredLatency:
    return MeasuredLatency(
        worker,
        {"local": HostRunner(worker)},
        settings,
        leases=None if url is None else DeviceLeases(url, wait_seconds=wait, poll_seconds=0.05),
        cache=None if url is None else LatencyCache(url),
        reference=ReferenceSource(reference_dir),
    )


def test_the_host_protocol_reports_every_figure(worker, tiny, reference_dir) -> None:
    settings = dataclasses.replace(QUICK, reference=True, blocks=3, max_blocks=3, runs_per_block=20)
    result = _evaluator(worker, reference_dir, settings).latency(tiny.artifact, HOST, tiny.inputs)
    assert result.source == "measured" and result.runner == "local" and result.places == "x86"
    assert result.statistic == "min-of-runs" and result.spread_basis == "runs"
    assert result.blocks == 3 and result.repeats == 60 and result.runs_per_block == 20
    assert result.p10_ms <= result.median_ms <= result.p90_ms and result.latency_ms <= result.median_ms
    assert result.cv >= 0 and isinstance(result.stable, bool) and result.noisy == (not result.stable)
    assert result.reference_id is not None and result.reference_ratio == pytest.approx(
        result.reference_ratio
    ) and result.reference_ratio > 0 and result.reference_latency_ms > 0
    assert result.ci_half_width_pct is None  # 3 pairs are too few for a 95% CI of the median
    assert result.cpu_affinity == ",".join(map(str, pinning_cpus(1)))
    assert result.power_mode is None  # x86 has none
    assert result.runtime.startswith("paddlelite ") and result.host_load_1min is not None
    assert result.nnadapter_ops is None and result.cpu_fallback_ops is None
    assert result.model_bytes == (tiny.artifact.directory / "host-x86.nb").stat().st_size


def test_peak_memory_grows_with_the_model(worker, tiny, wide, reference_dir) -> None:
    evaluator = _evaluator(worker, reference_dir)
    small = evaluator.latency(tiny.artifact, HOST, tiny.inputs)
    large = evaluator.latency(wide.artifact, HOST, wide.inputs)
    assert 0 < small.memory_peak_bytes < large.memory_peak_bytes
    # the large model's weights are resident while it runs: at least their size is attributed to it
    assert large.memory_peak_bytes - small.memory_peak_bytes > 0.5 * (wide.artifact.size_bytes - tiny.artifact.size_bytes)
    assert large.memory_peak_bytes < large.memory_process_peak_bytes
    assert "fresh process" in large.memory_method
    limited = dataclasses.replace(HOST, memory_limit_bytes=small.memory_peak_bytes + 1)
    over = evaluator.latency(wide.artifact, limited, wide.inputs)
    assert over.memory_limit_bytes == small.memory_peak_bytes + 1 and over.memory_over_limit_bytes > 0


def test_a_cache_hit_is_reused_across_evaluators_and_recorded(worker, tiny, reference_dir, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = _evaluator(worker, reference_dir, url=url).latency(tiny.artifact, HOST, tiny.inputs)
    assert not first.cache_hit and first.cache_key is not None
    # another evaluator (another trial, study or worker process) on the same storage
    started = time.perf_counter()
    again = _evaluator(worker, reference_dir, url=url).latency(tiny.artifact, HOST, tiny.inputs)
    assert again.cache_hit and again.cache_key == first.cache_key
    assert again.latency_ms == first.latency_ms and again.measured_at == first.measured_at
    assert again.seconds <= time.perf_counter() - started
    assert len(LatencyCache(url)) == 1


def test_the_cache_never_crosses_devices_threads_or_runtimes(worker, tiny, reference_dir, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    evaluator = _evaluator(worker, reference_dir, url=url)
    evaluator.latency(tiny.artifact, HOST, tiny.inputs)
    two_threads = evaluator.latency(tiny.artifact, dataclasses.replace(HOST, threads=2), tiny.inputs)
    renamed = evaluator.latency(tiny.artifact, dataclasses.replace(HOST, id="host-x86-copy"), tiny.inputs)
    assert not two_threads.cache_hit and not renamed.cache_hit
    assert len(LatencyCache(url)) == 3
    key = CacheKey("h" * 64, "phone", "adb:A", "arm", "benchmark_bin sha256:1", 4, "high")
    variants = [
        dataclasses.replace(key, **{field: value})
        for field, value in [
            ("artifact_hash", "g" * 64), ("device_id", "phone2"), ("physical_device", "adb:B"), ("places", "opencl,arm"),
            ("runtime", "benchmark_bin sha256:2"), ("threads", 2), ("power_mode", "low"),
        ]
    ]
    assert len({key.digest(), *(v.digest() for v in variants)}) == 8
    assert CacheKey(*dataclasses.astuple(key)).digest() == key.digest()


def test_only_fresh_measurements_go_into_the_cache(tmp_path) -> None:
    cache = LatencyCache(f"sqlite:///{tmp_path / 'study.db'}")
    key = CacheKey("h" * 64, "phone", "adb:A", "arm", "r", 1, "high")
    result = LatencyResult("phone", 1.0, "measured", "min-of-runs", 1, 1, 0, 5, 1, 0.1, 10)
    cache.put(key, result)
    assert cache.get(key) == result
    with pytest.raises(ValueError, match="only fresh measurements"):
        cache.put(key, dataclasses.replace(result, cache_hit=True))
    with pytest.raises(ValueError, match="only fresh measurements"):
        cache.put(key, dataclasses.replace(result, source="predicted", calibrated=True))


def test_an_old_record_without_the_new_fields_still_loads() -> None:
    stored = {
        "device_id": "host-x86", "latency_ms": 1.5, "source": "measured", "statistic": "min-of-block-medians",
        "p10_ms": 1.4, "p90_ms": 2.0, "cv": 0.1, "repeats": 250, "threads": 1, "seconds": 3.0, "model_bytes": 1000,
    }
    result = LatencyResult(**stored)
    assert result.cache_hit is False and result.memory_peak_bytes is None and result.memory_over_limit_bytes is None
    assert LatencyResult(**result.to_dict()) == result


def test_the_host_is_leased_like_any_device(worker, tiny, reference_dir, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    other_worker = DeviceLeases(url).acquire(f"local:{socket.gethostname()}", "host-x86")
    evaluator = _evaluator(worker, reference_dir, url=url, wait=0.5)
    with pytest.raises(DeviceBusyError, match=f"busy: held by {socket.gethostname()}:{os.getpid()}:"):
        evaluator.latency(tiny.artifact, HOST, tiny.inputs)
    other_worker.release()
    assert evaluator.latency(tiny.artifact, HOST, tiny.inputs).latency_ms > 0
    assert DeviceLeases(url).holder_of(f"local:{socket.gethostname()}") is None  # released after measuring


def test_the_factories_wire_runners_for_every_reach(worker, reference_dir, tmp_path) -> None:
    full = default_latency(worker, QUICK, storage_url=f"sqlite:///{tmp_path / 's.db'}", reference_dir=reference_dir)
    assert sorted(full.runners) == ["adb", "local", "ssh"] and full.leases is not None and full.cache is not None
    local = host_latency(worker, QUICK, reference_dir=reference_dir)
    assert sorted(local.runners) == ["local"] and local.leases is None and local.cache is None
