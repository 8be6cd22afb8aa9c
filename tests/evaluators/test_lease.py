"""Device leases in the study's database: exclusive across processes, expiring, bounded waits, typed errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from devicefit.evaluators._errors import DeviceBusyError, LeaseLostError
from devicefit.evaluators._lease import DeviceLeases


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


def test_a_held_device_is_not_given_twice_but_another_device_is(tmp_path) -> None:
    leases = DeviceLeases(_url(tmp_path))
    lease = leases.try_acquire("adb:PHONE1", "sd865")
    assert lease is not None
    assert leases.try_acquire("adb:PHONE1", "sd865-gpu") is None  # the same phone through another profile
    other = leases.try_acquire("adb:PHONE2", "pixel")
    assert other is not None
    assert leases.holder_of("adb:PHONE1")[0] == lease.holder
    lease.release()
    assert leases.holder_of("adb:PHONE1") is None
    again = leases.try_acquire("adb:PHONE1")
    assert again is not None and again.holder != lease.holder


def test_an_expired_lease_is_taken_over_and_its_old_holder_learns_it(tmp_path) -> None:
    clock = Clock()
    first = DeviceLeases(_url(tmp_path), ttl_seconds=10, clock=clock)
    second = DeviceLeases(_url(tmp_path), ttl_seconds=10, clock=clock)
    old = first.try_acquire("ssh:board")
    clock.now += 5
    assert second.try_acquire("ssh:board") is None
    old.keepalive()  # a third of the ttl has passed: renewed until now + 10
    clock.now += 9
    assert second.try_acquire("ssh:board") is None  # renewed, so not expired yet
    clock.now += 2
    new = second.try_acquire("ssh:board")
    assert new is not None
    clock.now += 4
    with pytest.raises(LeaseLostError, match="taken over during the measurement"):
        old.keepalive()
    old.release()  # releasing a lost lease leaves the new holder's row alone
    assert first.holder_of("ssh:board")[0] == new.holder


def test_waiting_is_bounded_and_names_the_holder(tmp_path) -> None:
    leases = DeviceLeases(_url(tmp_path), poll_seconds=0.05)
    holder = leases.acquire("adb:PHONE1", "sd865")
    started = time.monotonic()
    with pytest.raises(DeviceBusyError, match=r"adb:PHONE1 is busy: held by .*:\d+:") as caught:
        leases.acquire("adb:PHONE1", "sd865", wait_seconds=0.5)
    assert 0.5 <= time.monotonic() - started < 10
    assert caught.value.holder == holder.holder and caught.value.waited_seconds >= 0.5
    with leases.hold("adb:PHONE2") as lease:  # the context manager releases
        assert lease.holder
    assert leases.holder_of("adb:PHONE2") is None


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


def test_processes_contending_for_one_phone_measure_one_at_a_time(tmp_path) -> None:
    script = tmp_path / "contend.py"
    script.write_text(WORKER_SCRIPT)
    url = _url(tmp_path)
    DeviceLeases(url).holder_of("adb:PHONE1")  # create the table before the stampede
    outputs = [tmp_path / f"spans{i}.json" for i in range(4)]
    processes = [
        subprocess.Popen([sys.executable, str(script), url, "adb:PHONE1", "3", str(out)]) for out in outputs
    ]
    for process in processes:
        assert process.wait(timeout=180) == 0
    spans = sorted(tuple(span) for out in outputs for span in json.loads(out.read_text()))
    assert len(spans) == 12
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, "two processes held the same phone at once"


def test_a_dead_worker_does_not_hold_the_phone_forever(tmp_path) -> None:
    url = _url(tmp_path)
    script = tmp_path / "hold_and_die.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, time
            from devicefit.evaluators._lease import DeviceLeases
            lease = DeviceLeases(sys.argv[1], ttl_seconds=5).acquire("adb:PHONE1")
            print("HELD", flush=True)
            time.sleep(600)
            """
        )
    )
    holder = subprocess.Popen([sys.executable, str(script), url], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "HELD"
        os.kill(holder.pid, signal.SIGKILL)  # dies without releasing
        holder.wait(timeout=30)
        leases = DeviceLeases(url, ttl_seconds=5, poll_seconds=0.1)
        assert leases.try_acquire("adb:PHONE1") is None  # still within its ttl
        lease = leases.acquire("adb:PHONE1", wait_seconds=30)
        assert lease.holder.split(":")[1] == str(os.getpid())
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
