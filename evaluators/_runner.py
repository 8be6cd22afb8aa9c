"""The device runner contract: how a converted model (``.nb``) is put on a device, timed there, and removed.

Shaped like nn-Meter's backends: a runner is a *profiler* that runs on the device (the Lite worker on this
host or on a board, Paddle Lite's ``benchmark_bin`` on a phone) plus a *parser* of what it reports. The
protocol that decides how many blocks to time lives above runners (``_protocol.py``); a runner only knows
how to run one block, so every device gets the same protocol.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import re
import secrets
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from devicefit.device_profiles._profile import DeviceProfile
from devicefit.evaluators._errors import DeviceUnavailableError
from devicefit.evaluators._protocol import MeasureSettings
from devicefit.evaluators._stats import BlockTiming

#: Paddle Lite ``PowerMode`` values by the names device profiles use.
POWER_MODE_VALUES = {"high": 0, "low": 1, "full": 2, "no_bind": 3, "rand_high": 4, "rand_low": 5}


@dataclasses.dataclass(frozen=True)
class NpyInput:
    """One model input as a ``.npy`` file on this host, with what a device tool needs to know of it.

    Attributes:
        path: The ``.npy`` file (batch of one, real data).
        shape: Its shape.
        dtype: Its numpy dtype name (``float32``, ``int64``, ``int32``).
    """

    path: Path
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def read(cls, path: Path) -> NpyInput:
        """Describe an ``.npy`` file (reads its header only)."""
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        return cls(Path(path), tuple(int(d) for d in array.shape), str(array.dtype))


@dataclasses.dataclass(frozen=True)
class StagedModel:
    """A model put on a device by :meth:`DeviceSession.stage`, ready to be timed.

    Attributes:
        name: What it is in this measurement (``candidate`` or ``reference``).
        nb_file: The ``.nb`` on this host.
        inputs: Its inputs on this host.
        device_nb: Where the device sees the ``.nb``.
        device_inputs: Where the device sees each input (same order as ``inputs``).
    """

    name: str
    nb_file: Path
    inputs: tuple[NpyInput, ...]
    device_nb: str
    device_inputs: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class MemoryFigure:
    """Peak memory of inference of one model on a device.

    Attributes:
        peak_bytes: Peak memory attributable to the model (loading and running it), in bytes.
        process_peak_bytes: Peak resident memory of the whole process that ran it, in bytes (None if unknown).
        method: One line saying how ``peak_bytes`` was obtained.
    """

    peak_bytes: int
    process_peak_bytes: int | None
    method: str


class DeviceSession(abc.ABC):
    """One visit to a device: models are staged, timed block by block, and everything is removed at the end.

    Contract:
        - Use it as a context manager (or call :meth:`close`): closing removes whatever the session put on
          the device, also after a failure, and never raises for a device that is already gone.
        - :meth:`time_block` runs ``warmup`` untimed runs then ``runs`` timed runs of one staged model with the
          profile's threads (and power mode where the device has one), and returns their timing in ms of the
          settings' ``clock``.
        - Every step is bounded by the settings' ``step_timeout_seconds``; a failure raises a
          :class:`~devicefit.evaluators._errors.MeasurementError` subclass that says why.

    Attributes:
        power_mode: The power mode the runs use, or None where the device has none (known after a block).
        cpu_affinity: CPUs the runs are pinned to (``"1"``, ``"2,3"``), or None (known after a block).
    """

    power_mode: str | None = None
    cpu_affinity: str | None = None

    @abc.abstractmethod
    def stage(self, name: str, nb_file: Path, inputs: Sequence[Path]) -> StagedModel:
        """Put ``nb_file`` and its ``.npy`` inputs on the device."""

    @abc.abstractmethod
    def time_block(self, model: StagedModel, warmup: int, runs: int) -> BlockTiming:
        """Time one block of ``runs`` runs of ``model`` after ``warmup`` untimed runs."""

    @abc.abstractmethod
    def peak_memory(self, model: StagedModel, warmup: int, runs: int) -> MemoryFigure | None:
        """Peak memory of inference of ``model``, or None where the device's tool cannot tell."""

    @abc.abstractmethod
    def close(self) -> None:
        """Remove what the session put on the device (best effort; never raises for a gone device)."""

    def __enter__(self) -> DeviceSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class DeviceRunner(abc.ABC):
    """Opens measurement sessions on the devices of one reach kind (``local``, ``adb`` or ``ssh``).

    Contract:
        - :meth:`check` raises :class:`~devicefit.evaluators._errors.DeviceUnavailableError` with a one-line
          reason when the device cannot be measured (tool missing, not connected, profile incomplete), and
          does nothing on the device.
        - :meth:`runtime_version` names the Paddle Lite runtime that would run the models; it is part of the
          latency cache key, so it must change whenever that runtime does.
        - :meth:`open` returns a :class:`DeviceSession`. Runners hold no device state between sessions.
          It raises ``ValueError``, before touching the device, for settings the device's tool cannot honour
          (a ``thread_cpu`` clock where the tool only reports wall time, or with more than one thread).
    """

    reach_kind: ClassVar[str]

    def check(self, profile: DeviceProfile) -> None:
        """Fail with a one-line reason unless ``profile``'s device can be measured now."""
        self.require_kind(profile)

    @abc.abstractmethod
    def runtime_version(self, profile: DeviceProfile) -> str:
        """The Paddle Lite runtime that runs models on ``profile``'s device."""

    @abc.abstractmethod
    def open(self, profile: DeviceProfile, settings: MeasureSettings) -> DeviceSession:
        """Start a session on ``profile``'s device."""

    def require_kind(self, profile: DeviceProfile) -> None:
        """Raise unless ``profile`` is reached the way this runner reaches devices."""
        if profile.reach.kind != self.reach_kind:
            raise DeviceUnavailableError(
                f"{profile.id} is reached by '{profile.reach.kind}', not by '{self.reach_kind}'", device_id=profile.id
            )


