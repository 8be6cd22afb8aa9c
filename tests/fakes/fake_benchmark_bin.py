"""FAKE Paddle Lite ``benchmark_bin``, for tests: there is no phone here, so this stands in for the binary a
user builds with ``--with_benchmark=ON`` and that devicefit pushes to the phone.

What it really does: it runs in the Paddle Lite interpreter of this host (``.lite/bin/python``), loads the
``--optimized_model_file`` with Paddle Lite's x86 runtime through the Lite worker's own code
(``evaluators/lite_worker.py``), feeds the inputs described by ``--input_shape`` / ``--input_data_path`` /
``--input_data_type`` (text files, as the real tool reads them; 1.0 everywhere without files), runs
``--warmup`` untimed and ``--repeats`` timed runs, and prints the report in the real tool's format (sections
and ``init/first/min/max/avg`` lines of ``lite/api/tools/benchmark/benchmark.cc``). It times what it is
given: an ``x86`` ``.nb`` is timed for real; an ``arm`` ``.nb`` "runs" on x86 without doing the model's work
(its outputs are garbage), so its times are real but meaningless. ``--threads`` go to the math libraries;
``--power_mode`` is reported but x86 has none. ``--enable_memory_profile=true`` adds the "Memory Usage"
lines from this process's ``getrusage`` max RSS, as the real tool does.

Like the real tool: flags are gflags ``--name=value``; an unknown flag is an error (exit 1); missing
``--backend``, ``--input_shape`` or model path prints the usage and exits 0 without a report.

Run it through a wrapper that a test writes (``#!/bin/sh`` + ``exec <lite python> fake_benchmark_bin.py "$@"``).
"""

from __future__ import annotations

import importlib.util
import resource
import sys
import time
from pathlib import Path
from typing import Any

WORKER = Path(__file__).resolve().parents[2] / "evaluators" / "lite_worker.py"

FLAGS: dict[str, Any] = {
    "optimized_model_file": "",
    "uncombined_model_dir": "",
    "model_file": "",
    "param_file": "",
    "input_shape": "",
    "input_data_path": "",
    "input_data_type": "",
    "output_data_path": "",
    "validation_set": "",
    "show_output_elem": False,
    "warmup": 0,
    "repeats": 1,
    "run_delay": -1.0,
    "power_mode": 0,
    "threads": 1,
    "result_path": "",
    "backend": "",
    "cpu_precision": "fp32",
    "gpu_precision": "fp16",
    "opencl_cache_dir": "",
    "opencl_kernel_cache_file": "paddle_lite_opencl_kernel.bin",
    "opencl_tuned_file": "paddle_lite_opencl_tuned.params",
    "opencl_tune_mode": "normal",
    "nnadapter_device_names": "",
    "nnadapter_context_properties": "",
    "enable_op_time_profile": False,
    "enable_memory_profile": False,
    "memory_check_interval_ms": 5,
    "config_path": "",
}


def parse_flags(argv: list[str]) -> dict[str, Any]:
    flags = dict(FLAGS)
    for arg in argv:
        if not arg.startswith("--"):
            continue  # gflags leaves positional arguments alone
        name, has_value, value = arg[2:].partition("=")
        if name not in flags:
            sys.stderr.write(f"ERROR: unknown command line flag '{name}'\n")
            sys.exit(1)
        default = flags[name]
        if isinstance(default, bool):
            flags[name] = (value.lower() in ("1", "true", "yes")) if has_value else True
        elif isinstance(default, int):
            flags[name] = int(value)
        elif isinstance(default, float):
            flags[name] = float(value)
        else:
            flags[name] = value
    return flags


