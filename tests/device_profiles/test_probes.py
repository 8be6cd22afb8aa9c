"""The probes of the small data-movement ops, of int8 conversions and of bias adds: they convert, their kernels get
cost keys of their own (a bias add the one of a linear layer's), and a profile calibrated with them prices those
kernels without a stand-in op (the stand-in stays the fallback of a profile that lacks the key, and is named)."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import numpy as np
import pytest

from devicefit.device_profiles import load_profile
from devicefit.device_profiles._calibrate import (
    CalibrationPlan,
    TimingProtocol,
    calibrate,
    device_specs,
    plan_specs,
    prepare_model,
)
from devicefit.device_profiles._features import kernel_features
from devicefit.device_profiles._fit import Sample, fit_predictor
from devicefit.device_profiles._predictor import STAND_IN_OPS, Provenance, predict_latency
from devicefit.device_profiles._probes import DATA_MOVEMENT_KINDS, INT8_KINDS, EncoderSpec, ProbeSpec
from devicefit.device_profiles._shapes import ShapedProgram
from devicefit.evaluators._lite_client import LiteWorker
from tests.device_profiles.test_calibrate import PHONE, TrueCostRunner, true_latency_ms

#: The op each data-movement probe is built around, on this host's places.
HOST_OPS = {"zeros_like": "fill_any_like", "arange": "range", "unsqueeze": "unsqueeze2", "squeeze": "squeeze2"}
PROVENANCE = Provenance(calibrated=True, method="test", measured_on="nothing", date="2026-11-28", tool="none")


@pytest.fixture(scope="module")
def lite():
    with LiteWorker() as worker:
        yield worker


def _own_keys(program: ShapedProgram) -> dict[str, str]:
    """op type -> cost key of the program's kernels."""
    return {k.type: kernel_features(k).key for k in program.kernels}


def test_data_movement_probes_convert_and_a_fitted_host_profile_prices_them_without_stand_in(tmp_path, lite) -> None:
    host = load_profile("host-x86")
    assert set(HOST_OPS) == set(DATA_MOVEMENT_KINDS) and set(HOST_OPS.values()) <= set(STAND_IN_OPS)
    shapes = {"zeros_like": [(("s", 1), ("d", 64)), (("s", 65), ("d", 128))], "arange": [(("s", 17),), (("s", 300),)],
              "unsqueeze": [(("s", 17), ("d", 64)), (("s", 50), ("d", 256))],
              "squeeze": [(("s", 17), ("d", 64)), (("s", 9), ("d", 32))]}
    samples, programs = [], {}
    for kind, variants in shapes.items():
        for dims in variants:
            spec = ProbeSpec(kind, dims)  # type: ignore[arg-type]
            model = prepare_model("probe", spec, host, lite, tmp_path / spec.name, 0)
            keys = _own_keys(model.program)
            assert HOST_OPS[kind] in keys, f"{spec.name}: {sorted(keys)}"
            programs[spec.name] = (model.program, keys[HOST_OPS[kind]])
            # a stand-in device: 20 us per run, 3 us per kernel, 0.01 us per KiB moved
            cost = sum(3.0 + 0.01 * (f.in_kib + f.out_kib) for f in map(kernel_features, model.program.kernels))
            samples.append(Sample.from_program(spec.name, model.program, (20.0 + cost) / 1000.0, "probe"))
    fitted = fit_predictor(samples, PROVENANCE)
    for program, key in programs.values():
        assert fitted.kernels[key].models >= 2
        prediction = predict_latency(program, fitted)
        assert prediction.stand_ins == {} and prediction.kernels_ms[key] > 0
    # a profile without the key (a seeded one) falls back to the stand-in op, and the prediction says so
    program, key = programs["arange-s17"]
    seeded = dataclasses.replace(fitted, kernels={k: v for k, v in fitted.kernels.items() if k != key})
    assert predict_latency(program, seeded).stand_ins == {key: "host/fill_constant/any"}


def _probe_kinds(specs: list[tuple[str, ProbeSpec | EncoderSpec]]) -> list[str]:
    return sorted(s.kind for g, s in specs if isinstance(s, ProbeSpec))


