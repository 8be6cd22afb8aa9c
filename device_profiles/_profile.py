"""Device profiles: what a device is, how Paddle Lite targets it, how devicefit reaches it, and how its
latency is predicted.

A profile is versioned data, one YAML file per device, validated against :class:`DeviceProfile`. The files
shipped with devicefit live in ``device_profiles/profiles/`` (``<id>.yaml``) and are never rewritten by
devicefit. Calibration writes new versions as ``<id>.v<version>.yaml`` into the user's profile folder
(``$DEVICEFIT_PROFILES_DIR``, else ``~/.devicefit/profiles``) or a folder given on the command line; loading a
profile by id picks the highest version found in the shipped folder and the user's folder. A user can also
pass the path of any profile file.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml

from devicefit.device_profiles._predictor import PredictorParams
from devicefit.device_profiles._schema import SchemaError, load_yaml

Precision = Literal["fp32", "fp16", "int8"]
PowerMode = Literal["high", "low", "full", "no_bind", "rand_high", "rand_low"]

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
#: Environment variable naming the user's profile folder (calibrated versions are written there).
PROFILES_DIR_ENV = "DEVICEFIT_PROFILES_DIR"
_VERSIONED_NAME = re.compile(r"^(?P<id>.+)\.v(?P<version>[0-9]+)$")


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
        predictor: The kernel-level latency predictor's coefficients and their provenance; None when the
            device has none (its latency can then only be measured).
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
    predictor: PredictorParams | None = None

    def __post_init__(self) -> None:
        if not self.id or any(c.isspace() or c in "/\\" for c in self.id):
            raise ValueError(f"id must be a non-empty name without spaces or slashes, got {self.id!r}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if "fp32" not in self.precisions:
            raise ValueError("precisions must include fp32 (every Paddle Lite target runs fp32)")
        if self.memory_limit_bytes is not None and self.memory_limit_bytes <= 0:
            raise ValueError(f"memory_limit_bytes must be positive, got {self.memory_limit_bytes}")
        if self.version < 1:
            raise ValueError(f"version must be >= 1, got {self.version}")

    @property
    def measurable(self) -> bool:
        """Whether latency can be measured on the device (otherwise it can only be predicted)."""
        return self.reach.kind != "none"

    @property
    def calibrated(self) -> bool:
        """Whether the device's predictor was fitted on measurements of this device."""
        return self.predictor is not None and self.predictor.provenance.calibrated

    def describe_predictor(self) -> str:
        """One line on the predictor: calibrated or seeded, and its measured error if known."""
        if self.predictor is None:
            return "no predictor (latency can only be measured)"
        provenance = self.predictor.provenance
        state = "calibrated" if provenance.calibrated else "NOT calibrated (seeded from public figures)"
        error = provenance.error.describe() if provenance.error is not None else "error not measured"
        return f"{self.id} v{self.version} predictor {state}; {error}"


@dataclasses.dataclass(frozen=True)
class ProfileFile:
    """A profile together with the file it was read from.

    Attributes:
        profile: The validated profile.
        path: Its YAML file.
        shipped: Whether the file ships with devicefit (``device_profiles/profiles/``).
    """

    profile: DeviceProfile
    path: Path
    shipped: bool


def user_profiles_dir() -> Path:
    """The user's profile folder: ``$DEVICEFIT_PROFILES_DIR``, else ``~/.devicefit/profiles`` (may not exist)."""
    configured = os.environ.get(PROFILES_DIR_ENV, "").strip()
    return Path(configured).expanduser() if configured else Path.home() / ".devicefit" / "profiles"


def _expected_stem(path: Path, profile: DeviceProfile) -> str | None:
    """The file name stem a profile must have in a profile folder, or None outside them."""
    folder = path.resolve().parent
    if folder == PROFILES_DIR:
        return profile.id
    if folder == user_profiles_dir().resolve():
        return f"{profile.id}.v{profile.version}"
    return None


def load_profile_file(path: Path) -> DeviceProfile:
    """Load and validate one profile file.

    In the shipped folder a file must be named ``<id>.yaml``; in the user's folder ``<id>.v<version>.yaml``.

    Raises:
        SchemaError: The file does not match :class:`DeviceProfile` (the message names file, line and key).
    """
    path = Path(path)
    profile = load_yaml(path, DeviceProfile, what="device profile")
    expected = _expected_stem(path, profile)
    if expected is not None and path.stem != expected:
        raise SchemaError(f"{path}:1: the file name must be '{expected}.yaml' (profile id and version)")
    return profile


