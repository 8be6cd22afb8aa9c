"""Client of the Paddle Lite worker (``lite_worker.py``), for the devicefit (CPython 3.11) process.

Paddle Lite is never imported here: there is no wheel for 3.11, and it aborts the whole process on fatal
errors. :class:`LiteWorker` runs ``lite_worker.py`` in the Paddle Lite interpreter (found by
:func:`find_lite_python`) and talks to it with one JSON object per line. A crash or a hang of the worker
costs one request: it raises a :class:`LiteWorkerError`, the process is killed and reaped, and the next
request starts a fresh worker.

Example:
    >>> with LiteWorker() as lite:                                          # doctest: +SKIP
    ...     nb = lite.convert("m.pdmodel", "m.pdiparams", "x86", "out/m").nb_file
    ...     times_ms = lite.measure(nb, [InputSpec((1, 8, 32))], repeats=50)
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import selectors
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Union

__all__ = [
    "ConvertResult",
    "HelloResult",
    "InputSpec",
    "LiteOpError",
    "LiteProtocolError",
    "LiteUnavailableError",
    "LiteWorker",
    "LiteWorkerCrashed",
    "LiteWorkerError",
    "LiteWorkerTimeout",
    "MeasureResult",
    "MemoryResult",
    "ModelSupport",
    "OutputInfo",
    "RunResult",
    "SupportedOps",
    "find_lite_python",
    "worker_script_path",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Environment variable naming the Paddle Lite interpreter (an executable; a wrapper script is fine).
LITE_PYTHON_ENV = "DEVICEFIT_LITE_PYTHON"
#: Lines of the worker's stderr kept for error reports.
STDERR_TAIL_LINES = 200
#: Bounds (seconds) of the waits around a worker's life.
START_TIMEOUT_SECONDS = 60.0
SHUTDOWN_TIMEOUT_SECONDS = 5.0
REAP_TIMEOUT_SECONDS = 5.0
DRAIN_JOIN_TIMEOUT_SECONDS = 2.0


# --------------------------------------------------------------------------------------------------
# errors


class LiteUnavailableError(RuntimeError):
    """The Paddle Lite interpreter cannot be found or cannot start a working worker."""


class LiteWorkerError(RuntimeError):
    """A request to the Lite worker failed; the client stays usable (the next request may restart it).

    Attributes:
        op: The op of the failed request.
        stderr_tail: The last lines the worker wrote to stderr (its native prints included).
    """

    def __init__(self, message: str, *, op: str, stderr_tail: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.op = op
        self.stderr_tail: tuple[str, ...] = tuple(stderr_tail)


class LiteWorkerCrashed(LiteWorkerError):
    """The worker process died during a request (Paddle Lite's ``[F ...]`` abort, a segfault, ...).

    Attributes:
        exit_code: ``Popen.returncode``: negative for a signal (-6 SIGABRT, -11 SIGSEGV), or 134/139 when a
            shell wrapper reports the signal as an exit status.
        fatal_lines: Paddle Lite's fatal message (the ``[F`` line and the line after it), if any.
    """

    def __init__(self, message: str, *, op: str, exit_code: int | None, stderr_tail: Sequence[str] = ()) -> None:
        super().__init__(message, op=op, stderr_tail=stderr_tail)
        self.exit_code = exit_code
        self.fatal_lines: tuple[str, ...] = _fatal_lines(self.stderr_tail)


class LiteWorkerTimeout(LiteWorkerError):
    """The worker did not answer within the request's bound; it was killed.

    Attributes:
        timeout_seconds: The bound that was exceeded.
    """

    def __init__(self, message: str, *, op: str, timeout_seconds: float, stderr_tail: Sequence[str] = ()) -> None:
        super().__init__(message, op=op, stderr_tail=stderr_tail)
        self.timeout_seconds = timeout_seconds


class LiteOpError(LiteWorkerError):
    """The worker answered ``ok: false`` (a Python-level error in the op; the worker lives on).

    Attributes:
        error_type: The exception type name in the worker (e.g. ``FileNotFoundError``).
        worker_traceback: The worker-side traceback text.
    """

    def __init__(
        self,
        message: str,
        *,
        op: str,
        error_type: str,
        worker_traceback: str = "",
        stderr_tail: Sequence[str] = (),
    ) -> None:
        super().__init__(message, op=op, stderr_tail=stderr_tail)
        self.error_type = error_type
        self.worker_traceback = worker_traceback


class LiteProtocolError(LiteWorkerError):
    """The worker sent something that is not a valid response; it was killed."""


def _fatal_lines(tail: Sequence[str]) -> tuple[str, ...]:
    for index, line in enumerate(tail):
        if line.startswith("[F "):
            following = [ln for ln in tail[index + 1 : index + 3] if ln.strip()][:1]
            return (line, *following)
    return ()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if code > 128:
        try:
            return f"exit {code} ({signal.Signals(code - 128).name} through a shell)"
        except ValueError:
            pass
    return f"exit {code}"


# --------------------------------------------------------------------------------------------------
# finding the interpreter


def repo_root() -> Path:
    """Return the repository root: the parent of the ``evaluators/`` folder holding this file."""
    return Path(__file__).resolve().parent.parent


def worker_script_path() -> Path:
    """Return the path of ``lite_worker.py`` (shipped next to this module as package data)."""
    return Path(__file__).resolve().with_name("lite_worker.py")


def find_lite_python() -> list[str]:
    """Find the Paddle Lite interpreter as an argv prefix.

    Looks at the environment variable ``DEVICEFIT_LITE_PYTHON`` first, then ``<repo root>/.lite/bin/python``
    (written by ``make setup``).

    Returns:
        ``[path]``, ready to be followed by the worker script.

    Raises:
        LiteUnavailableError: Neither is an executable file.
    """
    configured = os.environ.get(LITE_PYTHON_ENV, "").strip()
    if configured:
        path = Path(configured).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return [str(path)]
        raise LiteUnavailableError(
            f"{LITE_PYTHON_ENV}={configured!r} is not an executable file. Point it at a CPython 3.9/3.10 "
            "interpreter (or a wrapper script) that can import paddlelite, or unset it and run `make setup`."
        )
    default = repo_root() / ".lite" / "bin" / "python"
    if default.is_file() and os.access(default, os.X_OK):
        return [str(default)]
    raise LiteUnavailableError(
        f"No Paddle Lite interpreter: {default} does not exist and {LITE_PYTHON_ENV} is not set. "
        f"Run `make setup` (it installs paddlelite into its own CPython 3.9/3.10), or set {LITE_PYTHON_ENV} "
        "to an interpreter that can import paddlelite."
    )


# --------------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class HelloResult:
    """What the worker says about itself.

    Attributes:
        pid: The worker's process id.
        python_version: Its CPython version, e.g. ``"3.10.13"``.
        paddlelite_version: The installed wheel's version, e.g. ``"2.13rc0"`` (None if unknown).
        opt_version: What ``Opt().version()`` says, e.g. ``"v2.13-rc"``.
        executable: The worker's ``sys.executable``.
        protocol: The worker's protocol version.
    """

    pid: int
    python_version: str
    paddlelite_version: str | None
    opt_version: str
    executable: str
    protocol: int


@dataclass(frozen=True)
class ConvertResult:
    """Files written by one ``opt`` conversion.

    Attributes:
        model_type: ``"naive_buffer"`` or ``"protobuf"``.
        valid_places: The Paddle Lite places string used.
        paths: ``(<prefix>.nb,)``, or ``(<prefix>/model, <prefix>/params)`` for protobuf.
        sizes_bytes: The size of each path.
        seconds: Wall time of ``Opt.run()``.
        log: What ``opt`` printed on stdout (for NNAdapter targets: the subgraph partition).
    """

    model_type: str
    valid_places: str
    paths: tuple[Path, ...]
    sizes_bytes: tuple[int, ...]
    seconds: float
    log: str = field(repr=False)

    @property
    def nb_file(self) -> Path:
        """The ``.nb`` file (naive_buffer conversions only)."""
        if self.model_type != "naive_buffer":
            raise ValueError(f"a {self.model_type} conversion has no .nb file")
        return self.paths[0]

    @property
    def program_file(self) -> Path:
        """The optimized program (protobuf ``ProgramDesc``; protobuf conversions only)."""
        if self.model_type != "protobuf":
            raise ValueError(f"a {self.model_type} conversion has no protobuf program file")
        return self.paths[0]

    @property
    def total_bytes(self) -> int:
        """The sum of :attr:`sizes_bytes`."""
        return sum(self.sizes_bytes)


@dataclass(frozen=True)
class SupportedOps:
    """Which op types a target supports, per ``Opt.print_supported_ops``.

    Attributes:
        valid_places: The places string asked about.
        targets: The table's target columns, e.g. ``("android_nnapi", "kARM", "kHost", "kUnk")``.
        ops: Op type -> the targets that have a kernel for it (possibly empty).
        raw: The printed table.
    """

    valid_places: str
    targets: tuple[str, ...]
    ops: Mapping[str, tuple[str, ...]]
    raw: str = field(repr=False)

    def supports(self, op_type: str, target: str | None = None) -> bool:
        """Whether ``op_type`` has a kernel on ``target`` (any target when None)."""
        marks = self.ops.get(op_type, ())
        return bool(marks) if target is None else target in marks


@dataclass(frozen=True)
class ModelSupport:
    """Whether a model's ops are supported on a target, per ``Opt.check_if_model_supported``.

    Attributes:
        valid_places: The places string asked about.
        supported: Paddle Lite's verdict.
        targets: The table's target columns.
        model_ops: Each op type in the model -> the targets that support it.
        unsupported_ops: The op types Paddle Lite named as unsupported.
        raw: The printed text.
    """

    valid_places: str
    supported: bool
    targets: tuple[str, ...]
    model_ops: Mapping[str, tuple[str, ...]]
    unsupported_ops: tuple[str, ...]
    raw: str = field(repr=False)


@dataclass(frozen=True)
class OutputInfo:
    """One output of a :meth:`LiteWorker.run`.

    Attributes:
        name: The output variable's name.
        shape: Its shape.
        dtype: Its numpy dtype name.
        path: The ``.npy`` file it was saved to, or None.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    path: Path | None


@dataclass(frozen=True)
class RunResult:
    """The outcome of one :meth:`LiteWorker.run`.

    Attributes:
        outputs: One entry per model output, in order.
        run_seconds: Wall time of ``predictor.run()``.
        load_seconds: Time to load the predictor (0 when it was cached in the worker).
    """

    outputs: tuple[OutputInfo, ...]
    run_seconds: float
    load_seconds: float


@dataclass(frozen=True)
class MeasureResult:
    """Raw timings of :meth:`LiteWorker.measure_detailed` (no statistics are computed).

    Attributes:
        times_ms: Per-run time of ``predictor.run()`` in ms (see ``clock``), in run order (``blocks * repeats``).
        warmup: Untimed runs before the first timed one.
        repeats: Timed runs per block.
        blocks: Number of consecutive blocks.
        threads: Thread count asked for.
        threads_applied: How it was applied in the worker (``"omp+mkl"`` on the x86 wheel; ``"none"``).
        predictor_cached: Whether the worker already had this ``.nb`` loaded.
        load_seconds: Time to load the predictor (0 when cached).
        rss_before_bytes: The worker's resident memory before the measurement (None if unknown).
        rss_after_bytes: ... and after it.
        peak_rss_before_bytes: The worker's peak resident memory (VmHWM) before the measurement.
        peak_rss_after_bytes: ... and after it. The worker is long-lived: the peak only grows, so this is no
            measure of one model's memory (see :meth:`LiteWorker.measure_memory`).
        power_mode_applied: Whether the power mode was set (only builds with ``MobileConfig.set_power_mode``,
            i.e. ARM builds, can).
        cpu_affinity_applied: The CPUs every worker thread was pinned to while timing, or None (not asked for,
            or not allowed by the OS).
        clock: What ``times_ms`` measure: ``wall`` (elapsed time) or ``thread_cpu`` (CPU time of the thread
            that ran the model).
    """

    times_ms: tuple[float, ...]
    warmup: int
    repeats: int
    blocks: int
    threads: int
    threads_applied: str
    predictor_cached: bool
    load_seconds: float
    rss_before_bytes: int | None
    rss_after_bytes: int | None
    peak_rss_before_bytes: int | None
    peak_rss_after_bytes: int | None
    power_mode_applied: bool = False
    cpu_affinity_applied: tuple[int, ...] | None = None
    clock: str = "wall"

    def block(self, index: int) -> tuple[float, ...]:
        """The timings of block ``index`` (0-based)."""
        if not 0 <= index < self.blocks:
            raise IndexError(f"block {index} out of range (blocks={self.blocks})")
        return self.times_ms[index * self.repeats : (index + 1) * self.repeats]


@dataclass(frozen=True)
class MemoryResult:
    """Peak memory of one model, measured by :meth:`LiteWorker.measure_memory` in a fresh process.

    Attributes:
        inference_peak_bytes: Peak resident memory while loading and running the model minus the process's
            idle resident memory before loading it (Paddle Lite and the inputs already in memory), in bytes.
        baseline_rss_bytes: That idle resident memory, in bytes.
        process_peak_bytes: The process's peak resident memory (VmHWM), in bytes.
        peak_reset: Whether the peak could be reset after the imports (``/proc/self/clear_refs``); if not, a
            model that needs less than the import's transient peak is under-reported (``lower_bound``).
        lower_bound: ``inference_peak_bytes`` may be too low (see ``peak_reset``; also when freed heap memory
            could not be returned to the OS first, which only glibc's ``malloc_trim`` does).
        method: One line saying how the figure was obtained.
        runs: Timed runs made (after ``warmup``).
        warmup: Untimed runs first.
    """

    inference_peak_bytes: int
    baseline_rss_bytes: int
    process_peak_bytes: int
    peak_reset: bool
    lower_bound: bool
    method: str
    runs: int
    warmup: int


@dataclass(frozen=True)
class InputSpec:
    """A random input for :meth:`LiteWorker.measure`, drawn in the worker from the request's seed.

    Attributes:
        shape: Concrete shape.
        dtype: Numpy dtype name. Floats: standard normal; integers: uniform in ``[low, high)``.
        name: Input name (None: by position).
        low: Lower bound for integer inputs (default 0).
        high: Upper bound (exclusive) for integer inputs (default ``low + 1``: safe token ids).
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    name: str | None = None
    low: int | None = None
    high: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The protocol form."""
        out: dict[str, Any] = {"shape": [int(d) for d in self.shape], "dtype": self.dtype}
        for key in ("name", "low", "high"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def _ops_map(raw: Mapping[str, Sequence[str]]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({str(k): tuple(v) for k, v in raw.items()})


# --------------------------------------------------------------------------------------------------
# one worker process


class _Process:
    """One running worker: the Popen, its stderr ring buffer and the thread that drains it."""

    def __init__(self, argv: list[str], env: Mapping[str, str] | None) -> None:
        child_env = dict(os.environ if env is None else env)
        child_env["PYTHONUNBUFFERED"] = "1"
        child_env.setdefault("PYTHONIOENCODING", "utf-8")
        if threading.current_thread() is threading.main_thread():
            # The worker dies with this process (prctl PDEATHSIG fires when the spawning *thread* exits,
            # so only ask for it from the main thread).
            child_env["DEVICEFIT_LITE_PDEATHSIG"] = "1"
        else:
            child_env.pop("DEVICEFIT_LITE_PDEATHSIG", None)
        self.argv = argv
        self.popen = subprocess.Popen(  # argv: find_lite_python() or the caller
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env,
            start_new_session=True,  # its own process group: Ctrl-C does not reach it; killpg reaps helpers
            close_fds=True,
        )
        assert self.popen.stdin and self.popen.stdout and self.popen.stderr
        self.stdout_fd = self.popen.stdout.fileno()
        os.set_blocking(self.stdout_fd, False)
        self.stdin_fd = self.popen.stdin.fileno()
        os.set_blocking(self.stdin_fd, False)
        self._stdin_selector = selectors.DefaultSelector()
        self._stdin_selector.register(self.stdin_fd, selectors.EVENT_WRITE)
        self._buffer = bytearray()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.stdout_fd, selectors.EVENT_READ)
        self.tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._tail_lock = threading.Lock()
        self._stop = threading.Event()
        # The thread gets no reference to self: an abandoned client can be collected (and its
        # finalizer kill the worker) while the thread still runs.
        self._drainer = threading.Thread(
            target=_drain_stderr,
            args=(self.popen.stderr.fileno(), self.tail, self._tail_lock, self._stop),
            name=f"lite-worker-stderr-{self.popen.pid}",
            daemon=True,
        )
        self._drainer.start()
        self._finalizer = weakref.finalize(self, _kill_group, self.popen)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the worker is running (does not reap it: see :meth:`stop`)."""
        if self.popen.returncode is not None:
            return False
        if not hasattr(os, "waitid"):  # pragma: no cover  (not Linux)
            return self.popen.poll() is None
        try:
            # WNOWAIT: look without reaping, so that stop() can still end the process group safely.
            info = os.waitid(os.P_PID, self.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        return info is None

    def tail_lines(self) -> tuple[str, ...]:
        with self._tail_lock:
            return tuple(self.tail)

    def send(self, message: Mapping[str, Any], deadline: float) -> bool:
        """Write one request line; False if ``deadline`` passed first (OSError when the worker is gone)."""
        data = memoryview(json.dumps(message).encode("utf-8") + b"\n")
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if not self._stdin_selector.select(timeout=min(remaining, 1.0)):
                continue
            try:
                written = os.write(self.stdin_fd, data)
            except BlockingIOError:
                continue
            data = data[written:]
        return True

    def read_line(self, deadline: float) -> bytes | None:
        """Return the next protocol line, b"" at end of output, or None when ``deadline`` passes."""
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not self._selector.select(timeout=min(remaining, 1.0)):
                continue
            try:
                chunk = os.read(self.stdout_fd, 1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                return b""
            self._buffer.extend(chunk)

    def stop(self, *, graceful: bool) -> int | None:
        """End the process (ask politely first if ``graceful``), reap it, join the drainer; return the code."""
        popen = self.popen
        if graceful and popen.returncode is None:
            try:
                self.send({"id": 0, "op": "shutdown"}, time.monotonic() + SHUTDOWN_TIMEOUT_SECONDS)
                if popen.stdin is not None:
                    popen.stdin.close()  # end of input: the worker also ends on that
                popen.wait(timeout=SHUTDOWN_TIMEOUT_SECONDS)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        # While the leader is not reaped its pid is still this group's id: killing the group cannot
        # reach anyone else's processes, and it ends helpers the worker started (check_model's child).
        _kill_group(popen)
        with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL not delivered: nothing else to do
            popen.wait(timeout=REAP_TIMEOUT_SECONDS)
        self._drainer.join(timeout=DRAIN_JOIN_TIMEOUT_SECONDS)
        self._stop.set()
        self._drainer.join(timeout=DRAIN_JOIN_TIMEOUT_SECONDS)
        self._selector.close()
        self._stdin_selector.close()
        for stream in (popen.stdin, popen.stdout, popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._finalizer.detach()
        return popen.returncode


def _drain_stderr(fd: int, tail: collections.deque[str], lock: threading.Lock, stop: threading.Event) -> None:
    """Read the worker's stderr until end of file (or ``stop``), keeping the last lines in ``tail``."""

    def append(lines: list[bytes]) -> None:
        with lock:
            for raw in lines:
                tail.append(raw.decode("utf-8", errors="replace").rstrip("\r"))

    partial = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while not stop.is_set():
            if not sel.select(timeout=0.2):
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop()
            if len(partial) > 65536:  # an endless line: keep its end
                partial = partial[-65536:]
            append(lines)
    if partial:
        append([partial])


def _kill_group(popen: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker's process group (the worker leads its own session), unless it was reaped."""
    if popen.returncode is not None:
        return  # reaped: its pid (and so the group id) may belong to someone else by now
    try:
        os.killpg(popen.pid, signal.SIGKILL)
    except OSError:
        with contextlib.suppress(OSError):
            popen.kill()


# --------------------------------------------------------------------------------------------------
# the client


class LiteWorker:
    """A Paddle Lite worker process driven over a pipe; restarts itself after a crash or a hang.

    The process starts lazily on the first request. Requests are serialized (a lock), so one instance
    may be shared between threads. After any :class:`LiteWorkerCrashed`, :class:`LiteWorkerTimeout` or
    :class:`LiteProtocolError`, the process is already killed and reaped and the next request starts a
    fresh one; a :class:`LiteOpError` leaves the process running. ``close()`` stops it; a later request
    starts a new one.

    Args:
        python_argv: The Paddle Lite interpreter as an argv prefix (default: :func:`find_lite_python`).
        worker_script: The worker script (default: the ``lite_worker.py`` next to this module).
        command: The whole command that starts a worker, when it is not ``python_argv + [worker_script]`` on
            this machine: e.g. ``["ssh", "board", "cd devicefit && exec python3 lite_worker.py"]`` for a
            worker on an ARM board (the ssh runner copies the script there first). Overrides both above.
        timeout_seconds: Default bound of a request, from sending it to its answer.
        start_timeout_seconds: Bound of the start-up handshake (``hello``) of a new process.
        env: Environment of the worker (default: this process's).
    """

    def __init__(
        self,
        python_argv: Sequence[str] | None = None,
        *,
        worker_script: PathLike | None = None,
        command: Sequence[str] | None = None,
        timeout_seconds: float = 600.0,
        start_timeout_seconds: float = START_TIMEOUT_SECONDS,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._python_argv = list(python_argv) if python_argv is not None else None
        self._script = Path(worker_script) if worker_script is not None else worker_script_path()
        self._command = list(command) if command is not None else None
        self.timeout_seconds = float(timeout_seconds)
        self.start_timeout_seconds = float(start_timeout_seconds)
        self._env = dict(env) if env is not None else None
        self._proc: _Process | None = None
        self._last_tail: tuple[str, ...] = ()
        self._next_id = 1
        self._lock = threading.RLock()
        self._hello: HelloResult | None = None
        #: How many worker processes this client has started (restarts included).
        self.starts = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> LiteWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The pid of the running worker, or None when none is running."""
        with self._lock:
            return self._proc.pid if self._proc is not None and self._proc.alive() else None

    def stderr_tail(self) -> tuple[str, ...]:
        """The last lines (at most 200) written to stderr by the current or last worker."""
        with self._lock:
            return self._proc.tail_lines() if self._proc is not None else self._last_tail

    def close(self) -> None:
        """Stop the worker (``shutdown``, then SIGKILL after a bound), reap it and join its thread."""
        with self._lock:
            if self._proc is not None:
                self._discard(graceful=True)

    def _discard(self, *, graceful: bool) -> int | None:
        proc, self._proc = self._proc, None
        self._hello = None
        if proc is None:
            return None
        code = proc.stop(graceful=graceful)
        self._last_tail = proc.tail_lines()
        return code

    def _start(self) -> _Process:
        if self._command is not None:
            argv = self._command
            full = list(argv)
        else:
            argv = self._python_argv if self._python_argv is not None else find_lite_python()
            if not self._script.is_file():
                raise LiteUnavailableError(f"the Lite worker script is missing: {self._script}")
            full = [*argv, str(self._script)]
        try:
            proc = _Process(full, self._env)
        except OSError as exc:
            raise LiteUnavailableError(f"cannot start the Paddle Lite interpreter {argv}: {exc}") from exc
        self._proc = proc
        self.starts += 1
        try:
            reply = self._exchange(proc, {"op": "hello"}, self.start_timeout_seconds)
        except LiteWorkerError as exc:
            if self._proc is proc:
                self._discard(graceful=False)
            tail = "\n".join(exc.stderr_tail[-20:])
            raise LiteUnavailableError(
                f"the Paddle Lite worker ({' '.join(argv)}) did not start: {exc}\n{tail}".rstrip()
            ) from exc
        self._hello = _hello_from(reply)
        return proc

    # -- requests --------------------------------------------------------------------------------

    def request(self, op: str, timeout_seconds: float | None = None, **args: Any) -> dict[str, Any]:
        """Send one request and return the response's fields (``ok`` is true).

        Args:
            op: The worker op.
            timeout_seconds: Bound of this request (default: the client's ``timeout_seconds``).
            **args: The op's arguments (JSON-serializable).

        Returns:
            The response object.

        Raises:
            LiteUnavailableError: No interpreter, or a new worker could not start.
            LiteWorkerCrashed: The worker died during the request.
            LiteWorkerTimeout: No answer within the bound.
            LiteOpError: The op failed inside the worker (``ok: false``).
            LiteProtocolError: The answer was not a valid response.
        """
        timeout = self.timeout_seconds if timeout_seconds is None else float(timeout_seconds)
        with self._lock:
            proc = self._proc
            if proc is not None and not proc.alive():
                self._discard(graceful=False)  # died while idle: not this request's fault
                proc = None
            if proc is None:
                proc = self._start()
            return self._exchange(proc, {"op": op, **args}, timeout)

    def _exchange(self, proc: _Process, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        op = str(message.get("op"))
        rid = self._next_id
        self._next_id += 1
        deadline = time.monotonic() + timeout
        line: bytes | None
        try:
            sent = proc.send({"id": rid, **message}, deadline)
        except OSError:
            line = b""  # the worker is gone (broken pipe): handled as a crash below
        else:
            line = proc.read_line(deadline) if sent else None
        if line is None:
            self._discard(graceful=False)
            raise LiteWorkerTimeout(
                f"the Lite worker (pid {proc.pid}) gave no answer to {op!r} within {timeout:g} s; it was killed",
                op=op,
                timeout_seconds=timeout,
                stderr_tail=self._last_tail,
            )
        if line == b"":
            code = self._discard(graceful=False)
            tail = self._last_tail
            fatal = _fatal_lines(tail)
            detail = " | ".join(fatal) if fatal else ("\n" + "\n".join(tail[-10:]) if tail else "")
            raise LiteWorkerCrashed(
                f"the Lite worker (pid {proc.pid}) crashed during {op!r} ({_describe_exit(code)}): {detail}".rstrip(),
                op=op,
                exit_code=code,
                stderr_tail=tail,
            )
        try:
            response = json.loads(line.decode("utf-8"))
            if not isinstance(response, dict) or response.get("id") != rid or "ok" not in response:
                raise ValueError(f"not a response to request {rid}")
        except ValueError as exc:
            self._discard(graceful=False)
            raise LiteProtocolError(
                f"the Lite worker sent an invalid answer to {op!r} ({exc}): {line[:200]!r}; it was killed",
                op=op,
                stderr_tail=self._last_tail,
            ) from None
        if not response["ok"]:
            error = response.get("error") or {}
            raise LiteOpError(
                f"{op}: {error.get('type', 'Error')}: {error.get('message', '')}",
                op=op,
                error_type=str(error.get("type", "Error")),
                worker_traceback=str(error.get("traceback", "")),
                stderr_tail=proc.tail_lines(),
            )
        return response

    # -- typed ops -------------------------------------------------------------------------------

    def hello(self, *, timeout_seconds: float | None = None) -> HelloResult:
        """Ask the worker about itself (starts it if needed)."""
        return _hello_from(self.request("hello", timeout_seconds))

    def convert(
        self,
        model_file: PathLike,
        params_file: PathLike | None,
        valid_places: str,
        out_prefix: PathLike,
        *,
        model_type: str = "naive_buffer",
        enable_fp16: bool = False,
        quant_type: str | None = None,
        sparse_model: bool = False,
        sparse_threshold: float | None = None,
        capture_log: bool = True,
        timeout_seconds: float | None = None,
    ) -> ConvertResult:
        """Convert a ``.pdmodel``/``.pdiparams`` pair with Paddle Lite's ``opt``.

        Args:
            model_file: The ``.pdmodel``.
            params_file: The ``.pdiparams`` (None for a model without weights).
            valid_places: Paddle Lite places, e.g. ``"x86"``, ``"arm"``, ``"opencl,arm"``,
                ``"huawei_kirin_npu,arm"``.
            out_prefix: ``<out_prefix>.nb`` is written (naive_buffer), or ``<out_prefix>/model`` and
                ``<out_prefix>/params`` (protobuf: the optimized program after the target's passes).
            model_type: ``"naive_buffer"`` or ``"protobuf"``.
            enable_fp16: Ask ``opt`` for fp16 kernels (ARM targets with fp16 support).
            quant_type: ``"QUANT_INT8"`` or ``"QUANT_INT16"`` for weight-only quantization; None for none.
            sparse_model: Ask ``opt`` for sparse kernels.
            sparse_threshold: ``set_sparse_threshold`` value (with ``sparse_model``).
            capture_log: Return what ``opt`` prints on stdout as ``log`` (else it goes to the stderr tail).
            timeout_seconds: Bound of this request.

        Returns:
            The written paths, their sizes, the seconds taken and the log.
        """
        args: dict[str, Any] = {
            "model_file": os.fspath(model_file),
            "params_file": None if params_file is None else os.fspath(params_file),
            "valid_places": valid_places,
            "out_prefix": os.fspath(out_prefix),
            "model_type": model_type,
            "enable_fp16": enable_fp16,
            "sparse_model": sparse_model,
            "capture_log": capture_log,
        }
        if quant_type is not None:
            args.update(quant_model=True, quant_type=quant_type)
        if sparse_threshold is not None:
            args["sparse_threshold"] = float(sparse_threshold)
        reply = self.request("convert", timeout_seconds, **args)
        return ConvertResult(
            model_type=str(reply["model_type"]),
            valid_places=str(reply["valid_places"]),
            paths=tuple(Path(p) for p in reply["paths"]),
            sizes_bytes=tuple(int(s) for s in reply["sizes_bytes"]),
            seconds=float(reply["seconds"]),
            log=str(reply.get("log", "")),
        )

    def supported_ops(self, valid_places: str, *, timeout_seconds: float | None = None) -> SupportedOps:
        """List the op types that ``valid_places`` has kernels for (``Opt.print_supported_ops``)."""
        reply = self.request("supported_ops", timeout_seconds, valid_places=valid_places)
        return SupportedOps(
            valid_places=str(reply["valid_places"]),
            targets=tuple(reply["targets"]),
            ops=_ops_map(reply["ops"]),
            raw=str(reply.get("raw", "")),
        )

    def check_model(
        self,
        model_file: PathLike,
        params_file: PathLike | None,
        valid_places: str,
        *,
        timeout_seconds: float | None = None,
    ) -> ModelSupport:
        """Check a model's ops against ``valid_places`` (``Opt.check_if_model_supported``).

        Paddle Lite ends the process inside that call, so the worker runs it in a child process.
        """
        timeout = self.timeout_seconds if timeout_seconds is None else float(timeout_seconds)
        reply = self.request(
            "check_model",
            timeout,
            model_file=os.fspath(model_file),
            params_file=None if params_file is None else os.fspath(params_file),
            valid_places=valid_places,
            child_timeout_seconds=max(1.0, timeout - 2.0),
        )
        return ModelSupport(
            valid_places=str(reply["valid_places"]),
            supported=bool(reply["supported"]),
            targets=tuple(reply["targets"]),
            model_ops=_ops_map(reply["model_ops"]),
            unsupported_ops=tuple(reply["unsupported_ops"]),
            raw=str(reply.get("raw", "")),
        )

    def run(
        self,
        nb_file: PathLike,
        inputs: Sequence[PathLike],
        output_paths: Sequence[PathLike] = (),
        *,
        threads: int = 1,
        timeout_seconds: float | None = None,
    ) -> RunResult:
        """Run an ``.nb`` once (``MobileConfig`` + ``create_paddle_predictor``) and save its outputs.

        Args:
            nb_file: The naive-buffer model.
            inputs: One ``.npy`` file per model input, in the model's input order.
            output_paths: ``.npy`` paths; output i is saved to path i (missing paths: not saved).
            threads: Math library threads in the worker.
            timeout_seconds: Bound of this request.
        """
        reply = self.request(
            "run",
            timeout_seconds,
            nb_file=os.fspath(nb_file),
            inputs=[{"path": os.fspath(p)} for p in inputs],
            output_paths=[os.fspath(p) for p in output_paths],
            threads=int(threads),
        )
        return RunResult(
            outputs=tuple(
                OutputInfo(
                    name=str(o["name"]),
                    shape=tuple(int(d) for d in o["shape"]),
                    dtype=str(o["dtype"]),
                    path=None if o.get("path") is None else Path(o["path"]),
                )
                for o in reply["outputs"]
            ),
            run_seconds=float(reply["run_seconds"]),
            load_seconds=float(reply["load_seconds"]),
        )

    def measure_detailed(
        self,
        nb_file: PathLike,
        inputs: Sequence[InputSpec | PathLike],
        *,
        threads: int = 1,
        warmup: int = 10,
        repeats: int = 50,
        blocks: int = 1,
        seed: int = 0,
        power_mode: int | None = None,
        cpu_affinity: Sequence[int] | None = None,
        clock: str = "wall",
        timeout_seconds: float | None = None,
    ) -> MeasureResult:
        """Time ``predictor.run()`` in the worker; raw timings plus the worker's memory figures.

        Args:
            nb_file: The naive-buffer model (loaded once per worker and cached by path and mtime).
            inputs: Per model input, an :class:`InputSpec` (random, from ``seed``) or a ``.npy`` path.
            threads: Math library threads in the worker.
            warmup: Untimed runs first.
            repeats: Timed runs per block.
            blocks: Consecutive blocks of ``repeats`` runs (for block statistics such as the minimum of
                block medians).
            seed: Seed of the random inputs.
            power_mode: Paddle Lite ``PowerMode`` value (0 high ... 5 rand_low), set where the build has it.
            cpu_affinity: Pin every worker thread to these CPUs while timing (restored afterwards).
            clock: ``"wall"`` (elapsed time) or ``"thread_cpu"`` (CPU time of the worker's calling thread:
                leaves out preemption by other processes on a shared host; the worker refuses it unless
                ``threads=1``).
            timeout_seconds: Bound of this request.
        """
        specs = [i.to_json() if isinstance(i, InputSpec) else {"path": os.fspath(i)} for i in inputs]
        extra: dict[str, Any] = {}
        if power_mode is not None:
            extra["power_mode"] = int(power_mode)
        if cpu_affinity is not None:
            extra["cpu_affinity"] = [int(c) for c in cpu_affinity]
        if clock != "wall":  # only when asked: a board's worker of an older devicefit times wall time only
            extra["clock"] = str(clock)
        reply = self.request(
            "measure",
            timeout_seconds,
            nb_file=os.fspath(nb_file),
            inputs=specs,
            threads=int(threads),
            warmup=int(warmup),
            repeats=int(repeats),
            blocks=int(blocks),
            seed=int(seed),
            **extra,
        )
        pinned = reply.get("cpu_affinity_applied")
        return MeasureResult(
            times_ms=tuple(float(t) for t in reply["times_ms"]),
            warmup=int(reply["warmup"]),
            repeats=int(reply["repeats"]),
            blocks=int(reply["blocks"]),
            threads=int(reply["threads"]),
            threads_applied=str(reply["threads_applied"]),
            predictor_cached=bool(reply["predictor_cached"]),
            load_seconds=float(reply["load_seconds"]),
            rss_before_bytes=_opt_int(reply.get("rss_before_bytes")),
            rss_after_bytes=_opt_int(reply.get("rss_after_bytes")),
            peak_rss_before_bytes=_opt_int(reply.get("peak_rss_before_bytes")),
            peak_rss_after_bytes=_opt_int(reply.get("peak_rss_after_bytes")),
            power_mode_applied=bool(reply.get("power_mode_applied", False)),
            cpu_affinity_applied=None if pinned is None else tuple(int(c) for c in pinned),
            clock=str(reply.get("clock", "wall")),
        )

    def measure_memory(
        self,
        nb_file: PathLike,
        inputs: Sequence[InputSpec | PathLike],
        *,
        threads: int = 1,
        warmup: int = 2,
        runs: int = 5,
        seed: int = 0,
        power_mode: int | None = None,
        timeout_seconds: float | None = None,
    ) -> MemoryResult:
        """Peak memory of inference of one ``.nb``, measured in a fresh child process of the worker.

        The worker itself is long-lived, so its own peak (VmHWM) only grows and its cached predictors hide a
        new model's needs; see ``op_measure_memory`` in ``lite_worker.py`` for the method.

        Args:
            nb_file: The naive-buffer model.
            inputs: Per model input, an :class:`InputSpec` or a ``.npy`` path.
            threads: Inference threads.
            warmup: Untimed runs before ``runs`` (both count towards the peak).
            runs: Runs of the model.
            seed: Seed of random inputs.
            power_mode: Paddle Lite ``PowerMode`` value, set where the build has it.
            timeout_seconds: Bound of this request (the child gets 2 s less).
        """
        timeout = self.timeout_seconds if timeout_seconds is None else float(timeout_seconds)
        specs = [i.to_json() if isinstance(i, InputSpec) else {"path": os.fspath(i)} for i in inputs]
        extra: dict[str, Any] = {} if power_mode is None else {"power_mode": int(power_mode)}
        reply = self.request(
            "measure_memory",
            timeout,
            nb_file=os.fspath(nb_file),
            inputs=specs,
            threads=int(threads),
            warmup=int(warmup),
            runs=int(runs),
            seed=int(seed),
            child_timeout_seconds=max(1.0, timeout - 2.0),
            **extra,
        )
        return MemoryResult(
            inference_peak_bytes=int(reply["inference_peak_bytes"]),
            baseline_rss_bytes=int(reply["baseline_rss_bytes"]),
            process_peak_bytes=int(reply["process_peak_bytes"]),
            peak_reset=bool(reply["peak_reset"]),
            lower_bound=bool(reply["lower_bound"]),
            method=str(reply["method"]),
            runs=int(reply["runs"]),
            warmup=int(reply["warmup"]),
        )

    def measure(
        self,
        nb_file: PathLike,
        inputs: Sequence[InputSpec | PathLike],
        *,
        threads: int = 1,
        warmup: int = 10,
        repeats: int = 50,
        blocks: int = 1,
        seed: int = 0,
        clock: str = "wall",
        timeout_seconds: float | None = None,
    ) -> list[float]:
        """Like :meth:`measure_detailed`, returning only the per-run times in ms (``blocks * repeats``)."""
        return list(
            self.measure_detailed(
                nb_file,
                inputs,
                threads=threads,
                warmup=warmup,
                repeats=repeats,
                blocks=blocks,
                seed=seed,
                clock=clock,
                timeout_seconds=timeout_seconds,
            ).times_ms
        )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _hello_from(reply: Mapping[str, Any]) -> HelloResult:
    return HelloResult(
        pid=int(reply["pid"]),
        python_version=str(reply["python_version"]),
        paddlelite_version=None if reply.get("paddlelite_version") is None else str(reply["paddlelite_version"]),
        opt_version=str(reply.get("opt_version", "")),
        executable=str(reply.get("executable", "")),
        protocol=int(reply.get("protocol", 0)),
    )
