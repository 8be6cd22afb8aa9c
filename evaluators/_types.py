"""Results of evaluators: plain frozen data with units in the names, ready for JSON."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

LatencySource = Literal["measured", "predicted"]
#: The label of a prediction whose predictor was fitted on measurements of the device.
CALIBRATED_LABEL = "predicted (calibrated)"
#: The label of a prediction whose predictor was not fitted on the device (seeded from public figures).
UNCALIBRATED_LABEL = "predicted (uncalibrated)"


def latency_source_label(source: str, calibrated: bool | None) -> str:
    """The provenance shown next to every latency figure: ``measured``, ``predicted (calibrated)`` or
    ``predicted (uncalibrated)`` (plain ``predicted`` only for a stored record that does not say).

    One function for every display (progress lines, the front table, ``pareto.csv``, trial attributes, the
    report), so that a figure is labelled the same wherever it appears.

    Args:
        source: ``measured`` or ``predicted`` (any other value is returned as it is).
        calibrated: For a prediction, whether the profile's predictor was fitted on the device; None when
            unknown (a record that does not say), which is shown as plain ``predicted``.
    """
    if source == "predicted" and calibrated is not None:
        return CALIBRATED_LABEL if calibrated else UNCALIBRATED_LABEL
    return source


@dataclasses.dataclass(frozen=True)
class AccuracyResult:
    """An accuracy figure and where it came from.

    Attributes:
        accuracy: The metric's value (``metric`` names it; top-1 accuracy in [0, 1] by default). Higher is
            better.
        split: The split it was measured on (``val`` during search, ``test`` only for final models).
        fidelity: The rung of the accuracy ladder that produced it, e.g. ``zero-cost``, ``distill-2ep``,
            ``final-distill-30ep``. Shown next to the figure wherever the figure is shown.
        seconds: Wall time the evaluation cost (fine-tuning included).
        details: Extra figures of the rung (losses before/after, other scores, steps...).
        metric: Name of the metric behind ``accuracy`` (``accuracy``, ``macro_f1`` or a user metric's name).
    """

    accuracy: float
    split: str
    fidelity: str
    seconds: float
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    metric: str = "accuracy"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LatencyResult:
    """A latency figure for one model on one device, how it was obtained, and what else was seen on the way.

    The first eleven fields are the original record and keep their order (callers build results
    positionally); every later field has a default, so records stored before those fields existed still
    load with ``LatencyResult(**stored)``.

    Attributes:
        device_id: The device profile's id.
        latency_ms: The figure used for decisions (see ``statistic``), in milliseconds. Measured: the fastest
            timed run (``min-of-runs``), which repeats where medians do not (see ``evaluators/_stats.py``).
        source: ``measured`` on the device, or ``predicted`` by a profile's model. Never mixed silently.
        statistic: How ``latency_ms`` was derived from the runs (``min-of-runs``; records made before the
            protocol of ``evaluators/_protocol.py`` say ``min-of-block-medians``).
        p10_ms: 10th percentile of the timed runs, in ms (measured only; see ``spread_basis``).
        p90_ms: 90th percentile of the timed runs, in ms (measured only; see ``spread_basis``).
        cv: Coefficient of variation (standard deviation / mean) of the timed runs (measured only).
        repeats: Timed runs of the model (0 when predicted).
        threads: Inference threads.
        seconds: Wall time this result cost, conversion included (a cache hit costs only the conversion).
        model_bytes: Size of the deployed Paddle Lite ``.nb`` file, in bytes.
        median_ms: Median of the timed runs, in ms (see ``spread_basis``).
        spread_basis: What ``median_ms``, ``p10_ms``, ``p90_ms`` and ``cv`` are computed over: ``runs``
            (each timed run) or ``block-means`` (the average of each block, where the device's tool reports
            only averages, as Paddle Lite's ``benchmark_bin`` does).
        blocks: Blocks of timed runs of the model.
        runs_per_block: Timed runs per block.
        warmup: Untimed runs before the first block.
        power_mode: Paddle Lite power mode the runs used (ARM CPUs); None where the device has none (x86).
        cpu_affinity: CPUs the runs were pinned to, e.g. ``"1"`` or ``"2,3"``; None when not pinned.
        stable: Whether the protocol's stability criteria were met: the floor reached by several blocks, and
            the median's CI within the target (see ``evaluators/_protocol.py``).
        noisy: The measurement stayed unstable after re-measuring: the device was noisy (typically the median
            scattered while ``latency_ms``, the fastest run, still held).
        remeasures: Extra measurement rounds the protocol ran because a round was unstable.
        ci_half_width_pct: Half-width of the 95% confidence interval of the median, in percent: of the median
            per-pair ratio to the reference when one was interleaved, else of the median of block medians.
        floor_spread_pct: How far the fastest run of the third-fastest block is above ``latency_ms``, in
            percent: small when separate blocks reached the floor that ``latency_ms`` reports.
        reference_id: Content hash (prefix) of the reference model interleaved with this one, or None.
        reference_latency_ms: The reference's own figure in this measurement (its fastest run), in ms.
        reference_ratio: ``latency_ms`` over ``reference_latency_ms``: comparable across measurements, hosts and
            times with the same ``reference_id`` (it repeated within +-0.2% on this host).
        memory_peak_bytes: Peak memory of inference, in bytes (see ``memory_method``); None if not measured.
        memory_process_peak_bytes: Peak resident memory of the whole measuring process, in bytes.
        memory_method: How ``memory_peak_bytes`` was obtained.
        memory_limit_bytes: The device profile's memory limit, in bytes, if it has one.
        cache_hit: The figures come from the latency cache, not from a measurement made for this result.
        cache_key: The cache key of this measurement (content hash, device, runtime, threads, power mode).
        runtime: The Paddle Lite runtime that ran the model (version, or the ``benchmark_bin`` hash).
        runner: How the device was reached: ``local``, ``adb`` or ``ssh``.
        places: The Paddle Lite places the ``.nb`` was converted for.
        measured_at: When the figures were measured (ISO 8601, UTC).
        host_load_1min: This host's 1-minute load average when the measurement started.
        nnadapter_subgraphs: NNAdapter places only: subgraphs that Paddle Lite hands to the accelerator.
        nnadapter_ops: NNAdapter places only: op type -> ops of that type kept on the accelerator.
        cpu_fallback_ops: NNAdapter places only: op type -> ops of that type that fall back to the CPU.
        calibrated: Predicted only: whether the profile's predictor was fitted on measurements of this device
            (False: seeded from public figures, to be read as a rough estimate); None when measured.
        predictor: Predicted only: which predictor made the figure and its measured error, in one line.
        kernels_ms: Predicted only: the predicted ms of the model's kernels per cost key
            (``<target>/<op type>[.<variant>]/<precision>``, e.g. ``arm/fc/fp32``), summed over the kernels
            of that key. With ``overhead_ms`` and ``subgraphs_ms`` it adds up to ``latency_ms``.
        overhead_ms: Predicted only: the per-inference overhead part of ``latency_ms``, in ms.
        subgraphs_ms: Predicted only: the part of ``latency_ms`` spent handing data to and from NNAdapter
            subgraphs (0 without subgraphs), in ms.
    """

    device_id: str
    latency_ms: float
    source: LatencySource
    statistic: str
    p10_ms: float | None
    p90_ms: float | None
    cv: float | None
    repeats: int
    threads: int
    seconds: float
    model_bytes: int
    median_ms: float | None = None
    spread_basis: str = "runs"
    blocks: int = 0
    runs_per_block: int = 0
    warmup: int = 0
    power_mode: str | None = None
    cpu_affinity: str | None = None
    stable: bool | None = None
    noisy: bool = False
    remeasures: int = 0
    ci_half_width_pct: float | None = None
    floor_spread_pct: float | None = None
    reference_id: str | None = None
    reference_latency_ms: float | None = None
    reference_ratio: float | None = None
    memory_peak_bytes: int | None = None
    memory_process_peak_bytes: int | None = None
    memory_method: str | None = None
    memory_limit_bytes: int | None = None
    cache_hit: bool = False
    cache_key: str | None = None
    runtime: str | None = None
    runner: str | None = None
    places: str | None = None
    measured_at: str | None = None
    host_load_1min: float | None = None
    nnadapter_subgraphs: int | None = None
    nnadapter_ops: dict[str, int] | None = None
    cpu_fallback_ops: dict[str, int] | None = None
    calibrated: bool | None = None
    predictor: str | None = None
    kernels_ms: dict[str, float] | None = None
    overhead_ms: float | None = None
    subgraphs_ms: float | None = None

    def __post_init__(self) -> None:
        if self.source == "predicted" and self.calibrated is None:
            raise ValueError("a predicted latency must say whether its predictor was calibrated")

    @property
    def source_label(self) -> str:
        """What every displayed figure carries: see :func:`latency_source_label`."""
        return latency_source_label(self.source, self.calibrated)

    @property
    def memory_over_limit_bytes(self) -> int | None:
        """How far the peak memory of inference exceeds the device's limit, in bytes (<= 0: within it).

        None when either figure is unknown. This is the value a search's constraint function uses (Optuna
        treats a constraint value <= 0 as satisfied).
        """
        if self.memory_peak_bytes is None or self.memory_limit_bytes is None:
            return None
        return self.memory_peak_bytes - self.memory_limit_bytes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
