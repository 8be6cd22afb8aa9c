"""Device profiles: what a device is, how Paddle Lite targets it, and how devicefit reaches it.

A profile is versioned data, one YAML file per device, validated against :class:`DeviceProfile`. The files
shipped with devicefit live in ``device_profiles/profiles/``; a user adds their own by passing a path.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from devicefit.device_profiles._schema import SchemaError, load_yaml

Precision = Literal["fp32", "fp16", "int8"]
PowerMode = Literal["high", "low", "full", "no_bind", "rand_high", "rand_low"]

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"


class UnknownDeviceError(LookupError):
    """No profile has the requested id."""


@dataclasses.dataclass(frozen=True)
class Reach:
    """How devicefit reaches the device to measure on it.

    Attributes:
        kind: ``local`` (this machine, through the Lite worker), ``adb`` (an Android phone), ``ssh`` (an ARM
            Linux board), or ``none`` (nobody can measure it here: latency is predicted).
        serial: The adb serial (``adb -s``), for ``adb``: one of the serials ``adb devices`` lists.
        host: The ssh destination (``user@host``, or a ``Host`` alias of ``~/.ssh/config``), for ``ssh``. Login
            must work without a password prompt (keys or an agent): devicefit runs ssh in batch mode.
        benchmark_bin: For ``adb``: the path on this machine of Paddle Lite's ``benchmark_bin`` built for the
            phone (``lite/tools/build_android.sh --with_benchmark=ON full_publish``); ``~`` is expanded, a
            relative path is relative to the working directory.
        libraries: For ``adb``: shared libraries pushed next to ``benchmark_bin`` and found through
            ``LD_LIBRARY_PATH`` (for NNAdapter: the NNAdapter runtime, the device HAL and the vendor DDK).
        work_dir: Folder on the device under which each measurement makes (and removes) its own folder.
            Default: ``/data/local/tmp/devicefit`` for ``adb``; ``devicefit`` (under the login's home) for ``ssh``.
        python: For ``ssh``: the board's Python that imports ``paddlelite`` (devicefit copies its Lite worker
            script there and runs it with this interpreter).
    """

    kind: Literal["local", "adb", "ssh", "none"]
    serial: str | None = None
    host: str | None = None
    benchmark_bin: str | None = None
    libraries: tuple[str, ...] = ()
    work_dir: str | None = None
    python: str = "python3"

    def __post_init__(self) -> None:
        if self.kind == "adb" and not self.serial:
            raise ValueError("serial is required for a device reached by adb (one of the serials `adb devices` lists)")
        if self.kind == "ssh" and not self.host:
            raise ValueError("host is required for a device reached by ssh (user@host or an ssh config alias)")
        if self.work_dir is not None and (not self.work_dir.strip() or self.work_dir.strip() in ("/", "~", ".")):
            raise ValueError(f"work_dir must name a folder devicefit may fill and empty, got {self.work_dir!r}")


@dataclasses.dataclass(frozen=True)
class DeviceProfile:
    """One device, as devicefit needs to know it.

    Attributes:
        id: Stable identifier, used on the command line and in file names (``host-x86``, ``sd865-cpu-4t``).
        name: Human name.
        soc: The system on chip (or host CPU) it describes.
        unit: Which unit runs the model: ``cpu``, ``gpu`` or ``npu``.
        places: Paddle Lite valid places for ``opt``, e.g. ``x86``, ``arm``, ``opencl,arm``,
            ``huawei_kirin_npu,arm``.
        reach: How it is reached for measurement.
        threads: Inference threads.
        power_mode: Paddle Lite power mode (ARM CPUs; ignored elsewhere).
        precisions: Precisions the device runs with real kernels. A candidate whose precision is not
            listed is rejected before any work.
        memory_limit_bytes: Peak inference memory the device tolerates, if it has a limit.
        version: Profile version; calibration writes a new version.
        notes: Where the profile's facts come from.
    """

    id: str
    name: str
    soc: str
    unit: Literal["cpu", "gpu", "npu"]
    places: str
    reach: Reach
    threads: int = 1
    power_mode: PowerMode = "high"
    precisions: tuple[Precision, ...] = ("fp32",)
    memory_limit_bytes: int | None = None
    version: int = 1
    notes: str = ""

    def __post_init__(self) -> None:
        if not self.id or any(c.isspace() or c in "/\\" for c in self.id):
            raise ValueError(f"id must be a non-empty name without spaces or slashes, got {self.id!r}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if "fp32" not in self.precisions:
            raise ValueError("precisions must include fp32 (every Paddle Lite target runs fp32)")
        if self.memory_limit_bytes is not None and self.memory_limit_bytes <= 0:
            raise ValueError(f"memory_limit_bytes must be positive, got {self.memory_limit_bytes}")

    @property
    def measurable(self) -> bool:
        """Whether latency can be measured on the device (otherwise it can only be predicted)."""
        return self.reach.kind != "none"


def load_profile_file(path: Path) -> DeviceProfile:
    """Load and validate one profile file.

    Raises:
        SchemaError: The file does not match :class:`DeviceProfile` (the message names file, line and key).
    """
    profile = load_yaml(Path(path), DeviceProfile, what="device profile")
    if Path(path).stem != profile.id and Path(path).parent == PROFILES_DIR:
        raise SchemaError(f"{path}:1: the file name must be the profile id ('{profile.id}.yaml')")
    return profile


def list_profiles() -> list[DeviceProfile]:
    """Every profile shipped with devicefit, sorted by id."""
    return [load_profile_file(path) for path in sorted(PROFILES_DIR.glob("*.yaml"))]


def load_profile(device: str) -> DeviceProfile:
    """Find a profile by id (a shipped profile) or by path (a user's YAML file).

    Raises:
        UnknownDeviceError: No shipped profile has that id and it is not a file.
        SchemaError: The file is invalid.
    """
    candidate = Path(device)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return load_profile_file(candidate)
    path = PROFILES_DIR / f"{device}.yaml"
    if path.is_file():
        return load_profile_file(path)
    known = ", ".join(p.stem for p in sorted(PROFILES_DIR.glob("*.yaml")))
    raise UnknownDeviceError(f"unknown device '{device}' (known: {known}; or give the path of a profile .yaml)")
