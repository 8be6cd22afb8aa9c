"""devicefit's Paddle Lite worker: a standalone script driven over a pipe with line-delimited JSON.

This file runs in the Paddle Lite interpreter (CPython 3.9/3.10 with the ``paddlelite`` wheel), never in
the devicefit process: it needs only the standard library, numpy and ``paddlelite``, and must not import
devicefit. Paddle Lite reports fatal errors by aborting the process (``[F ...]`` on stderr, SIGABRT), so
the client (``devicefit.evaluators._lite_client``) treats a dead worker as one failed request and starts
a fresh one.

Protocol (one JSON object per line):

* request on stdin: ``{"id": int, "op": str, ...args}``
* response on the protocol channel: ``{"id": int, "ok": true, ...result}`` or
  ``{"id": int, "ok": false, "error": {"type": str, "message": str, "traceback": str}}``

Paddle Lite's C++ code prints freely to stdout and stderr. At start the worker duplicates the real stdout
(fd 1) to a private descriptor that carries the protocol, then points fd 1 at fd 2: every stray print,
Python or native, ends up on stderr, which the client keeps as a ring buffer for crash reports.

Ops: ``hello``, ``convert``, ``supported_ops``, ``check_model``, ``run``, ``measure``, ``measure_memory``,
``shutdown`` (see the ``op_*`` functions for their arguments). Statistics are never computed here:
``measure`` returns the raw per-run wall times.

The same script serves devicefit on this host and, copied there by the ssh runner, on an ARM Linux board:
where the Paddle Lite build has ``MobileConfig.set_threads``/``set_power_mode`` (ARM builds) they are used;
the x86 wheel has neither, so threads go to its math libraries and there is no power mode.

Run as ``python lite_worker.py`` (serve the protocol). Two internal one-shot modes run in a child process:
``--check-model MODEL PARAMS PLACES`` (Paddle Lite's ``check_if_model_supported`` always ends the process:
exit 1 when the model is supported, abort when it is not) and ``--measure-memory REQUEST_JSON`` (the peak
memory of one model measured in a fresh process, see ``op_measure_memory``).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any, Callable, Iterator, Optional

PROTOCOL_VERSION = 1

#: Quantization types Paddle Lite's ``opt`` accepts for weight-only quantization (others abort it).
QUANT_TYPES = ("QUANT_INT8", "QUANT_INT16")
#: Model types ``Opt.set_model_type`` accepts (others abort it).
MODEL_TYPES = ("naive_buffer", "protobuf")
#: How many predictors stay loaded at once (least recently used ones are dropped).
PREDICTOR_CACHE_SIZE = 8
#: Clocks ``measure`` can time runs with (see ``op_measure``).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "thread_cpu": time.thread_time}
#: Cap on the captured native output returned with a response (head and tail are kept).
MAX_LOG_CHARS = 1_000_000

Request = dict[str, Any]
Result = dict[str, Any]
Handler = Callable[[Request], Result]


class ProtocolChannel:
    """The private descriptor that carries responses; fd 1 is pointed at fd 2 when it is claimed."""

    def __init__(self, fd: int) -> None:
        self._file = os.fdopen(fd, "wb", buffering=1 << 16)

    def send(self, message: dict[str, Any]) -> None:
        """Write one JSON object as one line and flush it."""
        data = json.dumps(message, default=_json_default, allow_nan=True).encode("utf-8") + b"\n"
        self._file.write(data)
        self._file.flush()


def claim_protocol_channel() -> ProtocolChannel:
    """Move the protocol off fd 1 so that nothing printed later can corrupt it.

    Returns:
        The channel that writes to the original stdout; fd 1 now writes to stderr.
    """
    sys.stdout.flush()
    proto_fd = os.dup(1)  # non-inheritable: children of the worker never get the protocol channel
    os.dup2(2, 1)
    return ProtocolChannel(proto_fd)


# --------------------------------------------------------------------------------------------------
# helpers


def _json_default(obj: Any) -> Any:
    """Convert numpy scalars and other simple objects for ``json.dumps``."""
    item = getattr(obj, "item", None)
    if callable(item):
        return item()
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


_LIBC: Optional[ctypes.CDLL] = None


def flush_native() -> None:
    """Flush Python's and the C library's stdio buffers (native prints sit in C's stdout buffer)."""
    global _LIBC
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        if _LIBC is None:
            _LIBC = ctypes.CDLL(None)
        _LIBC.fflush(None)


class _Captured:
    text: str = ""


@contextlib.contextmanager
def capture_fd(fd: int) -> Iterator[_Captured]:
    """Temporarily point ``fd`` at a temporary file; the captured text is on the yielded object after exit."""
    captured = _Captured()
    flush_native()
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(fd)
        os.dup2(tmp.fileno(), fd)
        try:
            yield captured
        finally:
            flush_native()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            captured.text = _cap_text(tmp.read().decode("utf-8", errors="replace"))


def _cap_text(text: str) -> str:
    if len(text) <= MAX_LOG_CHARS:
        return text
    half = MAX_LOG_CHARS // 2
    return text[:half] + "\n[... %d characters cut ...]\n" % (len(text) - 2 * half) + text[-half:]


def _lite() -> Any:
    """Import ``paddlelite.lite`` (lazily, so that a broken install is reported as an op error)."""
    import paddlelite.lite as lite  # noqa: PLC0415

    return lite


def _np() -> Any:
    import numpy  # noqa: PLC0415

    return numpy


def _required(req: Request, key: str) -> Any:
    if key not in req or req[key] is None:
        raise ValueError("missing argument %r" % key)
    return req[key]


def _existing_file(path: Any, what: str) -> str:
    """Return the absolute path of an existing regular file, or raise FileNotFoundError.

    Paddle Lite aborts the whole process on a missing file; checking first turns the common case into an
    ordinary error.
    """
    if not isinstance(path, str) or not path:
        raise ValueError("%s must be a non-empty path string, got %r" % (what, path))
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise FileNotFoundError("%s not found: %s" % (what, full))
    return full


def _rss_bytes() -> tuple[Optional[int], Optional[int]]:
    """Return (current RSS, peak RSS) of this process in bytes (VmRSS/VmHWM, else getrusage)."""
    rss = hwm = None
    try:
        with open("/proc/self/status", "r") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
    except OSError:
        pass
    if hwm is None:
        with contextlib.suppress(Exception):
            import resource  # noqa: PLC0415

            maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            hwm = int(maxrss) * (1 if sys.platform == "darwin" else 1024)
    return rss, hwm


# --------------------------------------------------------------------------------------------------
# threads

_THREAD_LIBS: dict[str, Any] = {}


def _apply_threads(threads: int) -> str:
    """Apply a thread count to Paddle Lite's math libraries; return what was applied.

    The Python ``MobileConfig`` of the x86 wheel has no ``set_threads``: its kernels use MKL (mklml) and
    Intel OpenMP (libiomp5), shipped in ``paddlelite/libs``, so the count is set through them.
    """
    if threads < 1:
        raise ValueError("threads must be >= 1, got %r" % threads)
    applied = []
    libs_dir = os.path.join(os.path.dirname(os.path.abspath(_lite().__file__)), "libs")
    try:
        with open("/proc/self/maps") as proc_maps:
            maps = proc_maps.read()
    except OSError:
        maps = ""
    for key, soname, func in (
        ("omp", "libiomp5.so", "omp_set_num_threads"),
        ("mkl", "libmklml_intel.so", "MKL_Set_Num_Threads"),
    ):
        path = os.path.join(libs_dir, soname)
        if soname not in maps or not os.path.exists(path):
            continue  # not loaded by Paddle Lite: do not load it ourselves
        try:
            lib = _THREAD_LIBS.get(key)
            if lib is None:
                lib = _THREAD_LIBS[key] = ctypes.CDLL(path)
            getattr(lib, func)(ctypes.c_int(threads))
            applied.append(key)
        except (OSError, AttributeError):
            continue
    return "+".join(applied) if applied else "none"


# --------------------------------------------------------------------------------------------------
# predictors

_PREDICTORS: "collections.OrderedDict[tuple[Any, ...], Any]" = collections.OrderedDict()

#: Paddle Lite's ``PowerMode`` members, in the order of their values (0: big cores ... 5: random little).
POWER_MODE_NAMES = (
    "LITE_POWER_HIGH",
    "LITE_POWER_LOW",
    "LITE_POWER_FULL",
    "LITE_POWER_NO_BIND",
    "LITE_POWER_RAND_HIGH",
    "LITE_POWER_RAND_LOW",
)


def _configure(config: Any, threads: int, power_mode: Optional[int]) -> tuple[bool, bool]:
    """Set threads and power mode on a ``MobileConfig`` where this build has the setters (ARM builds).

    Returns:
        (threads were set on the config, power mode was set on the config).
    """
    threads_set = power_set = False
    if hasattr(config, "set_threads"):
        config.set_threads(int(threads))
        threads_set = True
    if power_mode is not None:
        if not 0 <= int(power_mode) < len(POWER_MODE_NAMES):
            raise ValueError("power_mode must be 0..%d, got %r" % (len(POWER_MODE_NAMES) - 1, power_mode))
        if hasattr(config, "set_power_mode"):
            config.set_power_mode(getattr(_lite().PowerMode, POWER_MODE_NAMES[int(power_mode)]))
            power_set = True
    return threads_set, power_set


def _predictor(nb_file: Any, threads: int = 1, power_mode: Optional[int] = None) -> tuple[Any, bool, float, str, bool]:
    """Return (predictor, was cached, load seconds, how threads were applied, power mode applied) for a ``.nb``.

    Predictors are cached by path, mtime, size, threads and power mode. Threads go to the ``MobileConfig``
    where the build can take them (ARM), else to the math libraries (the x86 wheel: MKL and OpenMP).
    """
    path = _existing_file(nb_file, "nb_file")
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size, int(threads), power_mode)
    cached = _PREDICTORS.get(key)
    if cached is not None:
        _PREDICTORS.move_to_end(key)
        predictor, threads_how, power_set = cached
        if threads_how != "config":
            threads_how = _apply_threads(threads)
        return predictor, True, 0.0, threads_how, power_set
    for old in [k for k in _PREDICTORS if k[0] == path]:
        del _PREDICTORS[old]
    lite = _lite()
    start = time.perf_counter()
    config = lite.MobileConfig()
    config.set_model_from_file(path)
    threads_set, power_set = _configure(config, threads, power_mode)
    predictor = lite.create_paddle_predictor(config)
    seconds = time.perf_counter() - start
    threads_how = "config" if threads_set else _apply_threads(threads)
    _PREDICTORS[key] = (predictor, threads_how, power_set)
    while len(_PREDICTORS) > PREDICTOR_CACHE_SIZE:
        _PREDICTORS.popitem(last=False)
    return predictor, False, seconds, threads_how, power_set