def test_int8_probes_are_in_the_sweep_only_of_devices_that_run_int8() -> None:
    plan = CalibrationPlan(probes_per_kind=1, gemm_probes=0, encoders=2, encoder_hidden=(32,), small_encoders=0,
                           wide_encoders=0, folds=2,
                           probe_kinds=("linear", *INT8_KINDS, *DATA_MOVEMENT_KINDS))
    assert _probe_kinds(device_specs(plan, load_profile("sd865-cpu-4t"))) == _probe_kinds(plan_specs(plan))
    host = _probe_kinds(device_specs(plan, load_profile("host-x86")))
    assert "int8_linear" in _probe_kinds(plan_specs(plan)) and "int8_linear" not in host and "zeros_like" in host
    # the new kinds draw from their own stream: the sweep of the kinds that were there before is unchanged
    before = dataclasses.replace(plan, probe_kinds=("linear",))
    assert [s.name for _, s in plan_specs(before)] == [
        s.name for _, s in plan_specs(plan) if not (isinstance(s, ProbeSpec) and s.kind != "linear")
    ]


def test_a_phone_calibrated_with_int8_probes_prices_calib_and_int8_gemms_itself(tmp_path, lite) -> None:
    phone = dataclasses.replace(PHONE, precisions=("fp32", "int8"))
    plan = CalibrationPlan(probes_per_kind=2, gemm_probes=0, encoders=2, encoder_hidden=(32,), small_encoders=0,
                           wide_encoders=0, folds=2,
                           probe_kinds=("linear", *INT8_KINDS))
    protocol = TimingProtocol(visits=1, min_runs=3, max_runs=3)
    calibration = calibrate(phone, runner=TrueCostRunner(seed=0), worker=lite, work_dir=tmp_path / "work", plan=plan,
                            protocol=protocol, today=datetime.date(2026, 11, 28))
    assert not calibration.failures
    kernels = calibration.profile.predictor.kernels
    assert kernels["arm/calib/int8"].models == 2 and kernels["arm/fc/int8"].models == 2
    probe = next(s for s in calibration.samples if s.name.startswith("int8_linear"))
    work = tmp_path / "work" / probe.name
    from devicefit.device_profiles._program import read_kernel_program
    from devicefit.device_profiles._shapes import Tensor, infer_shapes

    sample = np.load(work / "input_0.npy")
    program = infer_shapes(read_kernel_program(work / "program" / "model", work / "program" / "params"),
                           [Tensor(tuple(sample.shape), str(sample.dtype))])
    prediction = predict_latency(program, calibration.profile.predictor)
    # priced by its own key (a sweep this small cannot split the probe's cost between calib and fc: no value check)
    assert prediction.stand_ins == {} and "arm/calib/int8" in prediction.kernels_ms
    assert prediction.latency_ms == pytest.approx(true_latency_ms(work / "program", [work / "input_0.npy"]), rel=0.5)



def test_bias_add_probes_time_a_linear_layer_s_bias_add_alone_on_a_stream_of_their_own(tmp_path, lite) -> None:
    host = load_profile("host-x86")
    linear = prepare_model("probe", ProbeSpec("linear", (("m", 17), ("k", 64), ("n", 96))), host, lite, tmp_path / "l", 0)
    bias = prepare_model("probe", ProbeSpec("bias_add", (("s", 17), ("d", 96))), host, lite, tmp_path / "b", 0)

    def adds(program: ShapedProgram) -> list[Any]:
        return [kernel_features(k) for k in program.kernels if k.type == "elementwise_add"]

    # x86 runs a linear layer as matmul_v2 then the bias add; the probe runs that same bias add, and no GEMM
    (in_linear,), (alone,) = adds(linear.program), adds(bias.program)
    assert in_linear.key == alone.key == "x86/elementwise_add.bcast/fp32" and alone.weight_kib > 0
    assert in_linear.vector() == alone.vector()
    assert "matmul_v2" in {k.type for k in linear.program.kernels}
    assert not {"matmul_v2", "fc"} & {k.type for k in bias.program.kernels}
    plan = CalibrationPlan()
    specs = plan_specs(plan)
    assert sum(isinstance(s, ProbeSpec) and s.kind == "bias_add" for _, s in specs) == plan.probes_per_kind
    before = dataclasses.replace(plan, probe_kinds=tuple(k for k in plan.probe_kinds if k != "bias_add"))
    assert [s.name for _, s in plan_specs(before)] == [
        s.name for _, s in specs if not (isinstance(s, ProbeSpec) and s.kind == "bias_add")
    ]
