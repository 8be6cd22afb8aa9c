"""Statistics of timed runs: pure functions of numbers, testable without a device.

Why these statistics. STACK-NOTES.md ("Latency on this host is noisy") found that plain medians from
separate processes cannot rank candidates on this shared host, while the minimum of block medians and the
ratio to an interleaved reference were steadier. Measured again for this module (digits-vit teacher, 0.5 ms,
6 separate processes x 30 blocks of 100 runs, load 4.2-4.7 on 2 CPUs), the spread across processes was:

    plain median of all runs          +-8 .. 34 %
    minimum of block medians          +-15 %
    median of pair ratios (reference) +-3 .. 7 %
    minimum of all runs               +-0.3 %      (first 6 blocks only: +-0.4 .. 0.7 %)
    ratio of minima (reference)       +-0.2 %

The noise here is preemption by other processes: it only ever adds time, and once more than half a block's
runs are hit, that block's median moves. The minimum over many runs is the run that nothing disturbed, and
it repeats (as Chen and Revels argue for benchmarking in noisy environments, 2016). So the decision figure
is the minimum of the timed runs (``min-of-runs``), confirmed when several separate blocks reach it; the
median and percentiles are reported beside it, and a median whose confidence interval stays wide marks the
measurement as noisy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

#: ``latency_ms`` is the fastest timed run (every runner reports it: benchmark_bin prints each block's min).
MIN_OF_RUNS = "min-of-runs"


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


def floor_spread_pct(block_minima: Sequence[float], blocks: int = 3) -> float | None:
    """How far the ``blocks``-th smallest block minimum is above the smallest one, in percent.

    The smallest is the reported latency; a small spread means that ``blocks`` separate blocks reached
    that floor, not one lucky run. None when there are fewer blocks than that.
    """
    if blocks < 1 or len(block_minima) < blocks:
        return None
    ordered = np.sort(np.asarray(block_minima, dtype=float))
    return (float(ordered[blocks - 1]) / float(ordered[0]) - 1.0) * 100.0


@dataclasses.dataclass(frozen=True)
class BlockSummary:
    """Figures of one model's blocks (see :func:`summarize_blocks`).

    Attributes:
        latency_ms: The fastest timed run, in ms (the decision figure; see the module docstring).
        statistic: :data:`MIN_OF_RUNS`.
        median_ms: Median over ``spread_basis``, in ms.
        p10_ms: 10th percentile over ``spread_basis``, in ms.
        p90_ms: 90th percentile over ``spread_basis``, in ms.
        cv: Coefficient of variation over ``spread_basis``.
        spread_basis: ``runs`` (per-run times) or ``block-means``.
        repeats: Timed runs in all.
        blocks: Blocks.
        floor_spread_pct: :func:`floor_spread_pct` of the block minima (3 blocks).
        block_ci_half_width_pct: :func:`median_ci_half_width_pct` of the block figures (medians, or means).
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


def summarize_blocks(blocks: Sequence[BlockTiming], floor_blocks: int = 3) -> BlockSummary:
    """Summarize the blocks of one model (``floor_blocks``: see :func:`floor_spread_pct`).

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
        latency_ms=min(b.min_ms for b in blocks),
        statistic=MIN_OF_RUNS,
        median_ms=float(np.median(spread)),
        p10_ms=float(np.percentile(spread, 10)),
        p90_ms=float(np.percentile(spread, 90)),
        cv=float(np.std(spread) / np.mean(spread)),
        spread_basis=basis,
        repeats=sum(b.runs for b in blocks),
        blocks=len(blocks),
        floor_spread_pct=floor_spread_pct([b.min_ms for b in blocks], floor_blocks),
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
