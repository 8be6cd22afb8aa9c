"""Android phones over ``adb``: Paddle Lite's ``benchmark_bin`` is pushed with the model and run on the phone.

One session on a phone::

    adb -s SERIAL shell mkdir -p <work_dir>/<session>
    adb -s SERIAL push <benchmark_bin> <work_dir>/<session>/benchmark_bin      (+ the profile's libraries)
    adb -s SERIAL shell chmod 755 <work_dir>/<session>/benchmark_bin
    adb -s SERIAL push <model>.nb <work_dir>/<session>/candidate.nb             (+ one .txt per input)
    adb -s SERIAL shell 'cd <dir> && echo $$ > run.pid && LD_LIBRARY_PATH=.:$LD_LIBRARY_PATH exec ./benchmark_bin ...'
    ...                                                                          (one invocation per block)
    adb -s SERIAL shell rm -rf <work_dir>/<session>

Each ``benchmark_bin`` invocation is one block: it reports the mean, minimum and maximum of its ``--repeats``
runs, never per-run times (see ``_benchmark_bin.py``), so blocks carry means. A timed-out invocation is killed
on the phone through the pid it wrote (``exec`` keeps the shell's pid), not by name.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from devicefit.device_profiles._profile import DeviceProfile
from devicefit.evaluators._benchmark_bin import (
    INPUT_TYPES,
    BenchmarkArgs,
    BenchmarkOutputError,
    BenchmarkReport,
    check_report,
    format_input_values,
    parse_report,
)
from devicefit.evaluators._errors import (
    DeviceCommandError,
    DeviceGoneError,
    DeviceUnavailableError,
    MeasurementTimeout,
    UnparsableOutputError,
    tail_lines,
)
from devicefit.evaluators._nnadapter import benchmark_backend
from devicefit.evaluators._protocol import MeasureSettings
from devicefit.evaluators._runner import (
    DeviceRunner,
    DeviceSession,
    MemoryFigure,
    NpyInput,
    StagedModel,
    power_mode_value,
    require_wall_clock,
    session_folder_name,
)
from devicefit.evaluators._stats import BlockTiming
from devicefit.evaluators._tools import ToolMissingError, ToolResult, ToolTimeout, describe_exit, resolve_tool, run_tool

#: Environment variable naming the ``adb`` executable (default: ``adb`` on ``PATH``, Debian package ``adb``).
ADB_ENV = "DEVICEFIT_ADB"
#: Device folder used when the profile names none.
DEFAULT_WORK_DIR = "/data/local/tmp/devicefit"
#: Bound (seconds) of short adb commands: listing devices, mkdir, chmod, cleanup.
SHORT_COMMAND_SECONDS = 30.0

#: What the adb client prints when the phone is not there (any more).
_GONE = re.compile(
    r"device '[^']*' not found|device offline|device unauthorized|no devices/emulators found|"
    r"error: closed|device still connecting|failed to get feature set|protocol fault|connection reset",
    re.IGNORECASE,
)


def file_digest(path: Path) -> str:
    """SHA-256 (hex) of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class AdbRunner(DeviceRunner):
    """Android phones reached with ``adb``, timed with the user's Paddle Lite ``benchmark_bin``.

    Args:
        adb: The ``adb`` executable (default: ``$DEVICEFIT_ADB``, else ``adb`` on ``PATH``). Tests point it at
            ``tests/fakes/fake_adb.py``.
    """

    reach_kind = "adb"

    def __init__(self, adb: str | None = None) -> None:
        self._adb = adb
        self._digests: dict[tuple[str, int, int], str] = {}

    def adb_path(self, device_id: str = "") -> str:
        """The resolved ``adb`` executable.

        Raises:
            DeviceUnavailableError: It cannot be found.
        """
        try:
            return resolve_tool(self._adb, ADB_ENV, "adb")
        except ToolMissingError as exc:
            raise DeviceUnavailableError(
                f"adb is not available ({exc}): install it (Debian: apt-get install adb) or set {ADB_ENV}",
                device_id=device_id,
            ) from None

    def benchmark_bin(self, profile: DeviceProfile) -> Path:
        """The profile's ``benchmark_bin`` on this host.

        Raises:
            DeviceUnavailableError: The profile names none, or the file does not exist.
        """
        configured = profile.reach.benchmark_bin
        if not configured:
            raise DeviceUnavailableError(
                f"{profile.id}: its profile names no benchmark_bin (reach.benchmark_bin: the Paddle Lite "
                "benchmark_bin built for this phone with --with_benchmark=ON)",
                device_id=profile.id,
            )
        path = Path(os.path.expanduser(configured)).resolve()
        if not path.is_file():
            raise DeviceUnavailableError(
                f"{profile.id}: reach.benchmark_bin {path} does not exist", device_id=profile.id
            )
        for library in profile.reach.libraries:
            if not Path(os.path.expanduser(library)).is_file():
                raise DeviceUnavailableError(
                    f"{profile.id}: reach.libraries names {library}, which does not exist", device_id=profile.id
                )
        return path

    def listed_devices(self, device_id: str = "") -> dict[str, str]:
        """Serial -> state (``device``, ``offline``, ``unauthorized`` ...) as ``adb devices`` lists them."""
        adb = self.adb_path(device_id)
        try:
            result = run_tool([adb, "devices"], timeout_seconds=SHORT_COMMAND_SECONDS)
        except ToolTimeout as exc:
            raise DeviceUnavailableError(f"`adb devices` did not answer: {exc}", device_id=device_id) from None
        if result.exit_code != 0:
            raise DeviceUnavailableError(
                f"`adb devices` failed ({describe_exit(result.exit_code)}): {' '.join(tail_lines(result.output, 2))}",
                device_id=device_id,
            )
        listed: dict[str, str] = {}
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2 and not line.startswith(("List of devices", "*")):
                listed[parts[0]] = parts[1]
        return listed

    def check(self, profile: DeviceProfile) -> None:
        """Check that adb exists, the serial is listed as ``device``, and the profile's files exist."""
        self.require_kind(profile)
        self.benchmark_bin(profile)
        listed = self.listed_devices(profile.id)
        serial = profile.reach.serial
        state = listed.get(str(serial))
        if state is None:
            known = ", ".join(f"{s} ({st})" for s, st in sorted(listed.items())) or "none"
            raise DeviceUnavailableError(
                f"{profile.id}: serial {serial} is not listed by `adb devices` (listed: {known})", device_id=profile.id
            )
        if state != "device":
            raise DeviceUnavailableError(
                f"{profile.id}: serial {serial} is '{state}' in `adb devices`, not ready ('device')",
                device_id=profile.id,
            )

    def runtime_version(self, profile: DeviceProfile) -> str:
        """``benchmark_bin sha256:<16 hex>``, over the binary and the libraries pushed with it."""
        self.require_kind(profile)
        files = [self.benchmark_bin(profile), *(Path(os.path.expanduser(p)) for p in profile.reach.libraries)]
        digests = []
        for path in files:
            stat = path.stat()
            key = (str(path), stat.st_mtime_ns, stat.st_size)
            if key not in self._digests:
                self._digests[key] = file_digest(path)
            digests.append(self._digests[key])
        combined = hashlib.sha256("\n".join(digests).encode()).hexdigest()
        return f"benchmark_bin sha256:{combined[:16]}"

    def open(self, profile: DeviceProfile, settings: MeasureSettings) -> DeviceSession:
        self.require_kind(profile)
        require_wall_clock(profile, settings, "benchmark_bin")
        return AdbSession(self, profile, settings)


