"""benchmark_bin's command line and the parser of its report (format of lite/api/tools/benchmark/benchmark.cc)."""

from __future__ import annotations

import numpy as np
import pytest

from devicefit.evaluators._benchmark_bin import (
    BenchmarkArgs,
    BenchmarkOutputError,
    check_report,
    format_input_values,
    parse_report,
)
from devicefit.evaluators._nnadapter import benchmark_backend

# What an Android build prints (Device Info only exists there), with the memory profile on: the monitor
# thread's chatter comes first, the report after it.
ANDROID_REPORT = """start monitoring memory!
cpu usage ratio: 98.0%
cpu usage ratio: 99.5%
stop monitoring memory!

======= Device Info =======
Brand: Xiaomi
Device: cepheus
Model: MI 9
Android Version: 10
Android API Level: 29

======= Model Info =======
optimized_model_file: /data/local/tmp/devicefit/s/candidate.nb
input_data_path: /data/local/tmp/devicefit/s/candidate_input0.txt
input_shape: 1,8,16
output tensor num: 1
--- output tensor 0 ---
output shape(NCHW): 1 5
output tensor 0 elem num: 5
output tensor 0 mean value: 0.001
output tensor 0 standard deviation: 0.00219647

======= Runtime Info =======
benchmark_bin version: v2.13-rc
threads: 4
power_mode: 0
warmup: 10
repeats: 20
result_path: 

======= Backend Info =======
backend: arm
cpu precision: fp32

======= Perf Info =======
Time(unit: ms):
init  = 15.305      
first = 43.670      
min   = 32.577      
max   = 32.895      
avg   = 32.723      

Memory Usage(unit: MB):
init  = 18.250      
peak  = 24.500      

"""


def _args(**changes) -> BenchmarkArgs:
    fields = dict(
        model_file="/data/local/tmp/devicefit/s/candidate.nb",
        input_shapes=((1, 8, 16),),
        input_files=("/data/local/tmp/devicefit/s/candidate_input0.txt",),
        input_types=("float32",),
        warmup=10,
        repeats=20,
        threads=4,
        power_mode=0,
        backend="arm",
    )
    fields.update(changes)
    return BenchmarkArgs(**fields)


def test_the_report_is_parsed_with_units() -> None:
    report = parse_report(ANDROID_REPORT)
    assert (report.init_ms, report.first_ms, report.min_ms, report.max_ms, report.avg_ms) == (
        15.305, 43.670, 32.577, 32.895, 32.723,
    )
    assert report.version == "v2.13-rc" and report.threads == 4 and report.power_mode == 0 and report.repeats == 20
    assert report.backend == "arm"
    assert report.memory_init_bytes == round(18.25 * 2**20) and report.memory_peak_bytes == round(24.5 * 2**20)
    check_report(report, _args())


def test_without_the_memory_profile_there_is_no_memory() -> None:
    report = parse_report(ANDROID_REPORT.split("Memory Usage")[0])
    assert report.memory_peak_bytes is None and report.avg_ms == 32.723


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        ("No model path is set!\n", "no '======= Perf Info =======' section"),
        (ANDROID_REPORT.replace("avg   = 32.723", ""), "no avg in Time"),
        (ANDROID_REPORT.replace("min   = 32.577", "min   = 0.000"), "min = 0.0 ms: not a positive time"),
        (ANDROID_REPORT.replace("max   = 32.895", "max   = nan"), "max = nan ms"),
    ],
)
def test_a_report_without_the_figures_is_refused(stdout: str, message: str) -> None:
    with pytest.raises(BenchmarkOutputError, match=message):
        parse_report(stdout)


def test_an_ignored_nnadapter_device_is_refused() -> None:
    with pytest.raises(BenchmarkOutputError, match="does not know the NNAdapter device.*android_nnapi"):
        parse_report(ANDROID_REPORT, "Find and ignore unsupport nnadapter device: android_nnapi\n")


def test_a_report_that_contradicts_the_request_is_refused() -> None:
    report = parse_report(ANDROID_REPORT)
    with pytest.raises(BenchmarkOutputError, match=r"threads 4 \(asked 2\), power_mode 0 \(asked 1\)"):
        check_report(report, _args(threads=2, power_mode=1))


def test_flags_follow_the_documented_form() -> None:
    backend, devices = benchmark_backend("huawei_kirin_npu,arm")
    args = _args(
        input_shapes=((1, 8, 16), (1, 8)),
        input_files=("a.txt", "b.txt"),
        input_types=("float32", "int64"),
        backend=backend,
        nnadapter_device_names=devices,
        memory_profile=True,
    )
    assert args.to_argv() == [
        "--optimized_model_file=/data/local/tmp/devicefit/s/candidate.nb",
        "--input_shape=1,8,16:1,8",
        "--input_data_type=float32:int64",
        "--input_data_path=a.txt:b.txt",
        "--warmup=10",
        "--repeats=20",
        "--threads=4",
        "--power_mode=0",
        "--backend=nnadapter,arm",
        "--nnadapter_device_names=huawei_kirin_npu",
        "--enable_memory_profile=true",
    ]
    assert benchmark_backend("opencl,arm") == ("opencl,arm", None)
    gpu = _args(backend="opencl,arm", opencl_cache_dir="/data/local/tmp/devicefit/s", opencl_files_prefix="candidate")
    assert gpu.to_argv()[-3:] == [
        "--opencl_cache_dir=/data/local/tmp/devicefit/s",  # compiled kernels stay in the session folder
        "--opencl_kernel_cache_file=candidate_opencl_kernels.bin",
        "--opencl_tuned_file=candidate_opencl_tuned.params",
    ]
    assert not any("opencl" in flag for flag in _args(opencl_cache_dir="/x").to_argv())  # CPU backend
    with pytest.raises(ValueError, match="feeds only"):
        _args(input_types=("bool",))


def test_input_text_round_trips_float32_and_ints() -> None:
    values = np.random.default_rng(0).standard_normal(100).astype("float32")
    text = format_input_values(values.tolist(), "float32")
    assert np.array_equal(np.array(text.split(), dtype="float32"), values)
    assert format_input_values([3, 70000000000], "int64") == "3\n70000000000\n"