# --------------------------------------------------------------------------------------------------
# CPU pinning


def _task_ids() -> list[int]:
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _restore_affinity(saved: dict[int, set[int]], default: Optional[set[int]]) -> None:
    """Give each thread its mask back; threads started while pinned (a math library's pool) get ``default``."""
    for tid in _task_ids() if default is not None else list(saved):
        mask = saved.get(tid, default)
        if mask is not None:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, mask)


@contextlib.contextmanager
def pinned_to(cpus: Optional[list[int]]) -> Iterator[Optional[list[int]]]:
    """Pin every thread of this process to ``cpus`` for the duration (Linux); restore the masks afterwards.

    ``os.sched_setaffinity`` acts on one thread, so each thread of the process is pinned (the math
    libraries' pools included); threads started inside inherit the pinned mask of their creator, and get the
    process's original mask when the pinning ends.

    Yields:
        The CPUs pinned to, or None when ``cpus`` is empty or the OS does not allow it (then nothing changed).
    """
    saved: dict[int, set[int]] = {}
    original: Optional[set[int]] = None
    applied: Optional[list[int]] = None
    if cpus and hasattr(os, "sched_setaffinity"):
        wanted = sorted({int(c) for c in cpus})
        original = os.sched_getaffinity(0)
        try:
            for tid in _task_ids():
                try:
                    saved[tid] = os.sched_getaffinity(tid)
                    os.sched_setaffinity(tid, wanted)
                except ProcessLookupError:
                    continue  # the thread ended meanwhile
            applied = wanted
        except OSError:  # e.g. a CPU outside this process's allowed set
            _restore_affinity(saved, original)
            saved, original = {}, None
    try:
        yield applied
    finally:
        _restore_affinity(saved, original)


