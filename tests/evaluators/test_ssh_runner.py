"""The ARM-board runner end to end through the fake ssh/scp (see tests/fakes/fake_ssh.py).

The "board" is this machine with a sandbox home folder: devicefit's Lite worker script is really copied
there, really started through the fake ssh with the board's Python (the Lite interpreter), and really times
the copied .nb over the ssh pipes; the session folder is removed afterwards.
"""

from __future__ import annotations

import dataclasses

import pytest

from devicefit.evaluators._errors import DeviceGoneError, DeviceUnavailableError, MeasurementTimeout
from devicefit.evaluators._latency import MeasuredLatency
from devicefit.evaluators._reference import ReferenceSource
from devicefit.evaluators._ssh import SshRunner

from .conftest import QUICK


def _runner(fake_board) -> SshRunner:
    return SshRunner(str(fake_board.ssh), str(fake_board.scp), connect_timeout_seconds=5)


def _evaluator(worker, fake_board, reference_dir, settings=QUICK) -> MeasuredLatency:
    return MeasuredLatency(worker, {"ssh": _runner(fake_board)}, settings, reference=ReferenceSource(reference_dir))


def test_a_board_is_measured_by_the_worker_copied_there(worker, fake_board, tiny, reference_dir) -> None:
    settings = dataclasses.replace(QUICK, reference=True, blocks=2, max_blocks=2)
    result = _evaluator(worker, fake_board, reference_dir, settings).latency(
        tiny.artifact, fake_board.profile(threads=2), tiny.inputs
    )
    assert result.runner == "ssh" and result.source == "measured"
    assert result.statistic == "min-of-runs" and result.spread_basis == "runs"  # per-run times
    assert result.blocks == 2 and result.repeats > 0 and result.threads == 2
    assert result.runtime.startswith("paddlelite 2.13rc0") and "x86_64" in result.runtime
    assert result.reference_ratio is not None and result.reference_ratio > 0
    assert result.power_mode is None  # the x86 Paddle Lite on this "board" has no power modes
    assert result.memory_peak_bytes is not None and 0 < result.memory_peak_bytes < result.memory_process_peak_bytes
    assert fake_board.files_left() == []  # worker script, models and inputs are gone


def test_check_says_when_the_board_does_not_answer(fake_board) -> None:
    runner = _runner(fake_board)
    runner.check(fake_board.profile())
    fake_board.set_state(hosts=[])
    with pytest.raises(DeviceUnavailableError, match="cannot reach board-1 while connecting: ssh: connect to host"):
        runner.check(fake_board.profile())


def test_a_board_without_paddlelite_is_unavailable(worker, fake_board, tiny, reference_dir) -> None:
    import sys

    profile = fake_board.profile(python=sys.executable)  # CPython 3.11 here has no paddlelite
    with pytest.raises(DeviceUnavailableError, match="did not start on board-1 .*does it import paddlelite"):
        _evaluator(worker, fake_board, reference_dir).latency(tiny.artifact, profile, tiny.inputs)
    assert fake_board.files_left() == []


def test_a_dropped_connection_is_the_board_going_away(worker, fake_board, tiny, reference_dir) -> None:
    # hello, then the first timed block: the connection drops on the third request line
    fake_board.set_state(drop_after_requests=2)
    with pytest.raises(DeviceGoneError, match="connection to board-1 was lost while timing candidate"):
        _evaluator(worker, fake_board, reference_dir).latency(tiny.artifact, fake_board.profile(), tiny.inputs)
    assert fake_board.files_left() == []  # cleaned up over a new connection


def test_an_unreachable_board_fails_the_measurement(worker, fake_board, tiny, reference_dir) -> None:
    fake_board.set_state(hosts=[])
    with pytest.raises(DeviceGoneError, match="cannot reach board-1"):
        _evaluator(worker, fake_board, reference_dir).latency(tiny.artifact, fake_board.profile(), tiny.inputs)


def test_a_hanging_step_is_bounded(fake_board) -> None:
    runner = _runner(fake_board)
    with pytest.raises(MeasurementTimeout, match="took more than 2 s"):
        runner.remote(fake_board.profile(), "sleep 600", "sleeping", timeout_seconds=2)
