"""Latency evaluators: the contract, and measured latency (Paddle Lite on this host, on phones, on boards).

:class:`MeasuredLatency` is the pipeline of one measurement::

    artifact --opt (this host, Lite worker)--> <device>.nb (+ NNAdapter op partition from opt's log)
      --cache lookup (content hash, device, runtime, threads, power mode)--> hit: the stored figures
      --device lease (the study's database)--> runner session: stage the .nb and the reference's .nb,
      time blocks by the protocol (_protocol.py), measure peak memory --> LatencyResult --> cache

Runners by reach kind: :class:`~devicefit.evaluators._host.HostRunner` (``local``),
:class:`~devicefit.evaluators._adb.AdbRunner` (``adb``), :class:`~devicefit.evaluators._ssh.SshRunner` (``ssh``).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from devicefit.device_profiles._profile import DeviceProfile
from devicefit.evaluators._adb import AdbRunner
from devicefit.evaluators._cache import CacheKey, LatencyCache
from devicefit.evaluators._errors import DeviceUnavailableError
from devicefit.evaluators._host import HostRunner
from devicefit.evaluators._lease import DeviceLeases
from devicefit.evaluators._lite_client import ConvertResult, LiteWorker
from devicefit.evaluators._nnadapter import OpPartition, nnadapter_devices, parse_partition
from devicefit.evaluators._protocol import MeasureSettings, ProtocolOutcome, run_protocol
from devicefit.evaluators._reference import ReferenceModel, ReferenceSource
from devicefit.evaluators._runner import DeviceRunner, MemoryFigure, physical_device_key
from devicefit.evaluators._ssh import SshRunner
from devicefit.evaluators._stats import MIN_OF_RUNS
from devicefit.evaluators._types import LatencyResult
from devicefit.spaces._export import Artifact

__all__ = [
    "MIN_OF_RUNS",
    "DeviceRunner",
    "HostRunner",
    "LatencyEvaluator",
    "MeasureSettings",
    "MeasuredLatency",
    "check_device",
    "convert_artifact",
    "default_latency",
    "hold_device_lease",
    "host_latency",
]


class LatencyEvaluator(abc.ABC):
    """Gives the latency of an exported model on one device.

    Contract:
        - :meth:`latency` converts ``artifact`` for the device's Paddle Lite places (the ``.nb`` is written
          next to the artifact as ``<device id>.nb``) and returns a :class:`LatencyResult` whose ``source``
          says whether the figure was measured on the device or predicted.
        - ``sample_inputs`` are ``.npy`` files, one per model input, batch of one, with real data (token ids
          must be valid, so random inputs are not enough).
        - A failure raises an exception for that one measurement; the evaluator stays usable.
        - :meth:`close` releases what the evaluator holds (database connections), never the Lite worker it was
          given; the default holds nothing.
    """

    @abc.abstractmethod
    def latency(self, artifact: Artifact, profile: DeviceProfile, sample_inputs: Sequence[Path]) -> LatencyResult:
        """Latency of ``artifact`` on ``profile``'s device."""

    def close(self) -> None:  # noqa: B027  (a hook: most evaluators hold nothing)
        """Release what the evaluator holds (nothing by default)."""


def convert_artifact(
    worker: LiteWorker,
    artifact: Artifact,
    profile: DeviceProfile,
    out_prefix: Path,
    *,
    model_type: str = "naive_buffer",
) -> ConvertResult:
    """Convert ``artifact`` with Paddle Lite's ``opt`` for ``profile``'s places, at the artifact's precision.

    An int8 artifact is a quantized program (``opt`` picks int8 kernels from it); fp16 asks ``opt`` for fp16
    kernels; weight-only quantization asks it to store integer weights. Measured and predicted latency both
    convert through here, so a predictor reads the same kernels the device would run.

    Args:
        worker: The Lite worker client that runs ``opt``.
        artifact: The exported model.
        profile: The device.
        out_prefix: ``<out_prefix>.nb`` (naive buffer), or ``<out_prefix>/model`` and ``params`` (protobuf).
        model_type: ``naive_buffer`` (what the device runs) or ``protobuf`` (the optimized kernel list).

    Raises:
        ValueError: The profile does not list the artifact's precision.
    """
    if artifact.precision not in profile.precisions:
        raise ValueError(
            f"{profile.id} has no {artifact.precision} kernels (its profile lists {list(profile.precisions)})"
        )
    return worker.convert(
        artifact.model_file,
        artifact.params_file,
        profile.places,
        out_prefix,
        model_type=model_type,
        enable_fp16=artifact.enable_fp16,
        quant_type=artifact.lite_quant_type,
    )