def _set_inputs(predictor: Any, arrays: list[tuple[Optional[str], Any]]) -> None:
    names = list(predictor.get_input_names())
    if len(arrays) != len(names):
        raise ValueError("the model has %d inputs %r, %d were given" % (len(names), names, len(arrays)))
    np = _np()
    for index, (name, array) in enumerate(arrays):
        if name is not None and name not in names:
            raise ValueError("the model has no input named %r (inputs: %r)" % (name, names))
        tensor = predictor.get_input(index) if name is None else predictor.get_input_by_name(name)
        tensor.from_numpy(np.ascontiguousarray(array))


def _random_array(spec: dict[str, Any], rng: Any) -> Any:
    np = _np()
    shape = tuple(int(d) for d in _required(spec, "shape"))
    if any(d < 0 for d in shape):
        raise ValueError("input shapes must be concrete, got %r" % (shape,))
    dtype = np.dtype(spec.get("dtype", "float32"))
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind in "iu":
        low = int(spec.get("low", 0))
        high = int(spec.get("high", low + 1))
        return rng.integers(low, high, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(dtype)
    raise ValueError("unsupported input dtype %s" % dtype)


def _input_arrays(specs: Any, seed: int) -> list[tuple[Optional[str], Any]]:
    if not isinstance(specs, list):
        raise ValueError("inputs must be a list")
    np = _np()
    rng = np.random.default_rng(seed)
    arrays: list[tuple[Optional[str], Any]] = []
    for spec in specs:
        if not isinstance(spec, dict):
            raise ValueError("each input must be an object with 'path' or 'shape', got %r" % (spec,))
        if spec.get("path") is not None:
            array = np.load(_existing_file(spec["path"], "input .npy"), allow_pickle=False)
        else:
            array = _random_array(spec, rng)
        arrays.append((spec.get("name"), array))
    return arrays


# --------------------------------------------------------------------------------------------------
# ops


def op_hello(req: Request) -> Result:
    """Report the worker's pid, Python and Paddle Lite versions (imports Paddle Lite)."""
    lite = _lite()
    try:
        from importlib.metadata import version  # noqa: PLC0415

        wheel_version = version("paddlelite")
    except Exception:  # noqa: BLE001
        wheel_version = None
    return {
        "pid": os.getpid(),
        "protocol": PROTOCOL_VERSION,
        "python_version": platform.python_version(),
        "executable": sys.executable,
        "machine": platform.machine(),
        "paddlelite_version": wheel_version,
        "opt_version": lite.Opt().version(),
    }


def op_convert(req: Request) -> Result:
    """Convert ``model_file``/``params_file`` with ``Opt`` for ``valid_places``.

    Args (in the request): model_file, params_file (may be null for a model without weights),
    valid_places, out_prefix, model_type ("naive_buffer" -> ``<out_prefix>.nb``; "protobuf" ->
    ``<out_prefix>/model`` and ``<out_prefix>/params``), enable_fp16, quant_model, quant_type,
    sparse_model, sparse_threshold, capture_log (default true: what Opt prints on stdout, e.g. the
    NNAdapter subgraph partition, is returned as ``log``; false lets it go to stderr).
    """
    model_file = _existing_file(_required(req, "model_file"), "model_file")
    params = req.get("params_file")
    params_file = _existing_file(params, "params_file") if params is not None else None
    places = str(_required(req, "valid_places")).strip()
    if not places:
        raise ValueError("valid_places must not be empty")
    model_type = req.get("model_type", "naive_buffer")
    if model_type not in MODEL_TYPES:
        raise ValueError("model_type must be one of %r, got %r" % (MODEL_TYPES, model_type))
    out_prefix = os.path.abspath(str(_required(req, "out_prefix")))
    if model_type == "naive_buffer":
        expected = [out_prefix + ".nb"]
        os.makedirs(os.path.dirname(out_prefix), exist_ok=True)
    else:
        expected = [os.path.join(out_prefix, "model"), os.path.join(out_prefix, "params")]
        os.makedirs(out_prefix, exist_ok=True)
    for path in expected:
        if os.path.isfile(path):
            os.remove(path)

    lite = _lite()
    opt = lite.Opt()
    opt.set_model_file(model_file)
    if params_file is not None:
        opt.set_param_file(params_file)
    opt.set_valid_places(places)
    opt.set_model_type(model_type)
    opt.set_optimize_out(out_prefix)
    if req.get("enable_fp16"):
        opt.enable_fp16()
    if req.get("quant_model"):
        quant_type = req.get("quant_type", "QUANT_INT8")
        if quant_type not in QUANT_TYPES:
            raise ValueError("quant_type must be one of %r, got %r" % (QUANT_TYPES, quant_type))
        opt.set_quant_model(True)
        opt.set_quant_type(quant_type)
    if req.get("sparse_model"):
        opt.set_sparse_model(True)
        if req.get("sparse_threshold") is not None:
            opt.set_sparse_threshold(float(req["sparse_threshold"]))

    log = ""
    start = time.perf_counter()
    if req.get("capture_log", True):
        with capture_fd(1) as captured:
            opt.run()
        log = captured.text
    else:
        opt.run()
    seconds = time.perf_counter() - start

    outputs = [p for p in expected if os.path.isfile(p)]
    if not outputs or outputs[0] != expected[0]:
        raise RuntimeError("Paddle Lite's opt wrote no %s; its output:\n%s" % (expected[0], log[-4000:]))
    return {
        "model_type": model_type,
        "valid_places": places,
        "paths": outputs,
        "sizes_bytes": [os.path.getsize(p) for p in outputs],
        "seconds": seconds,
        "log": log,
    }


_VERDICT_OK = "Paddle-Lite supports this model!"
_VERDICT_BAD = re.compile(r"These unsupported ops are:\s*(.*?)\.?\s*$")


def parse_op_table(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """Parse the fixed-width op table that ``print_supported_ops``/``check_if_model_supported`` print.

    Returns:
        The target columns (e.g. ``["kARM", "kHost", "kUnk"]``) and, per op type, the targets marked ``Y``.
    """
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"^\s*OP_name(\s|$)", line)]
    if not starts:
        return [], {}
    index = starts[0]
    header = lines[index]
    columns = [(m.group(0), m.start(), m.end()) for m in re.finditer(r"\S+", header)]
    name_end = columns[0][2]
    targets = [c[0] for c in columns[1:]]
    ops: dict[str, list[str]] = {}
    for line in lines[index + 1 :]:
        first = re.match(r"^\s*(\S+)", line)
        if not first or first.end(1) != name_end:
            break  # the table is right-aligned on the op name; anything else ends it
        marks = []
        for name, start, end in columns[1:]:
            if "Y" in line[start - 1 : end + 1]:
                marks.append(name)
        ops[first.group(1)] = marks
    return targets, ops


