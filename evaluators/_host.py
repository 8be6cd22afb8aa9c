"""This host as a device: models are timed by the Lite worker (Paddle Lite's x86 kernels) on this machine."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from devicefit.device_profiles._profile import DeviceProfile
from devicefit.evaluators._errors import DeviceCommandError, MeasurementTimeout, UnparsableOutputError
from devicefit.evaluators._lite_client import (
    LiteProtocolError,
    LiteWorker,
    LiteWorkerCrashed,
    LiteWorkerError,
    LiteWorkerTimeout,
)
from devicefit.evaluators._protocol import MeasureSettings
from devicefit.evaluators._runner import (
    DeviceRunner,
    DeviceSession,
    MemoryFigure,
    NpyInput,
    StagedModel,
    require_clock_threads,
)
from devicefit.evaluators._stats import BlockTiming


def pinning_cpus(threads: int) -> list[int] | None:
    """The CPUs a measurement with ``threads`` threads is pinned to: the last ``threads`` CPUs this process may
    use (CPU 0 tends to take interrupts), or None when pinning is not possible or would not leave a choice.
    """
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if threads > len(allowed):
        return None
    return allowed[-threads:]


def lite_error_to_measurement(exc: LiteWorkerError, device_id: str, where: str) -> Exception:
    """The measurement error that says why a Lite worker request failed (the caller raises it ``from exc``).

    A timeout stays a timeout, an answer that is not the protocol is unparsable output, and a crash or an
    error inside the worker is a failed command on the device.
    """
    tail = exc.stderr_tail[-20:]
    if isinstance(exc, LiteWorkerTimeout):
        return MeasurementTimeout(
            f"{where}: {exc}", timeout_seconds=exc.timeout_seconds, device_id=device_id, output_tail=tail
        )
    if isinstance(exc, LiteProtocolError):
        return UnparsableOutputError(f"{where}: {exc}", device_id=device_id, output_tail=tail)
    exit_code = exc.exit_code if isinstance(exc, LiteWorkerCrashed) else None
    return DeviceCommandError(f"{where}: {exc}", exit_code=exit_code, device_id=device_id, output_tail=tail)


def clock_readings(times_ms: Sequence[float]) -> list[float]:
    """The runs of a block that the clock really timed: readings of 0 ms (or less) left out.

    No run of a model takes no time, so such a reading is the clock not advancing over the run, not a fast
    run. Seen on this host's thread CPU clock for models of a few microseconds (about 1 reading in 20,000 of
    a 2 us probe); before, one such reading failed the whole block, and the calibration lost the model.

    Raises:
        ValueError: No reading is positive (the block has no timed run).
    """
    kept = [float(t) for t in times_ms if t > 0]
    if not kept:
        raise ValueError(f"none of the {len(times_ms)} timed runs has a positive time: the clock did not advance")
    return kept


class LiteWorkerSession(DeviceSession):
    """Times staged models through a Lite worker, wherever that worker runs (this host, or a board).

    Args:
        worker: The worker client.
        profile: The device.
        settings: The protocol settings (step bound, memory runs, clock).
        cpu_affinity: CPUs to pin the worker to while timing, or None.
        power_mode: Paddle Lite ``PowerMode`` value to ask for, or None (x86 has none).
        where: How the device is named in error messages.
    """

    def __init__(
        self,
        worker: LiteWorker,
        profile: DeviceProfile,
        settings: MeasureSettings,
        *,
        cpu_affinity: list[int] | None,
        power_mode: int | None,
        where: str,
    ) -> None:
        require_clock_threads(profile, settings)
        self.worker = worker
        self.profile = profile
        self.settings = settings
        self._cpus = cpu_affinity
        self._power_mode = power_mode
        self.where = where
        worker.hello(timeout_seconds=settings.step_timeout_seconds)  # starts it: a broken runtime fails here

    def stage(self, name: str, nb_file: Path, inputs: Sequence[Path]) -> StagedModel:
        described = tuple(NpyInput.read(Path(p)) for p in inputs)
        return StagedModel(name, Path(nb_file), described, str(nb_file), tuple(str(p) for p in inputs))

    def time_block(self, model: StagedModel, warmup: int, runs: int) -> BlockTiming:
        try:
            result = self.worker.measure_detailed(
                model.device_nb,
                list(model.device_inputs),
                threads=self.profile.threads,
                warmup=warmup,
                repeats=runs,
                blocks=1,
                power_mode=self._power_mode,
                cpu_affinity=self._cpus,
                clock=self.settings.clock,
                timeout_seconds=self.settings.step_timeout_seconds,
            )
        except LiteWorkerError as exc:
            raise self._failure(exc, f"timing {model.name} on {self.where}") from exc
        pinned = result.cpu_affinity_applied
        self.cpu_affinity = None if pinned is None else ",".join(str(c) for c in pinned)
        if self._power_mode is not None and result.power_mode_applied:
            self.power_mode = self.profile.power_mode
        return BlockTiming.from_times(clock_readings(result.times_ms))

    def peak_memory(self, model: StagedModel, warmup: int, runs: int) -> MemoryFigure | None:
        try:
            memory = self.worker.measure_memory(
                model.device_nb,
                list(model.device_inputs),
                threads=self.profile.threads,
                warmup=warmup,
                runs=runs,
                power_mode=self._power_mode,
                timeout_seconds=self.settings.step_timeout_seconds,
            )
        except LiteWorkerError as exc:
            raise self._failure(exc, f"measuring the memory of {model.name} on {self.where}") from exc
        method = memory.method + (" (a lower bound)" if memory.lower_bound else "")
        return MemoryFigure(memory.inference_peak_bytes, memory.process_peak_bytes, method)

    def _failure(self, exc: LiteWorkerError, where: str) -> Exception:
        return lite_error_to_measurement(exc, self.profile.id, where)

    def close(self) -> None:
        """Nothing to remove: the models stay where they are on this host, and the shared worker lives on."""


class HostRunner(DeviceRunner):
    """This machine, through the Lite worker (Paddle Lite's x86 kernels).

    Args:
        worker: The Lite worker client (shared with conversion: one process, models stay loaded).
    """

    reach_kind = "local"

    def __init__(self, worker: LiteWorker) -> None:
        self.worker = worker

    def runtime_version(self, profile: DeviceProfile) -> str:
        self.require_kind(profile)
        hello = self.worker.hello()
        return f"paddlelite {hello.paddlelite_version or '?'} (opt {hello.opt_version or '?'})"

    def open(self, profile: DeviceProfile, settings: MeasureSettings) -> DeviceSession:
        self.require_kind(profile)
        require_clock_threads(profile, settings)
        cpus = pinning_cpus(profile.threads) if settings.pin_cpu else None
        return LiteWorkerSession(
            self.worker, profile, settings, cpu_affinity=cpus, power_mode=None, where="this host"
        )
