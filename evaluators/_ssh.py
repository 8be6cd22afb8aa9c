"""ARM Linux boards over ``ssh``: devicefit's own Lite worker script is copied to the board and run there with
the board's Python and Paddle Lite, so a board is timed exactly like this host (per-run times included).

One session on a board::

    ssh -o BatchMode=yes HOST 'mkdir -p <work_dir>/<session>'
    scp lite_worker.py HOST:<work_dir>/<session>/
    ssh -o BatchMode=yes -T HOST 'cd <dir> && echo $$ > worker.pid && exec <python> lite_worker.py'
        ... the JSON-lines protocol of lite_worker.py over that ssh's stdin/stdout ...
    scp candidate.nb candidate_input0.npy ... HOST:<dir>/            (per staged model)
    ssh HOST '<kill the worker by its pid if it is still there>; rm -rf <dir>'

A dropped connection shows up as ssh exiting with status 255: that is reported as the board going away.
"""

from __future__ import annotations

import re
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from devicefit.device_profiles._profile import DeviceProfile
from devicefit.evaluators._errors import (
    DeviceCommandError,
    DeviceGoneError,
    DeviceUnavailableError,
    MeasurementError,
    MeasurementTimeout,
    UnparsableOutputError,
    tail_lines,
)
from devicefit.evaluators._host import LiteWorkerSession
from devicefit.evaluators._lite_client import (
    LiteUnavailableError,
    LiteWorker,
    LiteWorkerCrashed,
    LiteWorkerError,
    worker_script_path,
)
from devicefit.evaluators._protocol import MeasureSettings
from devicefit.evaluators._runner import (
    DeviceRunner,
    DeviceSession,
    NpyInput,
    StagedModel,
    power_mode_value,
    require_clock_threads,
    session_folder_name,
)
from devicefit.evaluators._tools import ToolMissingError, ToolResult, ToolTimeout, describe_exit, resolve_tool, run_tool

#: Environment variables naming the ``ssh`` and ``scp`` executables (default: on ``PATH``).
SSH_ENV = "DEVICEFIT_SSH"
SCP_ENV = "DEVICEFIT_SCP"
#: Board folder used when the profile names none (relative: under the login's home).
DEFAULT_WORK_DIR = "devicefit"
#: ssh's exit status when the connection itself failed.
SSH_CONNECTION_FAILED = 255

#: Prints the board's Paddle Lite version (run with the profile's python; standard library + paddlelite).
_VERSION_PROBE = (
    "import importlib.metadata as m, platform\n"
    "try:\n v = m.version('paddlelite')\n"
    "except Exception:\n v = '?'\n"
    "print('DEVICEFIT_RUNTIME paddlelite %s python %s %s' % (v, platform.python_version(), platform.machine()))\n"
)
_RUNTIME_LINE = re.compile(r"^DEVICEFIT_RUNTIME (.+)$", re.MULTILINE)