def op_supported_ops(req: Request) -> Result:
    """List which op types ``valid_places`` supports, from ``Opt.print_supported_ops`` (captured)."""
    places = str(_required(req, "valid_places")).strip()
    lite = _lite()
    opt = lite.Opt()
    opt.set_valid_places(places)
    with capture_fd(1) as captured:
        opt.print_supported_ops()
    targets, ops = parse_op_table(captured.text)
    if not ops:
        raise RuntimeError("could not parse print_supported_ops output:\n%s" % captured.text[:2000])
    return {"valid_places": places, "targets": targets, "ops": ops, "raw": captured.text}


def op_check_model(req: Request) -> Result:
    """Check whether a model's ops are supported on ``valid_places`` (``check_if_model_supported``).

    Paddle Lite ends the process from inside that call, so it runs in a child of this worker, with a
    bound (``child_timeout_seconds``, default 120).
    """
    model_file = _existing_file(_required(req, "model_file"), "model_file")
    params = req.get("params_file")
    params_file = _existing_file(params, "params_file") if params is not None else ""
    places = str(_required(req, "valid_places")).strip()
    timeout = float(req.get("child_timeout_seconds", 120.0))
    cmd = [sys.executable, os.path.abspath(__file__), "--check-model", model_file, params_file, places]
    try:
        child = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TimeoutError("check_if_model_supported took more than %.0f s" % exc.timeout) from None
    text = _cap_text(child.stdout.decode("utf-8", errors="replace"))
    targets, ops = parse_op_table(text)
    unsupported: list[str] = []
    if _VERDICT_OK in text:
        supported = True
    else:
        match = None
        for line in text.splitlines():
            match = _VERDICT_BAD.search(line) or match
        if match is None:
            raise RuntimeError(
                "check_if_model_supported gave no verdict (exit %s):\n%s" % (child.returncode, text[-4000:])
            )
        supported = False
        unsupported = re.findall(r"'([^']+)'", match.group(1))
    return {
        "valid_places": places,
        "supported": supported,
        "targets": targets,
        "model_ops": ops,
        "unsupported_ops": unsupported,
        "raw": text,
    }


