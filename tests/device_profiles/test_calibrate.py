"""Calibration end to end: through a stand-in adb phone (an ARM program, timed by a fake runner that knows the
device's true costs) and through this host's real runner; the written profile versions read back."""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from devicefit.device_profiles import (
    DeviceProfile,
    Reach,
    dump_profile,
    find_profiles,
    load_profile,
    load_profile_file,
    next_version,
    user_profiles_dir,
)
from devicefit.device_profiles._calibrate import (
    CalibrationPlan,
    TimingProtocol,
    calibrate,
    write_calibration,
)
from devicefit.device_profiles._features import kernel_features
from devicefit.device_profiles._shapes import Tensor, infer_shapes
from devicefit.evaluators._kernels import read_kernel_program
from devicefit.evaluators._latency import DeviceRunner, HostRunner, MeasureSettings, RunTimings
from devicefit.evaluators._lite_client import LiteWorker

TINY_PLAN = CalibrationPlan(probes_per_kind=1, gemm_probes=2, encoders=2, encoder_hidden=(32,), folds=2,
                            probe_kinds=("linear", "linear_relu", "matmul_qk", "softmax", "layer_norm", "gelu"))
PHONE = DeviceProfile(id="fake-phone", name="A stand-in phone", soc="none", unit="cpu", places="arm",
                      reach=Reach(kind="adb", serial="FAKE0001"), threads=4)


def true_latency_ms(program_dir: Path, inputs: Sequence[Path]) -> float:
    """The stand-in device's latency: a fixed linear function of the kernels' features."""
    shapes = [np.load(p, mmap_mode="r") for p in inputs]
    program = infer_shapes(read_kernel_program(program_dir / "model", program_dir / "params"),
                           [Tensor(tuple(a.shape), str(a.dtype)) for a in shapes])
    total_us = 20.0
    for kernel in program.kernels:
        f = kernel_features(kernel)
        gemm = kernel.type in ("fc", "matmul_v2", "matmul")
        total_us += 2.0 * f.calls + (25.0 if gemm else 60.0) * f.mflop + 0.02 * (f.in_kib + f.out_kib + f.weight_kib)
    return total_us / 1000.0


class FakePhoneRunner(DeviceRunner):
    """Times an ARM ``.nb`` by computing the true latency of its program, with a little seeded noise."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def time_runs(self, nb_file: Path, sample_inputs: Sequence[Path], profile: DeviceProfile,
                  settings: MeasureSettings) -> RunTimings:
        assert profile.reach.kind == "adb" and nb_file.suffix == ".nb" and nb_file.is_file()
        self.calls += 1
        latency = true_latency_ms(nb_file.parent / "program", sample_inputs)
        runs = settings.blocks * settings.runs_per_block
        times = latency * (1.0 + 0.01 * np.abs(self.rng.standard_normal(runs)))
        return RunTimings(tuple(float(t) for t in times), settings.runs_per_block)


@pytest.fixture(scope="module")
def lite():
    with LiteWorker() as worker:
        yield worker


def test_calibrating_a_stand_in_adb_phone_recovers_its_costs(tmp_path, lite) -> None:
    runner = FakePhoneRunner(seed=0)
    protocol = TimingProtocol(visits=2, min_runs=5, max_runs=5)
    calibration = calibrate(PHONE, runner=runner, worker=lite, work_dir=tmp_path / "work", plan=TINY_PLAN,
                            protocol=protocol, today=datetime.date(2026, 11, 28))
    assert runner.calls == 2 * len(calibration.samples) and not calibration.failures
    new = calibration.profile
    assert new.version == 2 and new.id == "fake-phone" and new.calibrated
    provenance = new.predictor.provenance
    assert provenance.calibrated and provenance.date == "2026-11-28" and provenance.models == len(calibration.samples)
    assert "adb (FAKE0001)" in provenance.measured_on and "wall clock" in provenance.notes
    assert "arm/fc/fp32" in new.predictor.kernels  # fitted on the ARM kernel list, after opt's fc fusion
    # A tiny sweep cannot pin every coefficient down (tests/device_profiles/test_fit.py checks the fit's
    # accuracy); here: the cross-validated error is measured and recorded with the coefficients.
    assert provenance.error == calibration.error and calibration.error.models == 2
    path, data_path = write_calibration(calibration, tmp_path / "profiles")
    assert path.name == "fake-phone.v2.yaml" and data_path.name == "fake-phone.v2.measurements.json"
    loaded = load_profile_file(path)
    assert dataclasses.replace(loaded, predictor=None) == dataclasses.replace(new, predictor=None)
    assert loaded.predictor.kernels.keys() == new.predictor.kernels.keys()
    for key, cost in new.predictor.kernels.items():  # written with 5 significant digits
        assert loaded.predictor.kernels[key].vector() == pytest.approx(cost.vector(), rel=1e-4, abs=1e-9)
    assert dump_profile(loaded) in path.read_text()  # reading and writing again changes nothing
    measurements = json.loads(data_path.read_text())
    assert measurements["unit"] == "ms" and len(measurements["models"]) == len(calibration.samples)
    with pytest.raises(FileExistsError):
        write_calibration(calibration, tmp_path / "profiles")
    assert next_version("fake-phone", tmp_path / "profiles") == 3


def test_calibrating_this_host_writes_a_new_version_that_loading_by_id_picks(tmp_path, lite) -> None:
    shipped = load_profile("host-x86")
    protocol = TimingProtocol(visits=2, visit_budget_ms=2.0, clock="thread_cpu")
    plan = dataclasses.replace(TINY_PLAN, probe_kinds=("linear", "softmax", "add"))
    calibration = calibrate(shipped, runner=HostRunner(lite), worker=lite, work_dir=tmp_path / "work", plan=plan,
                            protocol=protocol, version=next_version("host-x86", user_profiles_dir()))
    assert calibration.profile.version == shipped.version + 1
    assert all(s.latency_ms > 0 for s in calibration.samples) and not calibration.failures
    path, _ = write_calibration(calibration, user_profiles_dir())
    try:
        loaded = load_profile("host-x86")
        assert loaded.version == shipped.version + 1 and loaded.calibrated
        assert "thread_cpu clock" in loaded.predictor.provenance.notes
        entry = [e for e in find_profiles() if e.profile.id == "host-x86"][0]
        assert entry.path == path and not entry.shipped
    finally:
        path.unlink()
        path.with_name(path.stem + ".measurements.json").unlink()


def test_the_shipped_folder_is_never_written(tmp_path) -> None:
    from devicefit.device_profiles import PROFILES_DIR, write_profile

    with pytest.raises(ValueError, match="never writes into the shipped profile folder"):
        write_profile(PHONE, PROFILES_DIR)
