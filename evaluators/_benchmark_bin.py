"""Paddle Lite's ``benchmark_bin``: the command line devicefit gives it, and the parser of what it prints.

Written against Paddle Lite's own source (``lite/api/tools/benchmark/benchmark.cc``, ``benchmark.h`` and
``utils/flags.cc``; the tool is built with ``--with_benchmark=ON``) and ``docs/performance/benchmark_tools.md``.

Flags used (gflags, ``--name=value``):

- ``--optimized_model_file=<.nb>``: a model ``opt`` already converted (devicefit converts on the host, so
  the ``.nb`` that is timed is the one that is deployed);
- ``--input_shape=1,8,32:1,5``: one shape per input, dims joined by ``,``, inputs by ``:``;
- ``--input_data_path=a.txt:b.txt``: text files read with ``>>`` (whitespace-separated values), one per input;
  without it every input is filled with 1;
- ``--input_data_type=float32:int64``: ``int64`` or ``int32``, anything else means ``float32``;
- ``--warmup=<n>``, ``--repeats=<n>``, ``--threads=<n>``;
- ``--power_mode=<n>``: Paddle Lite's ``PowerMode`` (0 high/big cores, 1 low, 2 full, 3 no bind, 4 and 5 random);
- ``--backend=arm|opencl,arm|nnadapter,arm|x86`` and, for NNAdapter, ``--nnadapter_device_names=<device>``;
- for OpenCL backends ``--opencl_cache_dir=<dir>``, ``--opencl_kernel_cache_file=<name>`` and
  ``--opencl_tuned_file=<name>``: compiled kernels and tuning results go to the session folder under a name
  per model (the docs recommend unique names); without them an Android build writes into /data/local/tmp;
- ``--enable_memory_profile=true`` (Linux and Android builds): a thread samples ``getrusage`` max RSS every
  5 ms, which disturbs timing, so devicefit asks for memory in a separate run.

What it prints at the end (stdout; values with 3 decimals, ``std::fixed``)::

    ======= Runtime Info =======
    benchmark_bin version: <tag or commit>
    threads: 1
    power_mode: 0
    warmup: 10
    repeats: 20
    ...
    ======= Backend Info =======
    backend: arm
    ...
    ======= Perf Info =======
    Time(unit: ms):
    init  = 15.305
    first = 43.670
    min   = 32.577
    max   = 32.895
    avg   = 32.723

    Memory Usage(unit: MB):          (only with --enable_memory_profile)
    init  = 12.345
    peak  = 20.000

``min``/``max``/``avg`` cover the ``repeats`` timed runs only; ``first`` is the first *warm-up* run; there are no
per-run times. Memory is ``ru_maxrss / 1024`` of the benchmark_bin process (MiB). An NNAdapter device name the
build does not know is reported on stderr as ``Find and ignore unsupport nnadapter device: <name>`` and the
model then runs without it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

#: Input dtypes ``benchmark_bin`` can feed, with the ``--input_data_type`` word for each.
INPUT_TYPES = {"float32": "float32", "int64": "int64", "int32": "int32"}

_SECTION = re.compile(r"^=+ (?P<name>[A-Za-z ]+?) =+\s*$")
_FIGURE = re.compile(r"^\s*(?P<key>init|first|min|max|avg|peak)\s*=\s*(?P<value>\S+)\s*$")
_FIELD = re.compile(r"^(?P<key>[A-Za-z_ ()]+?):\s*(?P<value>.*?)\s*$")
_IGNORED_DEVICE = re.compile(r"Find and ignore unsupport nnadapter device:\s*(\S+)")
_NO_NNADAPTER = re.compile(r"No avaliable device found for nnadapter|The device list for nnadapter is null")


class BenchmarkOutputError(ValueError):
    """``benchmark_bin``'s output lacks a figure devicefit needs, or contradicts what it was asked to do."""