def op_run(req: Request) -> Result:
    """Run an ``.nb`` once on inputs from ``.npy`` files and save the outputs.

    Args (in the request): nb_file, inputs (list of ``{"path": ".npy"[, "name"]}``), output_paths
    (list of ``.npy`` paths, output i goes to path i; may be shorter than the outputs), threads.
    """
    predictor, cached, load_seconds, threads_applied, _ = _predictor(
        _required(req, "nb_file"), int(req.get("threads", 1))
    )
    specs = _required(req, "inputs")
    if any(not isinstance(s, dict) or s.get("path") is None for s in specs):
        raise ValueError("run takes inputs as .npy paths: [{'path': ...}, ...]")
    _set_inputs(predictor, _input_arrays(specs, 0))
    start = time.perf_counter()
    predictor.run()
    seconds = time.perf_counter() - start
    np = _np()
    output_paths = list(req.get("output_paths") or [])
    outputs = []
    for index, name in enumerate(predictor.get_output_names()):
        array = predictor.get_output(index).numpy()
        path = None
        if index < len(output_paths) and output_paths[index]:
            path = os.path.abspath(str(output_paths[index]))
            if not path.endswith(".npy"):
                path += ".npy"
            os.makedirs(os.path.dirname(path), exist_ok=True)
            np.save(path, array)
        outputs.append({"name": name, "shape": list(array.shape), "dtype": str(array.dtype), "path": path})
    return {
        "outputs": outputs,
        "run_seconds": seconds,
        "load_seconds": load_seconds,
        "predictor_cached": cached,
        "threads_applied": threads_applied,
    }


