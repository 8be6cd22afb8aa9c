"""The measurement protocol shared by every runner: warm-up, blocks until stable, re-measure when noisy.

One measurement of a model on a device:

1. Warm-up: ``settings.warmup`` untimed runs before the model's first block of a round
   (``settings.block_warmup`` before each later block, because the other model's block has evicted it from
   the caches meanwhile).
2. Blocks of timed runs: ``settings.runs_per_block`` runs in a model's first block; later blocks have
   enough runs to last at least ``settings.min_block_ms`` (a block must outlast the scheduler's time slices
   to say anything about them). When a reference model is given, its blocks are interleaved with the
   candidate's in the same device session, in ABBA order (candidate, reference, reference, candidate, ...)
   so that a slow drift does not favour either side.
3. The reported latency is the fastest timed run (``min-of-runs``, see ``_stats.py`` for the evidence). After
   at least ``settings.blocks`` blocks the measurement is *stable* when both:

   - the floor is confirmed: ``settings.floor_blocks`` separate blocks have a run within
     ``settings.floor_pct`` percent of the fastest one;
   - the median is stable: the 95% confidence interval of the median is within +-``settings.target_ci_pct``
     percent of it, over blocks (distribution-free, ``_stats.median_ci_ranks``): the median of the per-pair
     ratios candidate/reference when a reference is interleaved (a burst slows both), else the median of
     the candidate's block medians.

   Otherwise blocks continue up to ``settings.max_blocks`` in the round.
4. A round that ends unstable is *noisy*: after ``settings.remeasure_pause_seconds`` (a burst of load may
   pass) the model is measured again in a new round, judged on its own blocks, at most
   ``settings.remeasures`` times. The first stable round is reported; if none is stable, the round with the
   tightest median CI is reported with ``noisy=True``. On a host whose other processes keep preempting the
   runs, the median never settles and measurements are flagged noisy, while the fastest run still repeats.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Generic, Literal, TypeVar

from devicefit.evaluators._stats import (
    BlockSummary,
    BlockTiming,
    floor_spread_pct,
    median_ci_half_width_pct,
    pair_ratios,
    summarize_blocks,
)

ModelT = TypeVar("ModelT")
#: What a timed run's duration is: ``wall`` (elapsed time) or ``thread_cpu`` (CPU time of the running thread).
Clock = Literal["wall", "thread_cpu"]
CLOCKS: tuple[Clock, ...] = ("wall", "thread_cpu")


@dataclasses.dataclass(frozen=True)
class MeasureSettings:
    """How a model is timed on a device (the protocol in this module's docstring).

    Attributes:
        warmup: Untimed runs before a model's first block.
        blocks: Blocks (pairs, with a reference) measured before stability is first checked. A confidence
            interval of the median at 95% needs 6, so fewer only means the check starts failing earlier.
        runs_per_block: Timed runs in a model's first block, and the least in any block.
        min_block_ms: Later blocks get enough runs to last at least this long, in ms (capped by
            ``max_runs_per_block``).
        max_runs_per_block: Most timed runs in one block.
        max_blocks: Blocks a round may add before it is declared noisy.
        block_warmup: Untimed runs before each later block of a model.
        floor_blocks: Blocks that must reach the floor (see ``floor_pct``).
        floor_pct: A block reaches the floor when its fastest run is within this many percent of the fastest
            run of all.
        target_ci_pct: Stability target of the median: the half-width of its CI, in percent.
        confidence: Confidence level of the CI.
        remeasures: Extra rounds after a noisy one.
        remeasure_pause_seconds: Pause before an extra round (a burst of load may pass), in seconds.
        reference: Interleave the fixed reference model, and report the ratio to it.
        pin_cpu: On this host, pin the worker to ``threads`` CPUs while timing (where the OS allows).
        measure_memory: Also measure the peak memory of inference.
        memory_runs: Runs of the model in the memory measurement.
        step_timeout_seconds: Bound of one step on the device (a block, a copy, a memory measurement).
        clock: What a run's time is. ``wall`` (the default): elapsed time, what a user of the device waits
            for. ``thread_cpu``: CPU time of the thread that runs the model; on a shared host it leaves out
            the time other processes held the core, which wall time cannot. Only runners whose tool runs the
            model in a thread they can time offer it (the Lite worker, on this host or a board), and only
            single-threaded (``threads: 1``); calibration uses it on this host, and a measured latency of a
            fit never does (:class:`~devicefit.evaluators._latency.MeasuredLatency` refuses it).
    """

    warmup: int = 10
    blocks: int = 6
    runs_per_block: int = 50
    min_block_ms: float = 50.0
    max_runs_per_block: int = 5000
    max_blocks: int = 12
    block_warmup: int = 2
    floor_blocks: int = 3
    floor_pct: float = 1.0
    target_ci_pct: float = 2.0
    confidence: float = 0.95
    remeasures: int = 1
    remeasure_pause_seconds: float = 2.0
    reference: bool = True
    pin_cpu: bool = True
    measure_memory: bool = True
    memory_runs: int = 5
    step_timeout_seconds: float = 300.0
    clock: Clock = "wall"

    def __post_init__(self) -> None:
        if (
            self.warmup < 0
            or self.blocks < 1
            or self.runs_per_block < 1
            or self.min_block_ms < 0
            or self.max_runs_per_block < self.runs_per_block
            or self.max_blocks < self.blocks
            or self.block_warmup < 0
            or self.floor_blocks < 1
            or self.floor_pct <= 0
            or self.target_ci_pct <= 0
            or not 0.5 <= self.confidence < 1.0
            or self.remeasures < 0
            or self.remeasure_pause_seconds < 0
            or self.memory_runs < 1
            or self.step_timeout_seconds <= 0
            or self.clock not in CLOCKS
        ):
            raise ValueError(f"invalid measure settings: {self}")

    @property
    def repeats(self) -> int:
        """Timed runs of the model before the first stability check."""
        return self.blocks * self.runs_per_block


@dataclasses.dataclass(frozen=True)
class Assessment:
    """Whether blocks measured so far are stable (see the module docstring).

    Attributes:
        stable: Both criteria hold (and there are at least ``settings.blocks`` blocks).
        ci_half_width_pct: Half-width of the median's CI, in percent (None: too few blocks for one).
        floor_spread_pct: How far the ``floor_blocks``-th fastest block minimum is above the fastest run, in
            percent (None: fewer blocks than that).
        reference_ratio: The candidate's fastest run over the reference's (None without a reference): it
            repeats within +-0.2% across processes on this host where milliseconds move more.
    """

    stable: bool
    ci_half_width_pct: float | None
    floor_spread_pct: float | None
    reference_ratio: float | None


def assess(
    candidate: Sequence[BlockTiming], reference: Sequence[BlockTiming], settings: MeasureSettings
) -> Assessment:
    """Apply the stability criteria to the blocks so far (``reference`` empty: none interleaved)."""
    floor = floor_spread_pct([block.min_ms for block in candidate], settings.floor_blocks)
    ratio = None
    if reference:
        ci = median_ci_half_width_pct(pair_ratios(candidate, reference), settings.confidence)
        ratio = min(b.min_ms for b in candidate) / min(b.min_ms for b in reference)
    else:
        ci = median_ci_half_width_pct([block.figure_ms for block in candidate], settings.confidence)
    stable = (
        len(candidate) >= settings.blocks
        and floor is not None
        and floor <= settings.floor_pct
        and ci is not None
        and ci <= settings.target_ci_pct
    )
    return Assessment(stable, ci, floor, ratio)


@dataclasses.dataclass(frozen=True)
class ProtocolOutcome:
    """What :func:`run_protocol` measured.

    Attributes:
        candidate_blocks: The candidate's blocks of the reported round, in order.
        reference_blocks: The reference's blocks of that round (empty without one); pair i is measured next
            to candidate i.
        summary: Figures of the candidate's blocks.
        reference_summary: Figures of the reference's blocks, or None.
        assessment: The reported round's stability assessment.
        rounds: Rounds run (1 + re-measures).
        seconds: Wall time of the protocol, in seconds.
    """

    candidate_blocks: tuple[BlockTiming, ...]
    reference_blocks: tuple[BlockTiming, ...]
    summary: BlockSummary
    reference_summary: BlockSummary | None
    assessment: Assessment
    rounds: int
    seconds: float

    @property
    def noisy(self) -> bool:
        """Still unstable after every round."""
        return not self.assessment.stable


#: ``time_block(model, warmup, runs) -> BlockTiming``: one block of timed runs on the device.
TimeBlock = Callable[[ModelT, int, int], BlockTiming]


class _Plan(Generic[ModelT]):
    """Warm-up and run count of each model's next block: a model's first block has the settings' runs and
    calibrates how many runs its later blocks need to last ``min_block_ms``; each round starts warm-up anew."""

    def __init__(self, settings: MeasureSettings) -> None:
        self._settings = settings
        self._runs: list[tuple[ModelT, int]] = []
        self._warm: list[ModelT] = []

    def new_round(self) -> None:
        """Forget which models are warm (a pause came before this round)."""
        self._warm = []

    def next(self, model: ModelT) -> tuple[int, int]:
        """(warm-up runs, timed runs) of ``model``'s next block."""
        warmup = self._settings.block_warmup if any(m is model for m in self._warm) else self._settings.warmup
        for seen, runs in self._runs:
            if seen is model:
                return warmup, runs
        return warmup, self._settings.runs_per_block

    def record(self, model: ModelT, block: BlockTiming) -> None:
        """Note that ``model`` is warm, and calibrate its later blocks from its first one."""
        if not any(m is model for m in self._warm):
            self._warm.append(model)
        if any(seen is model for seen, _ in self._runs):
            return
        s = self._settings
        wanted = math.ceil(s.min_block_ms / block.figure_ms) if s.min_block_ms > 0 else 0
        self._runs.append((model, int(min(s.max_runs_per_block, max(s.runs_per_block, wanted)))))


@dataclasses.dataclass
class _Round:
    candidate: list[BlockTiming]
    reference: list[BlockTiming]
    assessment: Assessment


def _tightness(round_: _Round) -> float:
    ci = round_.assessment.ci_half_width_pct
    return math.inf if ci is None else ci


def run_protocol(
    time_block: TimeBlock[ModelT],
    candidate: ModelT,
    reference: ModelT | None,
    settings: MeasureSettings,
    *,
    keepalive: Callable[[], None] = lambda: None,
    sleep: Callable[[float], None] = time.sleep,
) -> ProtocolOutcome:
    """Measure ``candidate`` (interleaved with ``reference`` when given) until stable or out of rounds.

    Args:
        time_block: Runs one block on the device (a runner session's ``time_block``).
        candidate: The staged model to measure.
        reference: The staged reference model, or None.
        settings: The protocol's settings.
        keepalive: Called after every block (renews the device lease).
        sleep: Waits between rounds (injected so tests need not wait).

    Returns:
        The reported round's blocks, figures and assessment. Failures of ``time_block`` propagate.
    """
    if reference is candidate:
        raise ValueError("the reference must be another staged model than the candidate")
    started = time.perf_counter()
    plan: _Plan[ModelT] = _Plan(settings)
    rounds: list[_Round] = []
    for round_index in range(1 + settings.remeasures):
        if round_index > 0:
            sleep(settings.remeasure_pause_seconds)
            plan.new_round()
        current = _Round([], [], Assessment(False, None, None, None))
        rounds.append(current)
        for _ in range(settings.max_blocks):
            # ABBA: even pairs start with the candidate, odd pairs with the reference.
            order = [candidate] if reference is None else (
                [candidate, reference] if len(current.candidate) % 2 == 0 else [reference, candidate]
            )
            for model in order:
                warmup, runs = plan.next(model)
                block = time_block(model, warmup, runs)
                keepalive()
                plan.record(model, block)
                (current.candidate if model is candidate else current.reference).append(block)
            current.assessment = assess(current.candidate, current.reference, settings)
            if current.assessment.stable:
                break
        if current.assessment.stable:
            break
    chosen = current if current.assessment.stable else min(reversed(rounds), key=_tightness)
    return ProtocolOutcome(
        candidate_blocks=tuple(chosen.candidate),
        reference_blocks=tuple(chosen.reference),
        summary=summarize_blocks(chosen.candidate, settings.floor_blocks),
        reference_summary=summarize_blocks(chosen.reference, settings.floor_blocks) if chosen.reference else None,
        assessment=chosen.assessment,
        rounds=len(rounds),
        seconds=time.perf_counter() - started,
    )