class HeldDevice(Protocol):
    """What a measurement needs of its device lease."""

    def keepalive(self) -> None:
        """Renew the lease; raise :class:`~devicefit.evaluators._errors.LeaseLostError` if it was lost."""


class _NoLease:
    """Stands for a lease when no lease storage is configured (a single process measures)."""

    def keepalive(self) -> None:
        """Nothing to renew."""


@contextlib.contextmanager
def hold_device_lease(leases: DeviceLeases | None, profile: DeviceProfile) -> Iterator[HeldDevice]:
    """Hold the lease of ``profile``'s physical device for the ``with`` block (nothing to hold without leases).

    Call ``keepalive()`` on what it yields after every step on the device: a lease lost meanwhile raises there.

    Raises:
        DeviceBusyError: Another worker held the device for longer than ``leases`` may wait.
    """
    if leases is None:
        yield _NoLease()
        return
    with leases.hold(physical_device_key(profile), profile.id) as lease:
        yield lease


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "places"


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _load_1min() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


class MeasuredLatency(LatencyEvaluator):
    """Converts with Paddle Lite's ``opt`` on this host (through the Lite worker), then measures on the device.

    Args:
        worker: The Lite worker client that converts (``opt`` runs on this host for every target).
        runners: The runner for each reach kind (``local``, ``adb``, ``ssh``).
        settings: The measurement protocol (wall clock: ``ValueError`` otherwise).
        leases: Device leases (one measurement at a time per physical device); None: no lease is taken.
        cache: The latency cache; None: always measure.
        reference: Where the reference model comes from (used when ``settings.reference``); None: the
            default cache folder (see ``_reference.default_cache_dir``).
    """

    def __init__(
        self,
        worker: LiteWorker,
        runners: Mapping[str, DeviceRunner],
        settings: MeasureSettings = MeasureSettings(),
        *,
        leases: DeviceLeases | None = None,
        cache: LatencyCache | None = None,
        reference: ReferenceSource | None = None,
    ) -> None:
        if settings.clock != "wall":
            raise ValueError(
                f"measured latency is wall time (what a user of the device waits for, and what the latency cache "
                f"holds); the '{settings.clock}' clock is for calibration only"
            )
        if leases is not None and leases.ttl_seconds < 2 * settings.step_timeout_seconds:
            raise ValueError(
                f"the lease ttl ({leases.ttl_seconds:g} s) must be at least twice the step timeout "
                f"({settings.step_timeout_seconds:g} s): the lease is renewed between steps"
            )
        self.worker = worker
        self.runners = dict(runners)
        self.settings = settings
        self.leases = leases
        self.cache = cache
        self.reference = reference if reference is not None else ReferenceSource()
        self._reference_nbs: dict[str, Path] = {}
        self._lock = threading.Lock()

    def runner_for(self, profile: DeviceProfile) -> DeviceRunner:
        """The runner that reaches ``profile``'s device.

        Raises:
            DeviceUnavailableError: No runner reaches devices of that kind (e.g. ``none``: predict instead).
        """
        runner = self.runners.get(profile.reach.kind)
        if runner is None:
            raise DeviceUnavailableError(
                f"no runner measures devices reached by '{profile.reach.kind}' ({profile.id})", device_id=profile.id
            )
        return runner

    def check(self, profile: DeviceProfile) -> None:
        """Fail with a one-line :class:`DeviceUnavailableError` unless ``profile``'s device can be measured now."""
        self.runner_for(profile).check(profile)

    def convert(self, artifact: Artifact, profile: DeviceProfile) -> Path:
        """Convert ``artifact`` for ``profile`` to ``<artifact dir>/<device id>.nb``, at the artifact's precision.

        An int8 artifact is a quantized program (``opt`` picks int8 kernels from it); fp16 asks ``opt`` for
        fp16 kernels; weight-only quantization asks it to store integer weights.

        Raises:
            ValueError: The profile does not list the artifact's precision.
        """
        return self._convert(artifact, profile).nb_file

    def _convert(self, artifact: Artifact, profile: DeviceProfile) -> ConvertResult:
        return convert_artifact(self.worker, artifact, profile, artifact.directory / profile.id)

    def _reference_nb(self, reference: ReferenceModel, places: str) -> Path:
        """The reference converted for ``places`` (once per evaluator; written atomically into its folder)."""
        with self._lock:
            nb = self._reference_nbs.get(places)
            if nb is None:
                folder = reference.artifact.directory
                scratch = folder / f".{_slug(places)}.{os.getpid()}.{secrets.token_hex(4)}"
                converted = self.worker.convert(
                    reference.artifact.model_file, reference.artifact.params_file, places, scratch
                ).nb_file
                nb = folder / f"{_slug(places)}.nb"
                os.replace(converted, nb)
                self._reference_nbs[places] = nb
            return nb

    def latency(self, artifact: Artifact, profile: DeviceProfile, sample_inputs: Sequence[Path]) -> LatencyResult:
        started = time.perf_counter()
        runner = self.runner_for(profile)
        conversion = self._convert(artifact, profile)
        nb_file = conversion.nb_file
        partition = parse_partition(conversion.log) if nnadapter_devices(profile.places) else None
        runtime = runner.runtime_version(profile)
        key = CacheKey(
            artifact_hash=artifact.content_hash,
            device_id=profile.id,
            physical_device=physical_device_key(profile),
            places=profile.places,
            runtime=runtime,
            threads=profile.threads,
            power_mode=profile.power_mode,
        )
        if self.cache is not None:
            stored = self.cache.get(key)
            if stored is not None:
                return dataclasses.replace(
                    stored,
                    cache_hit=True,
                    cache_key=key.digest(),
                    seconds=time.perf_counter() - started,
                    model_bytes=nb_file.stat().st_size,
                    memory_limit_bytes=profile.memory_limit_bytes,
                )
        reference = self.reference.get() if self.settings.reference else None
        reference_nb = self._reference_nb(reference, profile.places) if reference is not None else None
        load = _load_1min()
        measured_at = _utc_now()
        memory: MemoryFigure | None = None
        with hold_device_lease(self.leases, profile) as lease:
            with runner.open(profile, self.settings) as session:
                lease.keepalive()
                candidate = session.stage("candidate", nb_file, sample_inputs)
                lease.keepalive()
                staged_reference = (
                    session.stage("reference", reference_nb, reference.inputs)
                    if reference is not None and reference_nb is not None
                    else None
                )
                outcome = run_protocol(
                    session.time_block,
                    candidate,
                    staged_reference,
                    self.settings,
                    keepalive=lease.keepalive,
                )
                if self.settings.measure_memory:
                    memory = session.peak_memory(candidate, self.settings.block_warmup, self.settings.memory_runs)
                lease.keepalive()  # a lease lost meanwhile (expired, taken over) drops the measurement
                session_facts = (session.power_mode, session.cpu_affinity)
        result = self._result(
            profile,
            outcome,
            memory,
            partition,
            reference,
            key,
            runtime=runtime,
            power_mode=session_facts[0],
            cpu_affinity=session_facts[1],
            model_bytes=nb_file.stat().st_size,
            measured_at=measured_at,
            load=load,
            seconds=time.perf_counter() - started,
        )
        if self.cache is not None:
            self.cache.put(key, result)
        return result

    def _result(
        self,
        profile: DeviceProfile,
        outcome: ProtocolOutcome,
        memory: MemoryFigure | None,
        partition: OpPartition | None,
        reference: ReferenceModel | None,
        key: CacheKey,
        *,
        runtime: str,
        power_mode: str | None,
        cpu_affinity: str | None,
        model_bytes: int,
        measured_at: str,
        load: float | None,
        seconds: float,
    ) -> LatencyResult:
        summary = outcome.summary
        assessment = outcome.assessment
        return LatencyResult(
            device_id=profile.id,
            latency_ms=summary.latency_ms,
            source="measured",
            statistic=summary.statistic,
            p10_ms=summary.p10_ms,
            p90_ms=summary.p90_ms,
            cv=summary.cv,
            repeats=summary.repeats,
            threads=profile.threads,
            seconds=seconds,
            model_bytes=model_bytes,
            median_ms=summary.median_ms,
            spread_basis=summary.spread_basis,
            blocks=summary.blocks,
            runs_per_block=self.settings.runs_per_block,
            warmup=self.settings.warmup,
            power_mode=power_mode,
            cpu_affinity=cpu_affinity,
            stable=assessment.stable,
            noisy=outcome.noisy,
            remeasures=outcome.rounds - 1,
            ci_half_width_pct=assessment.ci_half_width_pct,
            floor_spread_pct=assessment.floor_spread_pct,
            reference_id=None if reference is None else reference.id,
            reference_latency_ms=None if outcome.reference_summary is None else outcome.reference_summary.latency_ms,
            reference_ratio=assessment.reference_ratio,
            memory_peak_bytes=None if memory is None else memory.peak_bytes,
            memory_process_peak_bytes=None if memory is None else memory.process_peak_bytes,
            memory_method=None if memory is None else memory.method,
            memory_limit_bytes=profile.memory_limit_bytes,
            cache_hit=False,
            cache_key=key.digest(),
            runtime=runtime,
            runner=profile.reach.kind,
            places=profile.places,
            measured_at=measured_at,
            host_load_1min=load,
            nnadapter_subgraphs=None if partition is None else partition.subgraphs,
            nnadapter_ops=None if partition is None else dict(partition.accelerator_ops),
            cpu_fallback_ops=None if partition is None else dict(partition.cpu_ops),
        )

    def close(self) -> None:
        """Close the lease and cache database connections (the worker belongs to the caller)."""
        if self.leases is not None:
            self.leases.close()
        if self.cache is not None:
            self.cache.close()