def op_measure(req: Request) -> Result:
    """Time ``predictor.run()`` on an ``.nb``: raw per-run times in ms (wall time unless asked), no statistics.

    Args (in the request): nb_file, inputs (list of ``{"shape", "dtype"[, "low", "high", "name"]}`` for
    random inputs from ``seed``, or ``{"path": ".npy"}``), seed, threads, warmup, repeats, blocks
    (``blocks`` consecutive blocks of ``repeats`` timed runs; block k is ``times_ms[k*repeats:(k+1)*repeats]``),
    power_mode (Paddle Lite ``PowerMode`` value, applied where the build has it; optional), cpu_affinity
    (list of CPU numbers to pin every thread of the worker to while timing; optional), clock (``"wall"``, the
    default: ``time.perf_counter``; ``"thread_cpu"``: ``time.thread_time``, the CPU time of the calling
    thread, which leaves out the time the thread waited while other processes ran; refused unless
    ``threads`` = 1, where Paddle Lite computes in the calling thread).
    """
    rss_before, peak_before = _rss_bytes()
    threads = int(req.get("threads", 1))
    power_mode = req.get("power_mode")
    predictor, cached, load_seconds, threads_applied, power_applied = _predictor(
        _required(req, "nb_file"), threads, None if power_mode is None else int(power_mode)
    )
    warmup = int(req.get("warmup", 10))
    repeats = int(req.get("repeats", 50))
    blocks = int(req.get("blocks", 1))
    if warmup < 0 or repeats < 1 or blocks < 1:
        raise ValueError("need warmup >= 0, repeats >= 1, blocks >= 1")
    clock_name = req.get("clock", "wall")
    if clock_name not in CLOCKS:
        raise ValueError("clock must be one of %r, got %r" % (sorted(CLOCKS), clock_name))
    if clock_name == "thread_cpu" and threads != 1:
        raise ValueError("the thread_cpu clock times the calling thread only: it needs threads=1, got %d" % threads)
    _set_inputs(predictor, _input_arrays(_required(req, "inputs"), int(req.get("seed", 0))))
    run = predictor.run
    clock = CLOCKS[clock_name]
    times_ms: list[float] = []
    with pinned_to(req.get("cpu_affinity")) as pinned:
        for _ in range(warmup):
            run()
        for _ in range(blocks * repeats):
            start = clock()
            run()
            times_ms.append((clock() - start) * 1e3)
    rss_after, peak_after = _rss_bytes()
    return {
        "times_ms": times_ms,
        "warmup": warmup,
        "repeats": repeats,
        "blocks": blocks,
        "threads": threads,
        "threads_applied": threads_applied,
        "power_mode_applied": power_applied,
        "cpu_affinity_applied": pinned,
        "clock": clock_name,
        "predictor_cached": cached,
        "load_seconds": load_seconds,
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "peak_rss_before_bytes": peak_before,
        "peak_rss_after_bytes": peak_after,
    }


