"""Running the host-side tools that reach devices (``adb``, ``ssh``, ``scp``): found by a configurable path,
bounded by a timeout, and killed with everything they started when the bound passes."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence

#: Bound (seconds) of collecting a killed tool's last output.
KILL_GRACE_SECONDS = 5.0


class ToolMissingError(RuntimeError):
    """The tool's executable cannot be found."""


class ToolTimeout(RuntimeError):
    """The tool did not finish within its bound; it and its process group were killed.

    Attributes:
        timeout_seconds: The bound.
        stdout: What it printed on stdout before that.
        stderr: What it printed on stderr before that.
    """

    def __init__(self, message: str, *, timeout_seconds: float, stdout: str, stderr: str) -> None:
        super().__init__(message)
        self.timeout_seconds = timeout_seconds
        self.stdout = stdout
        self.stderr = stderr


@dataclasses.dataclass(frozen=True)
class ToolResult:
    """A finished tool run.

    Attributes:
        argv: The command.
        exit_code: Its exit status (negative: killed by that signal).
        stdout: Its standard output (UTF-8, undecodable bytes replaced).
        stderr: Its standard error.
        seconds: Wall time.
    """

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        """stdout then stderr."""
        return self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr


def resolve_tool(configured: str | None, env_var: str, default: str) -> str:
    """Find a tool's executable: ``configured`` if given, else ``$env_var``, else ``default`` on ``PATH``.

    Raises:
        ToolMissingError: It is neither an executable file nor a name found on ``PATH``.
    """
    name = configured or os.environ.get(env_var, "").strip() or default
    expanded = os.path.expanduser(name)
    if os.sep in expanded:
        if os.path.isfile(expanded) and os.access(expanded, os.X_OK):
            return expanded
        raise ToolMissingError(f"{expanded} is not an executable file")
    found = shutil.which(expanded)
    if found is None:
        raise ToolMissingError(f"'{expanded}' is not on PATH")
    return found


def run_tool(
    argv: Sequence[str],
    *,
    timeout_seconds: float,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> ToolResult:
    """Run a tool to completion within ``timeout_seconds``.

    The tool leads its own process group, so a timeout kills it and whatever it started (an ``ssh`` with
    its children, a shell pipeline) with one SIGKILL; the group is reaped before this returns.

    Raises:
        ToolMissingError: The executable does not exist.
        ToolTimeout: The bound passed.
    """
    started = time.perf_counter()
    try:
        process = subprocess.Popen(  # argv: a resolved tool path and its arguments
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ToolMissingError(f"cannot run {argv[0]}: {exc.strerror}") from None
    try:
        stdout, stderr = process.communicate(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
        try:
            stdout, stderr = process.communicate(timeout=KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:  # a grandchild kept a pipe open: give up on its output
            process.kill()
            stdout, stderr = b"", b""
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=KILL_GRACE_SECONDS)
        raise ToolTimeout(
            f"{os.path.basename(argv[0])} did not finish within {timeout_seconds:g} s; it was killed",
            timeout_seconds=timeout_seconds,
            stdout=_text(stdout),
            stderr=_text(stderr),
        ) from None
    return ToolResult(
        argv=tuple(argv),
        exit_code=process.returncode,
        stdout=_text(stdout),
        stderr=_text(stderr),
        seconds=time.perf_counter() - started,
    )


def describe_exit(code: int) -> str:
    """``exit 1``, ``killed by SIGSEGV``, or ``exit 139 (SIGSEGV through a shell)``."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code > 128:
        with contextlib.suppress(ValueError):
            return f"exit {code} ({signal.Signals(code - 128).name} through a shell)"
    return f"exit {code}"


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")