class SshRunner(DeviceRunner):
    """ARM Linux boards reached with ``ssh``/``scp``, timed by devicefit's Lite worker running on the board.

    Args:
        ssh: The ``ssh`` executable (default: ``$DEVICEFIT_SSH``, else ``ssh`` on ``PATH``).
        scp: The ``scp`` executable (default: ``$DEVICEFIT_SCP``, else ``scp`` on ``PATH``).
        connect_timeout_seconds: ssh's ``ConnectTimeout``, and the bound of short commands is 3 times it.
    """

    reach_kind = "ssh"

    def __init__(self, ssh: str | None = None, scp: str | None = None, *, connect_timeout_seconds: float = 15.0) -> None:
        self._ssh = ssh
        self._scp = scp
        self.connect_timeout_seconds = connect_timeout_seconds
        self._runtimes: dict[tuple[str, str], str] = {}

    @property
    def short_seconds(self) -> float:
        """Bound of short commands (connect, mkdir, cleanup), in seconds."""
        return 3 * self.connect_timeout_seconds

    def tools(self, device_id: str = "") -> tuple[str, str]:
        """The resolved ``ssh`` and ``scp`` executables.

        Raises:
            DeviceUnavailableError: One cannot be found.
        """
        try:
            return resolve_tool(self._ssh, SSH_ENV, "ssh"), resolve_tool(self._scp, SCP_ENV, "scp")
        except ToolMissingError as exc:
            raise DeviceUnavailableError(
                f"ssh/scp are not available ({exc}): install OpenSSH's client or set {SSH_ENV}/{SCP_ENV}",
                device_id=device_id,
            ) from None

    def ssh_argv(self, profile: DeviceProfile, *, interactive_pipe: bool = False) -> list[str]:
        """``ssh`` with batch-mode options, up to and including the host (the remote command follows)."""
        ssh, _ = self.tools(profile.id)
        argv = [
            ssh,
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={int(self.connect_timeout_seconds)}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=3",
        ]
        if interactive_pipe:
            argv.append("-T")
        return [*argv, str(profile.reach.host)]

    def remote(self, profile: DeviceProfile, command: str, what: str, timeout_seconds: float | None = None) -> ToolResult:
        """Run ``command`` on the board; ssh failures become the measurement errors that say why."""
        bound = self.short_seconds if timeout_seconds is None else timeout_seconds
        try:
            result = run_tool([*self.ssh_argv(profile), command], timeout_seconds=bound)
        except ToolTimeout as exc:
            raise MeasurementTimeout(
                f"{profile.id}: {what} on {profile.reach.host} took more than {bound:g} s (ssh was killed)",
                timeout_seconds=bound,
                device_id=profile.id,
                output_tail=tail_lines(exc.stdout + "\n" + exc.stderr),
            ) from None
        if result.exit_code == SSH_CONNECTION_FAILED:
            raise DeviceGoneError(
                f"{profile.id}: cannot reach {profile.reach.host} while {what}: {' '.join(tail_lines(result.stderr, 1))}",
                device_id=profile.id,
                output_tail=tail_lines(result.output),
            )
        if result.exit_code != 0:
            raise DeviceCommandError(
                f"{profile.id}: {what} failed on {profile.reach.host} ({describe_exit(result.exit_code)}): "
                f"{' '.join(tail_lines(result.output, 3))}",
                exit_code=result.exit_code,
                device_id=profile.id,
                output_tail=tail_lines(result.output),
            )
        return result

    def copy_to(self, profile: DeviceProfile, files: Sequence[Path], directory: str, timeout_seconds: float) -> None:
        """``scp`` files into a folder on the board (their names are kept)."""
        _, scp = self.tools(profile.id)
        argv = [scp, "-q", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(self.connect_timeout_seconds)}",
                *(str(f) for f in files), f"{profile.reach.host}:{directory}/"]
        try:
            result = run_tool(argv, timeout_seconds=timeout_seconds)
        except ToolTimeout as exc:
            raise MeasurementTimeout(
                f"{profile.id}: copying {len(files)} file(s) to {profile.reach.host} took more than "
                f"{timeout_seconds:g} s (scp was killed)",
                timeout_seconds=timeout_seconds,
                device_id=profile.id,
                output_tail=tail_lines(exc.stderr),
            ) from None
        if result.exit_code != 0:
            message = ' '.join(tail_lines(result.stderr, 2))
            error = DeviceGoneError if _connection_lost(result) else DeviceCommandError
            text = f"{profile.id}: scp to {profile.reach.host} failed ({describe_exit(result.exit_code)}): {message}"
            if error is DeviceGoneError:
                raise DeviceGoneError(text, device_id=profile.id, output_tail=tail_lines(result.output))
            raise DeviceCommandError(text, exit_code=result.exit_code, device_id=profile.id,
                                     output_tail=tail_lines(result.output))

    def check(self, profile: DeviceProfile) -> None:
        """Check that ssh/scp exist and the board answers (``ssh HOST true`` in batch mode)."""
        self.require_kind(profile)
        try:
            self.remote(profile, "true", "connecting")
        except MeasurementError as exc:
            raise DeviceUnavailableError(str(exc), device_id=profile.id) from None

    def runtime_version(self, profile: DeviceProfile) -> str:
        """``paddlelite <version> python <version> <machine>`` as the board's interpreter reports it."""
        self.require_kind(profile)
        key = (str(profile.reach.host), profile.reach.python)
        if key not in self._runtimes:
            command = f"{profile.reach.python} -c {shlex.quote(_VERSION_PROBE)}"
            result = self.remote(profile, command, "asking for its Paddle Lite version")
            match = _RUNTIME_LINE.search(result.stdout)
            if match is None:
                raise UnparsableOutputError(
                    f"{profile.id}: {profile.reach.python} on {profile.reach.host} did not say its Paddle Lite version",
                    device_id=profile.id,
                    output_tail=tail_lines(result.output),
                )
            self._runtimes[key] = match.group(1).strip()
        return self._runtimes[key]

    def open(self, profile: DeviceProfile, settings: MeasureSettings) -> DeviceSession:
        self.require_kind(profile)
        require_clock_threads(profile, settings)
        return SshSession(self, profile, settings)