def _release_free_heap() -> bool:
    """Give freed heap memory back to the OS (``gc.collect`` + glibc ``malloc_trim(0)``); True if trimmed.

    Without it, memory that the imports allocated and freed stays resident, the model's allocations reuse it
    without raising the RSS, and the model's memory is under-reported (seen: a model with 4.2 MB of weights
    measured +1.9 MB without the trim, +5.6 MB with it).
    """
    import gc  # noqa: PLC0415

    gc.collect()
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):  # not glibc
        return False


def _reset_peak_rss() -> bool:
    """Reset this process's peak resident memory (VmHWM) to its current RSS (Linux >= 4.0); True if done."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def measure_memory_here(req: Request) -> Result:
    """Measure the peak memory of one model in this (fresh) process; see :func:`op_measure_memory`."""
    lite = _lite()  # imported before the baseline: the runtime is not the model's memory
    arrays = _input_arrays(_required(req, "inputs"), int(req.get("seed", 0)))
    threads = int(req.get("threads", 1))
    power_mode = req.get("power_mode")
    warmup = int(req.get("warmup", 2))
    runs = int(req.get("runs", 5))
    if warmup < 0 or runs < 1:
        raise ValueError("need warmup >= 0, runs >= 1")
    nb_file = _existing_file(_required(req, "nb_file"), "nb_file")
    trimmed = _release_free_heap()
    reset = _reset_peak_rss()
    baseline_rss, baseline_peak = _rss_bytes()
    config = lite.MobileConfig()
    config.set_model_from_file(nb_file)
    threads_set, _ = _configure(config, threads, None if power_mode is None else int(power_mode))
    predictor = lite.create_paddle_predictor(config)
    if not threads_set:
        _apply_threads(threads)
    _set_inputs(predictor, arrays)
    for _ in range(warmup + runs):
        predictor.run()
    rss_after, peak_after = _rss_bytes()
    if baseline_rss is None or peak_after is None:
        raise RuntimeError("this system reports no resident memory (/proc/self/status has no VmRSS/VmHWM)")
    method = "fresh process; %s; %s; peak minus the idle RSS before loading the model" % (
        "free heap trimmed" if trimmed else "free heap not trimmed (not glibc): may under-report",
        "VmHWM reset after imports" if reset else "VmHWM not resettable",
    )
    lower_bound = not trimmed or (not reset and baseline_peak is not None and peak_after <= baseline_peak)
    return {
        "inference_peak_bytes": max(0, peak_after - baseline_rss),
        "baseline_rss_bytes": baseline_rss,
        "process_peak_bytes": peak_after,
        "rss_after_bytes": rss_after,
        "peak_reset": reset,
        "heap_trimmed": trimmed,
        "lower_bound": lower_bound,
        "method": method,
        "runs": runs,
        "warmup": warmup,
    }


def op_measure_memory(req: Request) -> Result:
    """Peak memory of inference for one ``.nb``, measured in a fresh child process.

    This worker is long-lived: its peak RSS (VmHWM) only grows, and its cached predictors and malloc
    arenas hide a new model's needs. So a child process imports Paddle Lite and builds the inputs, resets
    its VmHWM to its current RSS (``/proc/self/clear_refs`` = 5), notes that idle RSS, loads the model, runs
    it ``warmup + runs`` times, and reports ``inference_peak_bytes = VmHWM - idle RSS``. Before the idle RSS is
    noted, freed heap memory is returned to the OS (``malloc_trim``), or the model would reuse it unseen.

    Args (in the request): nb_file, inputs (as for ``measure``), seed, threads, power_mode, warmup, runs,
    child_timeout_seconds (default 120).
    """
    timeout = float(req.get("child_timeout_seconds", 120.0))
    child_request = {k: v for k, v in req.items() if k not in ("id", "op", "child_timeout_seconds")}
    cmd = [sys.executable, os.path.abspath(__file__), "--measure-memory", json.dumps(child_request)]
    try:
        child = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise TimeoutError("the memory measurement took more than %.0f s" % exc.timeout) from None
    lines = [ln for ln in child.stdout.decode("utf-8", errors="replace").splitlines() if ln.strip()]
    stderr = child.stderr.decode("utf-8", errors="replace")
    if child.returncode != 0 or not lines:
        raise RuntimeError(
            "the memory measurement process failed (exit %s):\n%s" % (child.returncode, _cap_text(stderr)[-4000:])
        )
    reply = json.loads(lines[-1])
    if not reply.get("ok"):
        error = reply.get("error") or {}
        raise RuntimeError("memory measurement: %s: %s" % (error.get("type"), error.get("message")))
    return {k: v for k, v in reply.items() if k != "ok"}


HANDLERS: dict[str, Handler] = {
    "hello": op_hello,
    "convert": op_convert,
    "supported_ops": op_supported_ops,
    "check_model": op_check_model,
    "run": op_run,
    "measure": op_measure,
    "measure_memory": op_measure_memory,
}


# --------------------------------------------------------------------------------------------------
# serving


def serve(handlers: dict[str, Handler], channel: ProtocolChannel) -> int:
    """Answer requests from stdin until ``shutdown`` or end of input.

    Args:
        handlers: op name -> function of the request returning the result fields.
        channel: where responses go (see :func:`claim_protocol_channel`).

    Returns:
        The process exit code.
    """
    stdin = sys.stdin.buffer
    while True:
        raw = stdin.readline()
        if not raw:
            return 0  # the client went away
        line = raw.strip()
        if not line:
            continue
        rid: Any = None
        try:
            request = json.loads(line.decode("utf-8"))
            if not isinstance(request, dict):
                raise ValueError("a request must be a JSON object")
            rid = request.get("id")
            op = request.get("op")
            if op == "shutdown":
                channel.send({"id": rid, "ok": True})
                return 0
            handler = handlers.get(op) if isinstance(op, str) else None
            if handler is None:
                raise LookupError("unknown op %r (known: %s)" % (op, ", ".join(sorted(handlers))))
            result = handler(request)
            response = {"id": rid, "ok": True}
            response.update(result)
        except Exception as exc:  # noqa: BLE001  (every Python-level failure becomes an error response)
            response = {
                "id": rid,
                "ok": False,
                "error": {
                    "type": type(exc).__name__,
                    "message": str(exc),
                    "traceback": traceback.format_exc(limit=8),
                },
            }
        flush_native()
        channel.send(response)


def _set_parent_death_signal() -> None:
    """Die with the client (Linux): asked for by the client through DEVICEFIT_LITE_PDEATHSIG=1."""
    if os.environ.get("DEVICEFIT_LITE_PDEATHSIG") != "1" or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, 9, 0, 0, 0)  # SIGKILL


def _check_model_main(argv: list[str]) -> int:
    """One-shot child of ``check_model``: Paddle Lite prints the table and ends this process."""
    model_file, params_file, places = argv
    lite = _lite()
    opt = lite.Opt()
    opt.set_model_file(model_file)
    if params_file:
        opt.set_param_file(params_file)
    opt.set_valid_places(places)
    opt.check_if_model_supported(True)
    return 3  # not reached with Paddle Lite 2.13


def _measure_memory_main(argv: list[str]) -> int:
    """One-shot child of ``measure_memory``: one JSON line on the real stdout, native prints on stderr."""
    (request_json,) = argv
    channel = claim_protocol_channel()
    try:
        result = measure_memory_here(json.loads(request_json))
        reply: dict[str, Any] = {"ok": True}
        reply.update(result)
    except Exception as exc:  # noqa: BLE001  (reported to the parent as a failed measurement)
        reply = {"ok": False, "error": {"type": type(exc).__name__, "message": str(exc)}}
    flush_native()
    channel.send(reply)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point: serve the protocol, or run one of the one-shot children."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "--check-model":
        return _check_model_main(args[1:])
    if args and args[0] == "--measure-memory":
        return _measure_memory_main(args[1:])
    if args:
        sys.stderr.write("usage: lite_worker.py  (speaks JSON lines on stdin/stdout)\n")
        return 2
    channel = claim_protocol_channel()
    _set_parent_death_signal()
    return serve(HANDLERS, channel)


if __name__ == "__main__":
    sys.exit(main())