def host_latency(
    worker: LiteWorker,
    settings: MeasureSettings = MeasureSettings(),
    *,
    reference_dir: Path | None = None,
) -> MeasuredLatency:
    """The latency evaluator for devices on this host only (no lease, no cache)."""
    return MeasuredLatency(worker, {"local": HostRunner(worker)}, settings, reference=ReferenceSource(reference_dir))


def default_latency(
    worker: LiteWorker,
    settings: MeasureSettings = MeasureSettings(),
    *,
    storage_url: str | None = None,
    reference_dir: Path | None = None,
    adb: str | None = None,
    ssh: str | None = None,
    scp: str | None = None,
) -> MeasuredLatency:
    """The evaluator ``devicefit fit`` uses: this host, phones over adb and boards over ssh.

    Args:
        worker: The Lite worker client (conversion, and timing on this host).
        settings: The measurement protocol.
        storage_url: The study's storage URL: leases and the latency cache live there. None: neither.
        reference_dir: Cache folder of the reference model (default: see ``_reference.default_cache_dir``).
        adb: The ``adb`` executable (default: ``$DEVICEFIT_ADB`` or ``adb`` on ``PATH``).
        ssh: The ``ssh`` executable (default: ``$DEVICEFIT_SSH`` or ``ssh`` on ``PATH``).
        scp: The ``scp`` executable (default: ``$DEVICEFIT_SCP`` or ``scp`` on ``PATH``).
    """
    runners: dict[str, DeviceRunner] = {
        "local": HostRunner(worker),
        "adb": AdbRunner(adb),
        "ssh": SshRunner(ssh, scp),
    }
    return MeasuredLatency(
        worker,
        runners,
        settings,
        leases=None if storage_url is None else DeviceLeases(storage_url),
        cache=None if storage_url is None else LatencyCache(storage_url),
        reference=ReferenceSource(reference_dir),
    )


def check_device(profile: DeviceProfile) -> None:
    """Fail with a one-line :class:`DeviceUnavailableError` unless ``profile``'s device can be measured now.

    For ``adb`` and ``ssh`` devices only (it starts no Lite worker): the tool exists, the phone is listed by
    ``adb devices`` / the board answers over ssh, and the profile names what the runner needs.
    """
    runners: dict[str, DeviceRunner] = {"adb": AdbRunner(), "ssh": SshRunner()}
    runner = runners.get(profile.reach.kind)
    if runner is not None:
        runner.check(profile)