@dataclasses.dataclass(frozen=True)
class BenchmarkArgs:
    """One ``benchmark_bin`` invocation.

    Attributes:
        model_file: The ``.nb`` as the device sees it.
        input_shapes: One shape per model input.
        input_files: One text file per input as the device sees it (empty: every input filled with 1).
        input_types: One of :data:`INPUT_TYPES` per input.
        warmup: Untimed runs.
        repeats: Timed runs.
        threads: Inference threads.
        power_mode: Paddle Lite ``PowerMode`` value.
        backend: ``arm``, ``opencl,arm``, ``nnadapter,arm``, ``x86`` ...
        nnadapter_device_names: For ``nnadapter`` backends, e.g. ``huawei_kirin_npu``.
        memory_profile: Ask for the memory report (disturbs timing).
        opencl_cache_dir: For OpenCL backends: where compiled kernels and tuning results go.
        opencl_files_prefix: For OpenCL backends: their file names start with this (one per model).
    """

    model_file: str
    input_shapes: tuple[tuple[int, ...], ...]
    input_files: tuple[str, ...]
    input_types: tuple[str, ...]
    warmup: int
    repeats: int
    threads: int
    power_mode: int
    backend: str
    nnadapter_device_names: str | None = None
    memory_profile: bool = False
    opencl_cache_dir: str | None = None
    opencl_files_prefix: str = "model"

    def __post_init__(self) -> None:
        if not self.input_shapes:
            raise ValueError("benchmark_bin needs the shape of every model input")
        if self.input_files and len(self.input_files) != len(self.input_shapes):
            raise ValueError("give one input file per input shape, or none")
        if len(self.input_types) != len(self.input_shapes):
            raise ValueError("give one input type per input shape")
        unknown = [t for t in self.input_types if t not in INPUT_TYPES]
        if unknown:
            raise ValueError(f"benchmark_bin feeds only {sorted(INPUT_TYPES)} inputs, not {unknown}")
        if self.warmup < 0 or self.repeats < 1 or self.threads < 1:
            raise ValueError(f"invalid counts: warmup {self.warmup}, repeats {self.repeats}, threads {self.threads}")

    def to_argv(self) -> list[str]:
        """The flags, in the documented ``--name=value`` form."""
        argv = [
            f"--optimized_model_file={self.model_file}",
            "--input_shape=" + ":".join(",".join(str(d) for d in shape) for shape in self.input_shapes),
            "--input_data_type=" + ":".join(INPUT_TYPES[t] for t in self.input_types),
        ]
        if self.input_files:
            argv.append("--input_data_path=" + ":".join(self.input_files))
        argv += [
            f"--warmup={self.warmup}",
            f"--repeats={self.repeats}",
            f"--threads={self.threads}",
            f"--power_mode={self.power_mode}",
            f"--backend={self.backend}",
        ]
        if self.nnadapter_device_names:
            argv.append(f"--nnadapter_device_names={self.nnadapter_device_names}")
        if self.opencl_cache_dir and "opencl" in self.backend:
            argv += [
                f"--opencl_cache_dir={self.opencl_cache_dir}",
                f"--opencl_kernel_cache_file={self.opencl_files_prefix}_opencl_kernels.bin",
                f"--opencl_tuned_file={self.opencl_files_prefix}_opencl_tuned.params",
            ]
        if self.memory_profile:
            argv.append("--enable_memory_profile=true")
        return argv


@dataclasses.dataclass(frozen=True)
class BenchmarkReport:
    """What one ``benchmark_bin`` run reported (times in ms, memory in bytes).

    Attributes:
        init_ms: Time to create the predictor.
        first_ms: The first (warm-up) run.
        min_ms: Fastest timed run.
        max_ms: Slowest timed run.
        avg_ms: Mean of the timed runs.
        version: ``benchmark_bin version:`` (Paddle Lite tag or commit), or "".
        threads: ``threads:`` as it reports them.
        power_mode: ``power_mode:`` as it reports it.
        warmup: ``warmup:`` as it reports it.
        repeats: ``repeats:`` as it reports them.
        backend: ``backend:`` as it reports it.
        memory_init_bytes: Peak RSS after creating the predictor (memory profile only).
        memory_peak_bytes: Peak RSS of the whole run (memory profile only).
    """

    init_ms: float
    first_ms: float
    min_ms: float
    max_ms: float
    avg_ms: float
    version: str
    threads: int | None
    power_mode: int | None
    warmup: int | None
    repeats: int | None
    backend: str
    memory_init_bytes: int | None = None
    memory_peak_bytes: int | None = None


