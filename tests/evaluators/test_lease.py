"""Device leases in the study's database: exclusive across processes, expiring, bounded waits, typed errors.

Every test runs on both storages a study can have: a SQLite file, and a real PostgreSQL server (a throwaway
cluster of tests/support/postgres.py, as the distributed-search tests use).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from devicefit.evaluators._errors import DeviceBusyError, LeaseLostError
from devicefit.evaluators._lease import DeviceLeases
from tests.support.postgres import ThrowawayPostgres


@pytest.fixture(scope="module")
def postgres():
    with ThrowawayPostgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres").url


@pytest.fixture
def phone() -> str:
    """A device key no other test uses (the PostgreSQL database is shared by the module's tests)."""
    return f"adb:PHONE-{secrets.token_hex(4)}"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_held_device_is_not_given_twice_but_another_device_is(url, phone) -> None:
    leases = DeviceLeases(url)
    lease = leases.try_acquire(phone, "sd865")
    assert lease is not None
    assert leases.try_acquire(phone, "sd865-gpu") is None  # the same phone through another profile
    other = leases.try_acquire(phone + "-other", "pixel")
    assert other is not None
    assert leases.holder_of(phone)[0] == lease.holder
    lease.release()
    other.release()
    assert leases.holder_of(phone) is None
    again = leases.try_acquire(phone)
    assert again is not None and again.holder != lease.holder
    again.release()


def test_an_expired_lease_is_taken_over_and_its_old_holder_learns_it(url, phone) -> None:
    clock = Clock()
    first = DeviceLeases(url, ttl_seconds=10, clock=clock)
    second = DeviceLeases(url, ttl_seconds=10, clock=clock)
    old = first.try_acquire(phone)
    clock.now += 5
    assert second.try_acquire(phone) is None
    old.keepalive()  # a third of the ttl has passed: renewed until now + 10
    clock.now += 9
    assert second.try_acquire(phone) is None  # renewed, so not expired yet
    clock.now += 2
    new = second.try_acquire(phone)
    assert new is not None
    clock.now += 4
    with pytest.raises(LeaseLostError, match="taken over during the measurement"):
        old.keepalive()
    old.release()  # releasing a lost lease leaves the new holder's row alone
    assert first.holder_of(phone)[0] == new.holder
    new.release()


def test_waiting_is_bounded_and_names_the_holder(url, phone) -> None:
    leases = DeviceLeases(url, poll_seconds=0.05)
    holder = leases.acquire(phone, "sd865")
    started = time.monotonic()
    with pytest.raises(DeviceBusyError, match=rf"{phone} is busy: held by .*:\d+:") as caught:
        leases.acquire(phone, "sd865", wait_seconds=0.5)
    assert 0.5 <= time.monotonic() - started < 10
    assert caught.value.holder == holder.holder and caught.value.waited_seconds >= 0.5
    holder.release()
    with leases.hold(phone + "-2") as lease:  # the context manager releases
        assert lease.holder
    assert leases.holder_of(phone + "-2") is None


WORKER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from devicefit.evaluators._lease import DeviceLeases
    url, key, rounds, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    leases = DeviceLeases(url, ttl_seconds=30, wait_seconds=120, poll_seconds=0.02)
    spans = []
    for _ in range(rounds):
        with leases.hold(key, "phone"):
            start = time.time()
            time.sleep(0.15)
            spans.append((start, time.time()))
    with open(out, "w") as handle:
        json.dump(spans, handle)
    """
)


def test_processes_contending_for_one_phone_measure_one_at_a_time(url, phone, tmp_path) -> None:
    script = tmp_path / "contend.py"
    script.write_text(WORKER_SCRIPT)
    DeviceLeases(url).holder_of(phone)  # create the table before the stampede
    outputs = [tmp_path / f"spans{i}.json" for i in range(4)]
    processes = [subprocess.Popen([sys.executable, str(script), url, phone, "3", str(out)]) for out in outputs]
    for process in processes:
        assert process.wait(timeout=180) == 0
    spans = sorted(tuple(span) for out in outputs for span in json.loads(out.read_text()))
    assert len(spans) == 12
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, "two processes held the same phone at once"


def test_a_dead_worker_does_not_hold_the_phone_forever(url, phone, tmp_path) -> None:
    script = tmp_path / "hold_and_die.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time
            from devicefit.evaluators._lease import DeviceLeases
            lease = DeviceLeases(sys.argv[1], ttl_seconds=5).acquire(sys.argv[2])
            print("HELD", flush=True)
            time.sleep(600)
            """
        )
    )
    holder = subprocess.Popen([sys.executable, str(script), url, phone], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "HELD"
        os.kill(holder.pid, signal.SIGKILL)  # dies without releasing
        holder.wait(timeout=30)
        leases = DeviceLeases(url, ttl_seconds=5, poll_seconds=0.1)
        assert leases.try_acquire(phone) is None  # still within its ttl
        lease = leases.acquire(phone, wait_seconds=30)
        assert lease.holder.split(":")[1] == str(os.getpid())
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)


def test_the_cache_round_trips_on_both_storages(url, phone) -> None:
    import dataclasses

    from devicefit.evaluators._cache import CacheKey, LatencyCache
    from devicefit.evaluators._types import LatencyResult

    cache = LatencyCache(url)
    key = CacheKey("h" * 64, "phone", phone, "arm", "benchmark_bin sha256:1", 4, "high")
    assert cache.get(key) is None
    result = LatencyResult(
        "phone", 2.5, "measured", "min-of-runs", 2.5, 3.0, 0.1, 100, 4, 1.0, 1000,
        nnadapter_ops={"matmul_v2": 4}, cpu_fallback_ops={"layer_norm": 2},
    )
    cache.put(key, result)
    cache.put(key, dataclasses.replace(result, latency_ms=2.4))  # a newer measurement replaces the old one
    assert cache.get(key) == dataclasses.replace(result, latency_ms=2.4)
    assert LatencyCache(url).get(dataclasses.replace(key, threads=2)) is None
