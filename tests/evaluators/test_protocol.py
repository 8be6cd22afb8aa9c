"""The measurement protocol and its statistics, on numbers chosen to make each decision go one way or the other."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from devicefit.evaluators._protocol import MeasureSettings, assess, run_protocol
from devicefit.evaluators._stats import (
    BlockTiming,
    floor_spread_pct,
    median_ci_half_width_pct,
    median_ci_ranks,
    summarize_blocks,
)

SETTINGS = MeasureSettings(
    warmup=7, blocks=6, runs_per_block=4, min_block_ms=0.0, max_blocks=10, block_warmup=1, remeasures=1,
    remeasure_pause_seconds=3.0,
)


def _coverage(n: int, low: int, high: int) -> float:
    """P(x_(low) <= median <= x_(high)) for 0-based ranks, by the binomial distribution."""
    k = low + 1
    tail = sum(math.comb(n, j) for j in range(k)) / 2**n
    assert high == n - k
    return 1 - 2 * tail


@pytest.mark.parametrize("n", range(1, 40))
def test_median_ci_ranks_are_the_tightest_with_95_percent_coverage(n: int) -> None:
    ranks = median_ci_ranks(n)
    if n < 6:
        assert ranks is None
        return
    assert ranks is not None
    low, high = ranks
    assert _coverage(n, low, high) >= 0.95
    if low + 1 <= (n - 1) // 2:  # one rank tighter would fall below 95%
        assert _coverage(n, low + 1, high - 1) < 0.95


def test_ci_half_width_and_floor_spread() -> None:
    assert median_ci_half_width_pct([1.0] * 5) is None
    assert median_ci_half_width_pct([100, 101, 99, 100, 102, 100]) == pytest.approx(2.0)
    assert floor_spread_pct([5.0, 6.0]) is None  # fewer blocks than the 3 that must reach the floor
    assert floor_spread_pct([2.0, 1.0, 1.01, 3.0]) == pytest.approx(100.0)
    assert floor_spread_pct([2.0, 1.0, 1.01, 3.0], blocks=2) == pytest.approx(1.0)


def test_blocks_summarize_per_run_times_or_block_means() -> None:
    runs = summarize_blocks([BlockTiming.from_times([1.5, 2, 3]), BlockTiming.from_times([2, 2, 9])])
    assert runs.latency_ms == 1.5 and runs.statistic == "min-of-runs" and runs.spread_basis == "runs"
    assert runs.median_ms == 2.0 and runs.repeats == 6 and runs.blocks == 2
    assert runs.p10_ms == pytest.approx(1.75) and runs.p90_ms == pytest.approx(6.0)
    means = summarize_blocks([BlockTiming(10, 3.0, 1.0, 9.0), BlockTiming(10, 4.0, 2.0, 5.0)])
    assert means.latency_ms == 1.0 and means.statistic == "min-of-runs" and means.spread_basis == "block-means"
    assert means.repeats == 20 and means.median_ms == 3.5
    with pytest.raises(ValueError):
        BlockTiming.from_times([1.0, 0.0])
    with pytest.raises(ValueError):
        BlockTiming(3, 1.0, 1.0, 1.0, (1.0, 1.0))


def _blocks(figures) -> list[BlockTiming]:
    return [BlockTiming.from_times([f] * 3) for f in figures]


def test_assess_asks_for_a_confirmed_floor_and_a_stable_median() -> None:
    reference = _blocks([1.0, 2.0, 1.5, 1.0, 3.0, 1.0])  # wild: the host is noisy ...
    candidate = _blocks([2.0, 4.0, 3.0, 2.0, 6.0, 2.0])  # ... but the candidate moves with it
    verdict = assess(candidate, reference, SETTINGS)
    assert verdict.stable and verdict.ci_half_width_pct == 0 and verdict.floor_spread_pct == 0
    assert verdict.reference_ratio == pytest.approx(2.0)  # fastest over fastest
    alone = assess(candidate, [], SETTINGS)  # without the reference the same medians are far from stable
    assert not alone.stable and alone.ci_half_width_pct > 40 and alone.floor_spread_pct == 0
    # steady medians, but only one block ever ran at 2.0: the floor is not confirmed
    lucky = [BlockTiming.from_times([2.0, 2.2, 2.2])] + _blocks([2.2] * 5)
    verdict = assess(lucky, [], SETTINGS)
    assert not verdict.stable and verdict.ci_half_width_pct == 0 and verdict.floor_spread_pct == pytest.approx(10)
    assert not assess(_blocks([2.0] * 5), [], SETTINGS).stable  # fewer blocks than settings.blocks


def test_preempted_runs_leave_the_fastest_run_but_mark_the_measurement_noisy() -> None:
    # Like this host under load: in every block a few runs are undisturbed (0.50 ms), most are preempted.
    rng = np.random.default_rng(1)
    blocks = [
        BlockTiming.from_times(np.concatenate([[0.50, 0.501, 0.502], rng.uniform(0.6, 5.0, 47)]).tolist())
        for _ in range(12)
    ]
    verdict = assess(blocks, [], SETTINGS)
    assert verdict.floor_spread_pct < 1 and verdict.ci_half_width_pct > SETTINGS.target_ci_pct and not verdict.stable
    assert summarize_blocks(blocks).latency_ms == 0.50


class ScriptedDevice:
    """Times blocks from a list of figures per model and records what the protocol asked for."""

    def __init__(self, figures: dict[str, list[float]]) -> None:
        self.figures = {name: list(values) for name, values in figures.items()}
        self.calls: list[tuple[str, int, int]] = []

    def time_block(self, model: str, warmup: int, runs: int) -> BlockTiming:
        self.calls.append((model, warmup, runs))
        return BlockTiming.from_times([self.figures[model].pop(0)] * runs)


def test_a_quiet_device_stops_at_the_first_stable_check_in_abba_order() -> None:
    device = ScriptedDevice({"cand": [2.0] * 20, "ref": [1.0] * 20})
    sleeps: list[float] = []
    outcome = run_protocol(device.time_block, "cand", "ref", SETTINGS, sleep=sleeps.append)
    assert outcome.assessment.stable and not outcome.noisy and outcome.rounds == 1 and sleeps == []
    assert len(outcome.candidate_blocks) == 6 and len(outcome.reference_blocks) == 6
    order = [model for model, _, _ in device.calls]
    assert order[:8] == ["cand", "ref", "ref", "cand", "cand", "ref", "ref", "cand"]
    warmups = {model: [w for m, w, _ in device.calls if m == model] for model in ("cand", "ref")}
    assert warmups["cand"] == [7, 1, 1, 1, 1, 1] and warmups["ref"][0] == 7
    assert outcome.summary.latency_ms == 2.0 and outcome.assessment.reference_ratio == 2.0
    assert outcome.reference_summary is not None and outcome.reference_summary.latency_ms == 1.0


def test_blocks_are_lengthened_to_last_min_block_ms() -> None:
    settings = dataclasses.replace(SETTINGS, min_block_ms=50.0, max_runs_per_block=1000)
    device = ScriptedDevice({"cand": [0.1] * 20})
    run_protocol(device.time_block, "cand", None, settings)
    runs = [r for _, _, r in device.calls]
    assert runs[0] == 4 and set(runs[1:]) == {500}
    capped = ScriptedDevice({"cand": [0.001] * 20})
    run_protocol(capped.time_block, "cand", None, settings)
    assert {r for _, _, r in capped.calls[1:]} == {1000}


def test_a_noisy_device_is_remeasured_then_flagged() -> None:
    rng = np.random.default_rng(0)
    figures = list(rng.uniform(1, 3, 40))
    device = ScriptedDevice({"cand": figures})
    sleeps: list[float] = []
    outcome = run_protocol(device.time_block, "cand", None, SETTINGS, sleep=sleeps.append)
    assert outcome.noisy and outcome.rounds == 2 and sleeps == [3.0]
    assert len(outcome.candidate_blocks) == 10 and len(device.calls) == 20  # max_blocks per round
    assert outcome.assessment.ci_half_width_pct > SETTINGS.target_ci_pct
    # the reported round is the tighter of the two
    per_round = [median_ci_half_width_pct(figures[:10]), median_ci_half_width_pct(figures[10:20])]
    assert outcome.assessment.ci_half_width_pct == pytest.approx(min(per_round))


def test_a_noisy_round_can_be_rescued_by_the_second() -> None:
    noisy_then_quiet = [3.0, 1.0, 2.5, 1.4, 2.8, 1.9, 2.2, 1.6, 2.9, 1.2] + [1.1] * 30
    device = ScriptedDevice({"cand": noisy_then_quiet})
    outcome = run_protocol(device.time_block, "cand", None, dataclasses.replace(SETTINGS, remeasure_pause_seconds=0))
    # a noisy round of 10 blocks; the second round is judged on its own quiet blocks and reported
    assert outcome.rounds == 2 and outcome.assessment.stable and not outcome.noisy
    assert len(outcome.candidate_blocks) == 6 and outcome.summary.latency_ms == pytest.approx(1.1)
    warmups = [w for _, w, _ in device.calls]
    assert warmups[0] == warmups[10] == 7  # each round warms up anew


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError):
        MeasureSettings(blocks=5, max_blocks=4)
    with pytest.raises(ValueError):
        MeasureSettings(target_ci_pct=0)
    assert MeasureSettings(warmup=2, blocks=2, runs_per_block=5).repeats == 10  # the first API's arguments
