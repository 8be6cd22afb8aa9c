"""Statistics of timed runs: pure functions of numbers, testable without a device.

Why these statistics (STACK-NOTES.md, "Latency on this host is noisy"): on a shared host the noise comes in
bursts longer than a block of runs, so a plain median from one process does not repeat in the next one.
What repeated was (a) the smallest of the block medians, a floor that a quiet moment reaches again and
again, and (b) the ratio of a model's block to a reference model's block measured right next to it in the
same process, because a burst slows both. The protocol (``_protocol.py``) reports both, and uses the
functions here to decide when a measurement is stable.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

#: ``latency_ms`` is the smallest block median (blocks with per-run times).
MIN_OF_BLOCK_MEDIANS = "min-of-block-medians"
#: ``latency_ms`` is the smallest block mean (a tool that reports only each block's average).
MIN_OF_BLOCK_MEANS = "min-of-block-means"


@dataclasses.dataclass(frozen=True)
class BlockTiming:
    """One block of consecutive timed runs of one model.

    Either the per-run times are known (the Lite worker reports them), or only the block's mean, minimum and
    maximum (Paddle Lite's ``benchmark_bin`` prints just those).

    Attributes:
        runs: Timed runs in the block.
        mean_ms: Mean wall time of a run, in ms.
        min_ms: Fastest run, in ms.
        max_ms: Slowest run, in ms.
        times_ms: Each run's wall time in ms, in run order, or None when the device's tool does not report them.
    """

    runs: int
    mean_ms: float
    min_ms: float
    max_ms: float
    times_ms: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        figures = (self.mean_ms, self.min_ms, self.max_ms, *(self.times_ms or ()))
        if self.runs < 1 or not all(math.isfinite(v) and v > 0 for v in figures):
            raise ValueError(f"a block needs >= 1 run and positive, finite times in ms: {self}")
        if self.times_ms is not None and len(self.times_ms) != self.runs:
            raise ValueError(f"a block of {self.runs} runs has {len(self.times_ms)} times")

    @classmethod
    def from_times(cls, times_ms: Sequence[float]) -> BlockTiming:
        """A block from per-run times (ms)."""
        times = tuple(float(t) for t in times_ms)
        if not times:
            raise ValueError("a block needs at least one timed run")
        return cls(len(times), float(np.mean(times)), min(times), max(times), times)

    @property
    def figure_ms(self) -> float:
        """The block's central figure in ms: the median of its runs, or its mean when runs are unknown."""
        if self.times_ms is not None:
            return float(np.median(self.times_ms))
        return self.mean_ms


def block_statistic(blocks: Sequence[BlockTiming]) -> str:
    """The name of the statistic :func:`summarize_blocks` reports for these blocks."""
    return MIN_OF_BLOCK_MEDIANS if all(b.times_ms is not None for b in blocks) else MIN_OF_BLOCK_MEANS


def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """0-based ranks ``(low, high)`` of the sorted values that bound a distribution-free CI of the median.

    The interval ``[x_(k), x_(n+1-k)]`` (1-based order statistics) covers the median with probability
    ``1 - 2 P(B <= k - 1)``, ``B ~ Binomial(n, 1/2)``; the largest ``k`` that keeps the coverage at least
    ``confidence`` is used. It assumes independent values, so the protocol applies it to block figures, not
    to single runs (consecutive runs share the same burst of noise).

    Returns:
        The ranks, or None when ``n`` is too small for any interval at that confidence (n < 6 at 95%).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tail = (1.0 - confidence) / 2.0
    cumulative = 0.0
    k = 0
    for j in range(n + 1):
        cumulative += math.comb(n, j) / 2.0**n
        if cumulative > tail:
            break
        k = j + 1
    if k == 0:
        return None
    return k - 1, n - k


def median_ci_half_width_pct(values: Sequence[float], confidence: float = 0.95) -> float | None:
    """The larger side of the median's distribution-free CI, in percent of the median.

    Returns:
        ``max(median - low, high - median) / median * 100``, or None when there are too few values.
    """
    ranks = median_ci_ranks(len(values), confidence)
    if ranks is None:
        return None
    ordered = np.sort(np.asarray(values, dtype=float))
    median = float(np.median(ordered))
    low, high = float(ordered[ranks[0]]), float(ordered[ranks[1]])
    return max(median - low, high - median) / median * 100.0


def floor_spread_pct(values: Sequence[float]) -> float | None:
    """How far the second-smallest value is above the smallest, in percent (None for fewer than 2 values).

    The smallest block figure is the reported latency; a small spread means that floor was reached more
    than once, not by one lucky block.
    """
    if len(values) < 2:
        return None
    ordered = np.sort(np.asarray(values, dtype=float))
    return (float(ordered[1]) / float(ordered[0]) - 1.0) * 100.0


@dataclasses.dataclass(frozen=True)
class BlockSummary:
    """Figures of one model's blocks (see :func:`summarize_blocks`).

    Attributes:
        latency_ms: The smallest block figure, in ms (the decision figure; see ``statistic``).
        statistic: :data:`MIN_OF_BLOCK_MEDIANS` or :data:`MIN_OF_BLOCK_MEANS`.
        median_ms: Median over ``spread_basis``, in ms.
        p10_ms: 10th percentile over ``spread_basis``, in ms.
        p90_ms: 90th percentile over ``spread_basis``, in ms.
        cv: Coefficient of variation over ``spread_basis``.
        spread_basis: ``runs`` (per-run times) or ``block-means``.
        repeats: Timed runs in all.
        blocks: Blocks.
        floor_spread_pct: :func:`floor_spread_pct` of the block figures.
        block_ci_half_width_pct: :func:`median_ci_half_width_pct` of the block figures.
    """

    latency_ms: float
    statistic: str
    median_ms: float
    p10_ms: float
    p90_ms: float
    cv: float
    spread_basis: str
    repeats: int
    blocks: int
    floor_spread_pct: float | None
    block_ci_half_width_pct: float | None


def summarize_blocks(blocks: Sequence[BlockTiming]) -> BlockSummary:
    """Summarize the blocks of one model.

    Raises:
        ValueError: No blocks.
    """
    if not blocks:
        raise ValueError("no blocks to summarize")
    figures = [b.figure_ms for b in blocks]
    per_run = all(b.times_ms is not None for b in blocks)
    if per_run:
        spread = np.concatenate([np.asarray(b.times_ms, dtype=float) for b in blocks])
        basis = "runs"
    else:
        spread = np.asarray([b.mean_ms for b in blocks], dtype=float)
        basis = "block-means"
    return BlockSummary(
        latency_ms=min(figures),
        statistic=block_statistic(blocks),
        median_ms=float(np.median(spread)),
        p10_ms=float(np.percentile(spread, 10)),
        p90_ms=float(np.percentile(spread, 90)),
        cv=float(np.std(spread) / np.mean(spread)),
        spread_basis=basis,
        repeats=sum(b.runs for b in blocks),
        blocks=len(blocks),
        floor_spread_pct=floor_spread_pct(figures),
        block_ci_half_width_pct=median_ci_half_width_pct(figures),
    )


def pair_ratios(candidate: Sequence[BlockTiming], reference: Sequence[BlockTiming]) -> list[float]:
    """Per interleaved pair: the candidate block's figure over the reference block's figure.

    Raises:
        ValueError: The two sequences do not pair up.
    """
    if len(candidate) != len(reference):
        raise ValueError(f"{len(candidate)} candidate blocks cannot pair with {len(reference)} reference blocks")
    return [c.figure_ms / r.figure_ms for c, r in zip(candidate, reference)]


def summarize_runs_ms(times_ms: Sequence[float], runs_per_block: int) -> dict[str, float]:
    """Robust statistics of timed runs cut into consecutive blocks (kept for callers of the first API).

    Returns:
        ``latency_ms`` (smallest block median), ``median_ms``, ``p10_ms``, ``p90_ms`` and ``cv`` over all runs.
    """
    times = [float(t) for t in times_ms]
    if not times or runs_per_block < 1:
        raise ValueError("timed runs must be a non-empty list of positive, finite milliseconds")
    blocks = [BlockTiming.from_times(times[i : i + runs_per_block]) for i in range(0, len(times), runs_per_block)]
    summary = summarize_blocks(blocks)
    return {
        "latency_ms": summary.latency_ms,
        "median_ms": summary.median_ms,
        "p10_ms": summary.p10_ms,
        "p90_ms": summary.p90_ms,
        "cv": summary.cv,
    }