def _connection_lost(result: ToolResult) -> bool:
    return result.exit_code == SSH_CONNECTION_FAILED or bool(
        re.search(r"lost connection|Connection (refused|closed|timed out|reset)|No route to host|"
                  r"Could not resolve hostname|Network is unreachable|Broken pipe", result.stderr)
    )


class SshSession(LiteWorkerSession):
    """One visit to a board: its own folder under the profile's work_dir, with the worker script, the models
    and their inputs; :meth:`close` stops the remote worker and removes the folder."""

    def __init__(self, runner: SshRunner, profile: DeviceProfile, settings: MeasureSettings) -> None:
        self.runner = runner
        base = (profile.reach.work_dir or DEFAULT_WORK_DIR).rstrip("/")
        self.directory = f"{base}/{session_folder_name()}"
        self._local = Path(tempfile.mkdtemp(prefix="devicefit-ssh-"))
        self._created = False
        self.profile = profile
        self._worker: LiteWorker | None = None
        try:
            runner.remote(profile, f"mkdir -p {shlex.quote(self.directory)}", "making the session folder")
            self._created = True
            runner.copy_to(profile, [worker_script_path()], self.directory, settings.step_timeout_seconds)
            directory = shlex.quote(self.directory)
            command = f"cd {directory} && echo $$ > worker.pid && exec {profile.reach.python} lite_worker.py"
            self._worker = LiteWorker(
                command=[*runner.ssh_argv(profile, interactive_pipe=True), command],
                timeout_seconds=settings.step_timeout_seconds,
                start_timeout_seconds=min(settings.step_timeout_seconds, 120.0),
            )
            try:
                super().__init__(
                    self._worker,
                    profile,
                    settings,
                    cpu_affinity=None,  # on a board the power mode picks the cores
                    power_mode=power_mode_value(profile),
                    where=str(profile.reach.host),
                )
            except LiteUnavailableError as exc:
                raise DeviceUnavailableError(
                    f"{profile.id}: the Lite worker did not start on {profile.reach.host} with "
                    f"{profile.reach.python} (does it import paddlelite?): {str(exc).splitlines()[0]}",
                    device_id=profile.id,
                    output_tail=tail_lines(str(exc)),
                ) from None
            except LiteWorkerError as exc:
                raise self._failure(exc, "starting the Lite worker") from exc
        except BaseException:
            self.close()
            raise

    def stage(self, name: str, nb_file: Path, inputs: Sequence[Path]) -> StagedModel:
        described = tuple(NpyInput.read(Path(p)) for p in inputs)
        staged = self._local / name
        staged.mkdir(parents=True, exist_ok=True)
        names = [f"{name}.nb", *(f"{name}_input{i}.npy" for i in range(len(described)))]
        sources = [Path(nb_file), *(item.path for item in described)]
        for source, target in zip(sources, names):
            shutil.copyfile(source, staged / target)
        self.runner.copy_to(self.profile, [staged / n for n in names], self.directory, self.settings.step_timeout_seconds)
        # The worker runs in the session folder: plain names are paths there.
        return StagedModel(name, Path(nb_file), described, names[0], tuple(names[1:]))

    def _failure(self, exc: LiteWorkerError, where: str) -> Exception:
        if isinstance(exc, LiteWorkerCrashed) and exc.exit_code == SSH_CONNECTION_FAILED:
            return DeviceGoneError(
                f"{self.profile.id}: the connection to {self.profile.reach.host} was lost while {where}",
                device_id=self.profile.id,
                output_tail=exc.stderr_tail[-20:],
            )
        return super()._failure(exc, where)

    def close(self) -> None:
        """Stop the remote worker (by the pid it wrote) and remove the session folder; best effort."""
        if self._worker is not None:
            self._worker.close()
            self._worker = None
        if self._created:
            self._created = False
            directory = shlex.quote(self.directory)
            command = (
                f'p=$(cat {directory}/worker.pid 2>/dev/null); '
                f'if [ -n "$p" ] && grep -q lite_worker /proc/"$p"/cmdline 2>/dev/null; then kill -9 "$p"; fi; '
                f"rm -rf {directory}"
            )
            try:
                self.runner.remote(self.profile, command, "cleaning up")
            except MeasurementError:
                pass  # the board is gone: nothing more to do from here
        shutil.rmtree(self._local, ignore_errors=True)