def _number(value: str, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise BenchmarkOutputError(f"'{what} = {value}' is not a number") from None


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def parse_report(stdout: str, stderr: str = "") -> BenchmarkReport:
    """Parse ``benchmark_bin``'s output.

    Args:
        stdout: What it printed on standard output (its report).
        stderr: What it printed on standard error (checked for NNAdapter devices it ignored).

    Raises:
        BenchmarkOutputError: The report is missing, incomplete, or says an NNAdapter device was ignored.
    """
    ignored = _IGNORED_DEVICE.findall(stderr + "\n" + stdout)
    if ignored or _NO_NNADAPTER.search(stderr + "\n" + stdout):
        names = ", ".join(sorted(set(ignored))) or "?"
        raise BenchmarkOutputError(
            f"this benchmark_bin does not know the NNAdapter device(s) {names}: the model would run without "
            "the accelerator (rebuild benchmark_bin with that device, or use a newer Paddle Lite)"
        )
    section = ""
    subsection = ""
    fields: dict[str, str] = {}
    times: dict[str, float] = {}
    memory: dict[str, float] = {}
    for raw in stdout.splitlines():
        line = raw.rstrip()
        heading = _SECTION.match(line.strip())
        if heading:
            section, subsection = heading.group("name").strip(), ""
            continue
        if section == "Perf Info":
            if line.startswith("Time(unit: ms)"):
                subsection = "time"
                continue
            if line.startswith("Memory Usage(unit: MB)"):
                subsection = "memory"
                continue
            figure = _FIGURE.match(line)
            if figure and subsection:
                target = times if subsection == "time" else memory
                target[figure.group("key")] = _number(figure.group("value"), figure.group("key"))
            continue
        field = _FIELD.match(line.strip())
        if field and section in ("Runtime Info", "Backend Info"):
            fields.setdefault(field.group("key").strip(), field.group("value"))
    missing = [key for key in ("init", "first", "min", "max", "avg") if key not in times]
    if missing:
        where = "no '======= Perf Info =======' section" if not times else f"no {', '.join(missing)} in Time(unit: ms)"
        raise BenchmarkOutputError(f"benchmark_bin's output has {where}")
    for key in ("min", "max", "avg"):
        if not times[key] > 0 or times[key] != times[key] or times[key] == float("inf"):
            raise BenchmarkOutputError(
                f"benchmark_bin reported {key} = {times[key]} ms: not a positive time (below its 0.001 ms "
                "resolution, or a broken run)"
            )
    mib = 1024 * 1024
    return BenchmarkReport(
        init_ms=times["init"],
        first_ms=times["first"],
        min_ms=times["min"],
        max_ms=times["max"],
        avg_ms=times["avg"],
        version=fields.get("benchmark_bin version", ""),
        threads=_int_or_none(fields.get("threads")),
        power_mode=_int_or_none(fields.get("power_mode")),
        warmup=_int_or_none(fields.get("warmup")),
        repeats=_int_or_none(fields.get("repeats")),
        backend=fields.get("backend", ""),
        memory_init_bytes=round(memory["init"] * mib) if "init" in memory else None,
        memory_peak_bytes=round(memory["peak"] * mib) if "peak" in memory and memory["peak"] > 0 else None,
    )


def check_report(report: BenchmarkReport, args: BenchmarkArgs) -> None:
    """Check that ``benchmark_bin`` did what it was asked (an old build may ignore flags silently).

    Raises:
        BenchmarkOutputError: It reports other threads, power mode, warm-up, repeats or backend.
    """
    expected: Sequence[tuple[str, object, object]] = (
        ("threads", report.threads, args.threads),
        ("power_mode", report.power_mode, args.power_mode),
        ("warmup", report.warmup, args.warmup),
        ("repeats", report.repeats, args.repeats),
        ("backend", report.backend or None, args.backend),
    )
    wrong = [f"{name} {got} (asked {asked})" for name, got, asked in expected if got is not None and got != asked]
    if wrong:
        raise BenchmarkOutputError("benchmark_bin did not run as asked: " + ", ".join(wrong))


def format_input_values(values: Sequence[float] | Sequence[int], dtype: str) -> str:
    """An input array's values as the text ``benchmark_bin`` reads with ``>>`` (one value per line).

    Floats are written with 9 significant digits, which round-trip float32 exactly.
    """
    if dtype == "float32":
        return "\n".join(f"{float(v):.9g}" for v in values) + "\n"
    return "\n".join(str(int(v)) for v in values) + "\n"