def _profile_paths() -> list[tuple[Path, bool]]:
    paths = [(p, True) for p in sorted(PROFILES_DIR.glob("*.yaml"))]
    user = user_profiles_dir()
    if user.is_dir() and user.resolve() != PROFILES_DIR:
        paths += [(p, False) for p in sorted(user.glob("*.yaml")) if _VERSIONED_NAME.match(p.stem)]
    return paths


def find_profiles(*, all_versions: bool = False) -> list[ProfileFile]:
    """Profiles in the shipped folder and the user's folder, sorted by id (then version).

    Args:
        all_versions: Every version of every device; by default only the highest version of each id.

    Raises:
        SchemaError: A profile file is invalid.
    """
    found = [ProfileFile(load_profile_file(path), path, shipped) for path, shipped in _profile_paths()]
    found.sort(key=lambda f: (f.profile.id, f.profile.version, not f.shipped))
    if all_versions:
        return found
    latest: dict[str, ProfileFile] = {}
    for entry in found:
        latest[entry.profile.id] = entry
    return list(latest.values())


def list_profiles() -> list[DeviceProfile]:
    """The highest version of every known profile (shipped and the user's), sorted by id."""
    return [entry.profile for entry in find_profiles()]


def next_version(device_id: str, *folders: Path) -> int:
    """One more than the highest version of ``device_id`` known (1 if none).

    Known: the shipped folder, the user's folder, and the ``<id>.v<N>.yaml`` files of ``folders``.
    """
    versions = [e.profile.version for e in find_profiles(all_versions=True) if e.profile.id == device_id]
    for folder in folders:
        for path in Path(folder).glob(f"{device_id}.v*.yaml"):
            match = _VERSIONED_NAME.match(path.stem)
            if match and match.group("id") == device_id:
                versions.append(int(match.group("version")))
    return max(versions, default=0) + 1


def load_profile(device: str) -> DeviceProfile:
    """Find a profile by id (highest version, shipped or the user's) or by path (a user's YAML file).

    Raises:
        UnknownDeviceError: No profile has that id and it is not a file.
        SchemaError: The file is invalid.
    """
    candidate = Path(device)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return load_profile_file(candidate)
    # A profile's file is named after its id (load_profile_file enforces it), so only that device's files are
    # parsed: a profile carries its whole kernel table, and parsing all of them took 4 s per lookup.
    paths = _profile_paths()
    matches = [ProfileFile(load_profile_file(path), path, shipped)
               for path, shipped in paths if _id_of_file(path, shipped) == device]
    if matches:
        matches.sort(key=lambda f: (f.profile.version, not f.shipped))
        return matches[-1].profile
    known = ", ".join(sorted({_id_of_file(path, shipped) for path, shipped in paths}))
    raise UnknownDeviceError(f"unknown device '{device}' (known: {known}; or give the path of a profile .yaml)")


def _id_of_file(path: Path, shipped: bool) -> str:
    """The device id a profile folder's file is named for (``<id>.yaml`` shipped, ``<id>.v<N>.yaml`` the user's)."""
    if shipped:
        return path.stem
    match = _VERSIONED_NAME.match(path.stem)
    return match.group("id") if match else path.stem


#: Significant digits of the numbers written into a profile (measurements are not more precise).
SIGNIFICANT_DIGITS = 5


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float):
        return 0.0 if abs(value) < 1e-9 else float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    return value


def dump_profile(profile: DeviceProfile, *, header: str = "") -> str:
    """The YAML text of a profile (reads back to an equal profile with :func:`load_profile_file`).

    Args:
        profile: The profile.
        header: Comment lines put first (each prefixed with ``# ``).
    """
    comments = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    body = yaml.safe_dump(_plain(profile), sort_keys=False, allow_unicode=True, width=110, default_flow_style=None)
    return comments + body


def write_profile(profile: DeviceProfile, directory: Path, *, header: str = "") -> Path:
    """Write ``profile`` as ``<directory>/<id>.v<version>.yaml``, never over an existing file.

    Raises:
        FileExistsError: That file exists already.
        ValueError: ``directory`` is the shipped profile folder (shipped profiles are edited by hand, in git).
    """
    directory = Path(directory)
    if directory.resolve() == PROFILES_DIR:
        raise ValueError(f"devicefit never writes into the shipped profile folder {PROFILES_DIR}")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{profile.id}.v{profile.version}.yaml"
    with open(path, "x", encoding="utf-8") as handle:  # "x": fails if the file exists
        handle.write(dump_profile(profile, header=header))
    return path