def physical_device_key(profile: DeviceProfile) -> str:
    """The physical device behind a profile: two profiles of one phone (CPU and GPU) share it.

    It names the device lease and is part of the latency cache key: ``local:<this host's name>``,
    ``adb:<serial>`` or ``ssh:<host>``.
    """
    reach = profile.reach
    if reach.kind == "adb":
        return f"adb:{reach.serial}"
    if reach.kind == "ssh":
        return f"ssh:{reach.host}"
    if reach.kind == "local":
        return f"local:{socket.gethostname()}"
    return f"none:{profile.id}"


def require_wall_clock(profile: DeviceProfile, settings: MeasureSettings, tool: str) -> None:
    """Raise ``ValueError`` unless ``settings`` time wall clock: for runners whose ``tool`` reports nothing else."""
    if settings.clock != "wall":
        raise ValueError(f"{profile.id}: {tool} reports wall time only; the '{settings.clock}' clock is not available")


def require_clock_threads(profile: DeviceProfile, settings: MeasureSettings) -> None:
    """Raise ``ValueError`` when ``settings`` ask for the ``thread_cpu`` clock with several threads.

    The CPU time of one thread measures the whole run only when the model runs in that thread alone.
    """
    if settings.clock == "thread_cpu" and profile.threads != 1:
        raise ValueError(
            f"{profile.id}: the thread_cpu clock times the calling thread only, so it needs threads: 1 "
            f"(the profile has {profile.threads})"
        )


def power_mode_value(profile: DeviceProfile) -> int:
    """Paddle Lite's ``PowerMode`` value for the profile's power mode."""
    return POWER_MODE_VALUES[profile.power_mode]


def session_folder_name() -> str:
    """A folder name no other session uses: ``<this host>-<pid>-<random>``."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:40]
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"