def _load_worker() -> Any:
    spec = importlib.util.spec_from_file_location("lite_worker_for_fake_benchmark_bin", WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _max_rss_kb() -> float:
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def main() -> int:
    flags = parse_flags(sys.argv[1:])
    model = flags["optimized_model_file"]
    if not model or not flags["backend"] or not flags["input_shape"]:
        if not model:
            sys.stderr.write("\nNo model path is set!\n")
        if not flags["backend"]:
            sys.stderr.write("Must set --backend option!\n")
        if not flags["input_shape"]:
            sys.stderr.write("Must set --input_shape option!\n")
        print("benchmark_bin: Warning: SetUsageMessage() never called")
        return 0
    if not Path(model).is_file():
        sys.stderr.write(f"Mode file[{model}] not exist!\n")
        sys.stderr.flush()
        import os

        os.abort()

    import numpy as np

    worker = _load_worker()
    lite = worker._lite()
    shapes = [[int(d) for d in shape.split(",") if d] for shape in flags["input_shape"].split(":")]
    types = flags["input_data_type"].split(":") if flags["input_data_type"] else []
    paths = flags["input_data_path"].split(":") if flags["input_data_path"] else []
    arrays = []
    for index, shape in enumerate(shapes):
        kind = types[index] if index < len(types) else "float32"
        dtype = {"int64": np.int64, "int32": np.int32}.get(kind, np.float32)
        count = int(np.prod(shape))
        if paths:
            values = np.array(Path(paths[index]).read_text().split()[:count], dtype=dtype)
        else:
            values = np.ones(count, dtype=dtype)
        arrays.append((None, values.reshape(shape)))

    timer = time.perf_counter
    start = timer()
    config = lite.MobileConfig()
    config.set_model_from_file(model)
    predictor = lite.create_paddle_predictor(config)
    worker._apply_threads(int(flags["threads"]))
    init_ms = (timer() - start) * 1e3
    init_memory_kb = _max_rss_kb()
    worker._set_inputs(predictor, arrays)
    run_ms = []
    for _ in range(int(flags["warmup"]) + int(flags["repeats"])):
        start = timer()
        predictor.run()
        run_ms.append((timer() - start) * 1e3)
    timed = run_ms[-int(flags["repeats"]):]

    outputs = []
    for index in range(len(predictor.get_output_names())):
        array = predictor.get_output(index).numpy().astype(np.float64)
        outputs.append(array)

    def fixed(value: float) -> str:  # std::fixed, precision 3, setw(12), left-aligned
        return f"{value:.3f}".ljust(12)

    lines = ["", "======= Model Info =======", f"optimized_model_file: {model}"]
    lines.append(f"input_data_path: {flags['input_data_path'] or 'All 1.f'}")
    lines.append(f"input_shape: {flags['input_shape']}")
    lines.append(f"output tensor num: {len(outputs)}")
    for index, array in enumerate(outputs):
        lines.append(f"--- output tensor {index} ---")
        lines.append("output shape(NCHW): " + "".join(f"{d} " for d in array.shape))
        lines.append(f"output tensor {index} elem num: {array.size}")
        lines.append(f"output tensor {index} mean value: {array.mean():.6g}")
        lines.append(f"output tensor {index} standard deviation: {array.std():.6g}")
    lines += [
        "",
        "======= Runtime Info =======",
        "benchmark_bin version: fake-2.13rc0",
        f"threads: {flags['threads']}",
        f"power_mode: {flags['power_mode']}",
        f"warmup: {flags['warmup']}",
        f"repeats: {flags['repeats']}",
        f"result_path: {flags['result_path']}",
        "",
        "======= Backend Info =======",
        f"backend: {flags['backend']}",
        f"cpu precision: {flags['cpu_precision']}",
        "",
        "======= Perf Info =======",
        "Time(unit: ms):",
        f"init  = {fixed(init_ms)}",
        f"first = {fixed(run_ms[0])}",
        f"min   = {fixed(min(timed))}",
        f"max   = {fixed(max(timed))}",
        f"avg   = {fixed(sum(timed) / len(timed))}",
    ]
    if flags["enable_memory_profile"]:
        lines += [
            "",
            "Memory Usage(unit: MB):",
            f"init  = {fixed(init_memory_kb / 1024)}",
            f"peak  = {fixed(_max_rss_kb() / 1024)}",
        ]
    sys.stdout.write("\n".join(lines) + "\n\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
