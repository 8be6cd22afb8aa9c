"""Latency evaluators: the contract, the measurement statistics, and the host runner (Paddle Lite, x86)."""

from __future__ import annotations

import abc
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from devicefit.device_profiles._profile import DeviceProfile
from devicefit.evaluators._lite_client import LiteWorker
from devicefit.evaluators._types import LatencyResult
from devicefit.spaces._export import Artifact


class LatencyEvaluator(abc.ABC):
    """Gives the latency of an exported model on one device.

    Contract:
        - :meth:`latency` converts ``artifact`` for the device's Paddle Lite places (the ``.nb`` is written
          next to the artifact as ``<device id>.nb``) and returns a :class:`LatencyResult` whose ``source``
          says whether the figure was measured on the device or predicted.
        - ``sample_inputs`` are ``.npy`` files, one per model input, batch of one, with real data (token ids
          must be valid, so random inputs are not enough).
        - A failure raises an exception for that one measurement; the evaluator stays usable.
    """

    @abc.abstractmethod
    def latency(self, artifact: Artifact, profile: DeviceProfile, sample_inputs: Sequence[Path]) -> LatencyResult:
        """Latency of ``artifact`` on ``profile``'s device."""


@dataclasses.dataclass(frozen=True)
class MeasureSettings:
    """How runs are timed on a device.

    Attributes:
        warmup: Untimed runs first.
        blocks: Blocks of timed runs.
        runs_per_block: Timed runs per block.
        clock: ``wall`` (elapsed time, what a user of the device waits) or ``thread_cpu`` (CPU time of the
            thread that runs the model: on a shared host it leaves out the time other processes held the
            core, which wall time cannot; single-threaded runs on this host only).
    """

    warmup: int = 10
    blocks: int = 5
    runs_per_block: int = 50
    clock: Literal["wall", "thread_cpu"] = "wall"

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.blocks < 1 or self.runs_per_block < 1 or self.clock not in ("wall", "thread_cpu"):
            raise ValueError(f"invalid measure settings: {self}")

    @property
    def repeats(self) -> int:
        """Timed runs in all."""
        return self.blocks * self.runs_per_block


MIN_OF_BLOCK_MEDIANS = "min-of-block-medians"


def summarize_runs_ms(times_ms: Sequence[float], runs_per_block: int) -> dict[str, float]:
    """Robust statistics of timed runs.

    On a shared host the noise comes in bursts that last longer than a block, so the figure used for
    decisions is the smallest of the block medians (``latency_ms``): stable across processes where a
    plain median was not (see STACK-NOTES.md). Percentiles and the coefficient of variation are over all runs.

    Args:
        times_ms: Wall time of each timed run, in order, in milliseconds.
        runs_per_block: Consecutive runs that form one block.
    """
    times = np.asarray(times_ms, dtype=float)
    if times.size == 0 or np.any(~np.isfinite(times)) or np.any(times <= 0):
        raise ValueError("timed runs must be a non-empty list of positive, finite milliseconds")
    blocks = [times[i : i + runs_per_block] for i in range(0, times.size, runs_per_block)]
    block_medians = [float(np.median(block)) for block in blocks]
    return {
        "latency_ms": min(block_medians),
        "median_ms": float(np.median(times)),
        "p10_ms": float(np.percentile(times, 10)),
        "p90_ms": float(np.percentile(times, 90)),
        "cv": float(np.std(times) / np.mean(times)),
    }


@dataclasses.dataclass(frozen=True)
class RunTimings:
    """Raw timings of one measurement on a device (statistics are computed by the caller).

    Attributes:
        times_ms: Wall time of each timed run, in run order, in milliseconds.
        runs_per_block: Consecutive runs forming one block.
    """

    times_ms: tuple[float, ...]
    runs_per_block: int


class DeviceRunner(abc.ABC):
    """Runs a converted Paddle Lite model (``.nb``) on one kind of device and times it.

    Contract:
        - :meth:`time_runs` runs ``settings.warmup`` untimed runs, then ``settings.blocks`` blocks of
          ``settings.runs_per_block`` timed runs, with the profile's threads (and power mode where the
          device has one), feeding ``sample_inputs`` (one ``.npy`` per model input).
        - It cleans up whatever it put on the device, also when it fails.
        - A failure (device gone, crash, timeout, unparsable output) raises an exception with the reason.
    """

    @abc.abstractmethod
    def time_runs(
        self, nb_file: Path, sample_inputs: Sequence[Path], profile: DeviceProfile, settings: MeasureSettings
    ) -> RunTimings:
        """Time ``nb_file`` on ``profile``'s device."""


class HostRunner(DeviceRunner):
    """This machine, through the Lite worker (Paddle Lite's x86 kernels)."""

    def __init__(self, worker: LiteWorker) -> None:
        self.worker = worker

    def time_runs(
        self, nb_file: Path, sample_inputs: Sequence[Path], profile: DeviceProfile, settings: MeasureSettings
    ) -> RunTimings:
        if profile.reach.kind != "local":
            raise ValueError(f"{profile.id} is reached by '{profile.reach.kind}', not on this host")
        times_ms = self.worker.measure(
            nb_file,
            list(sample_inputs),
            threads=profile.threads,
            warmup=settings.warmup,
            repeats=settings.runs_per_block,
            blocks=settings.blocks,
            clock=settings.clock,
        )
        return RunTimings(tuple(times_ms), settings.runs_per_block)


class MeasuredLatency(LatencyEvaluator):
    """Converts with Paddle Lite's ``opt`` on this host (through the Lite worker), then times on the device.

    Args:
        worker: The Lite worker client that converts (``opt`` runs on this host for every target).
        runners: The runner for each reach kind (``local``, ``adb``, ``ssh``).
        settings: Timing protocol.
    """

    def __init__(
        self,
        worker: LiteWorker,
        runners: dict[str, DeviceRunner],
        settings: MeasureSettings = MeasureSettings(),
    ) -> None:
        self.worker = worker
        self.runners = runners
        self.settings = settings

    def convert(self, artifact: Artifact, profile: DeviceProfile) -> Path:
        """Convert ``artifact`` for ``profile`` to ``<artifact dir>/<device id>.nb``."""
        out_prefix = artifact.directory / profile.id
        return self.worker.convert(artifact.model_file, artifact.params_file, profile.places, out_prefix).nb_file

    def latency(self, artifact: Artifact, profile: DeviceProfile, sample_inputs: Sequence[Path]) -> LatencyResult:
        runner = self.runners.get(profile.reach.kind)
        if runner is None:
            raise ValueError(f"no runner measures devices reached by '{profile.reach.kind}' ({profile.id})")
        started = time.perf_counter()
        nb_file = self.convert(artifact, profile)
        timings = runner.time_runs(nb_file, sample_inputs, profile, self.settings)
        stats = summarize_runs_ms(timings.times_ms, timings.runs_per_block)
        return LatencyResult(
            device_id=profile.id,
            latency_ms=stats["latency_ms"],
            source="measured",
            statistic=MIN_OF_BLOCK_MEDIANS,
            p10_ms=stats["p10_ms"],
            p90_ms=stats["p90_ms"],
            cv=stats["cv"],
            repeats=len(timings.times_ms),
            threads=profile.threads,
            seconds=time.perf_counter() - started,
            model_bytes=nb_file.stat().st_size,
        )


def host_latency(worker: LiteWorker, settings: MeasureSettings = MeasureSettings()) -> MeasuredLatency:
    """The latency evaluator for devices on this host."""
    return MeasuredLatency(worker, {"local": HostRunner(worker)}, settings)