class AdbSession(DeviceSession):
    """One visit to a phone: a folder of its own under the profile's work_dir, removed by :meth:`close`."""

    def __init__(self, runner: AdbRunner, profile: DeviceProfile, settings: MeasureSettings) -> None:
        self.runner = runner
        self.profile = profile
        self.settings = settings
        self.adb = runner.adb_path(profile.id)
        self.serial = str(profile.reach.serial)
        self.backend, self.nnadapter_devices = benchmark_backend(profile.places)
        self.power_mode = profile.power_mode
        base = (profile.reach.work_dir or DEFAULT_WORK_DIR).rstrip("/")
        self.directory = f"{base}/{session_folder_name()}"
        self._local = Path(tempfile.mkdtemp(prefix="devicefit-adb-"))
        self._created = False
        try:
            self._shell(f"mkdir -p {shlex.quote(self.directory)}", "making the session folder")
            self._created = True
            self._push(runner.benchmark_bin(profile), "benchmark_bin")
            for library in profile.reach.libraries:
                path = Path(os.path.expanduser(library))
                self._push(path, path.name)
            self._shell(f"chmod 755 {shlex.quote(self.directory + '/benchmark_bin')}", "making benchmark_bin executable")
        except BaseException:
            self.close()
            raise

    # -- adb plumbing --------------------------------------------------------------------------------

    def _adb(self, args: Sequence[str], what: str, timeout_seconds: float) -> ToolResult:
        argv = [self.adb, "-s", self.serial, *args]
        try:
            result = run_tool(argv, timeout_seconds=timeout_seconds)
        except ToolTimeout as exc:
            raise MeasurementTimeout(
                f"{self.profile.id}: {what} took more than {exc.timeout_seconds:g} s (adb was killed)",
                timeout_seconds=exc.timeout_seconds,
                device_id=self.profile.id,
                output_tail=tail_lines(exc.stdout + "\n" + exc.stderr),
            ) from None
        except ToolMissingError as exc:
            raise DeviceUnavailableError(f"{self.profile.id}: {exc}", device_id=self.profile.id) from None
        if _GONE.search(result.stderr) or (result.exit_code != 0 and _GONE.search(result.stdout)):
            raise DeviceGoneError(
                f"{self.profile.id}: the phone (serial {self.serial}) went away while {what}: "
                f"{' '.join(tail_lines(result.output, 2))}",
                device_id=self.profile.id,
                output_tail=tail_lines(result.output),
            )
        return result

    def _shell(self, command: str, what: str, timeout_seconds: float = SHORT_COMMAND_SECONDS) -> ToolResult:
        result = self._adb(["shell", command], what, timeout_seconds)
        if result.exit_code != 0:
            raise DeviceCommandError(
                f"{self.profile.id}: {what} failed on the phone ({describe_exit(result.exit_code)}): "
                f"{' '.join(tail_lines(result.output, 3))}",
                exit_code=result.exit_code,
                device_id=self.profile.id,
                output_tail=tail_lines(result.output),
            )
        return result

    def _push(self, local: Path, name: str) -> str:
        remote = f"{self.directory}/{name}"
        result = self._adb(["push", str(local), remote], f"pushing {local.name}", self.settings.step_timeout_seconds)
        if result.exit_code != 0:
            raise DeviceCommandError(
                f"{self.profile.id}: adb push {local.name} failed ({describe_exit(result.exit_code)}): "
                f"{' '.join(tail_lines(result.output, 3))}",
                exit_code=result.exit_code,
                device_id=self.profile.id,
                output_tail=tail_lines(result.output),
            )
        return remote

    # -- the session ---------------------------------------------------------------------------------

    def stage(self, name: str, nb_file: Path, inputs: Sequence[Path]) -> StagedModel:
        described = tuple(NpyInput.read(Path(p)) for p in inputs)
        unsupported = [i.dtype for i in described if i.dtype not in INPUT_TYPES]
        if unsupported:
            raise DeviceCommandError(
                f"{self.profile.id}: benchmark_bin feeds only {sorted(INPUT_TYPES)} inputs; this model has "
                f"{unsupported}",
                exit_code=None,
                device_id=self.profile.id,
            )
        device_nb = self._push(Path(nb_file), f"{name}.nb")
        device_inputs = []
        for index, item in enumerate(described):
            text = self._local / f"{name}_input{index}.txt"
            values = np.load(item.path, allow_pickle=False).reshape(-1)
            text.write_text(format_input_values(values.tolist(), item.dtype))
            device_inputs.append(self._push(text, text.name))
        return StagedModel(name, Path(nb_file), described, device_nb, tuple(device_inputs))

    def _args(self, model: StagedModel, warmup: int, runs: int, memory_profile: bool) -> BenchmarkArgs:
        return BenchmarkArgs(
            model_file=model.device_nb,
            input_shapes=tuple(i.shape for i in model.inputs),
            input_files=model.device_inputs,
            input_types=tuple(i.dtype for i in model.inputs),
            warmup=warmup,
            repeats=runs,
            threads=self.profile.threads,
            power_mode=power_mode_value(self.profile),
            backend=self.backend,
            nnadapter_device_names=self.nnadapter_devices,
            memory_profile=memory_profile,
            opencl_cache_dir=self.directory,
            opencl_files_prefix=model.name,
        )

    def _benchmark(self, args: BenchmarkArgs, what: str) -> BenchmarkReport:
        pid_file = f"{self.directory}/run.pid"
        command = (
            f"cd {shlex.quote(self.directory)} && echo $$ > run.pid && "
            f"LD_LIBRARY_PATH=.:$LD_LIBRARY_PATH exec ./benchmark_bin {shlex.join(args.to_argv())}"
        )
        try:
            result = self._adb(["shell", command], what, self.settings.step_timeout_seconds)
        except MeasurementTimeout:
            self._kill_by_pid_file(pid_file)
            raise
        try:
            report = parse_report(result.stdout, result.stderr)
            check_report(report, args)
        except BenchmarkOutputError as exc:
            if result.exit_code != 0 and "Perf Info" not in result.stdout:
                raise DeviceCommandError(
                    f"{self.profile.id}: benchmark_bin failed while {what} ({describe_exit(result.exit_code)}): "
                    f"{' '.join(tail_lines(result.output, 3))}",
                    exit_code=result.exit_code,
                    device_id=self.profile.id,
                    output_tail=tail_lines(result.output),
                ) from None
            raise UnparsableOutputError(
                f"{self.profile.id}: {exc} (while {what})", device_id=self.profile.id, output_tail=tail_lines(result.output)
            ) from None
        return report

    def _kill_by_pid_file(self, pid_file: str) -> None:
        """Kill a timed-out benchmark_bin on the phone by the pid it wrote (best effort)."""
        quoted = shlex.quote(pid_file)
        command = f'p=$(cat {quoted} 2>/dev/null) && [ -n "$p" ] && kill -9 "$p"'
        try:
            run_tool([self.adb, "-s", self.serial, "shell", command], timeout_seconds=SHORT_COMMAND_SECONDS)
        except (ToolTimeout, ToolMissingError):
            pass

    def time_block(self, model: StagedModel, warmup: int, runs: int) -> BlockTiming:
        args = self._args(model, warmup, runs, memory_profile=False)
        report = self._benchmark(args, f"timing {model.name}")
        return BlockTiming(runs=runs, mean_ms=report.avg_ms, min_ms=report.min_ms, max_ms=report.max_ms)

    def peak_memory(self, model: StagedModel, warmup: int, runs: int) -> MemoryFigure | None:
        args = self._args(model, warmup, runs, memory_profile=True)
        report = self._benchmark(args, f"measuring the memory of {model.name}")
        if report.memory_peak_bytes is None:
            return None
        return MemoryFigure(
            peak_bytes=report.memory_peak_bytes,
            process_peak_bytes=report.memory_peak_bytes,
            method="benchmark_bin --enable_memory_profile: peak RSS of the benchmark_bin process (model and runtime)",
        )

    def close(self) -> None:
        """Remove the session folder from the phone (best effort) and the local scratch files."""
        if self._created:
            self._created = False
            try:
                run_tool(
                    [self.adb, "-s", self.serial, "shell", f"rm -rf {shlex.quote(self.directory)}"],
                    timeout_seconds=SHORT_COMMAND_SECONDS,
                )
            except (ToolTimeout, ToolMissingError):
                pass  # the phone is gone or hung: nothing more to do from here
        shutil.rmtree(self._local, ignore_errors=True)
