"""The fit recovers known costs from synthetic measurements; errors are summarised correctly."""

from __future__ import annotations

import numpy as np
import pytest

from devicefit.device_profiles import KernelCost, PredictorParams, Provenance
from devicefit.device_profiles._features import KernelFeatures
from devicefit.device_profiles._fit import (
    FitError,
    KernelRow,
    Sample,
    cross_validate,
    error_summary,
    fit_predictor,
    predict_sample_ms,
)

PROVENANCE = Provenance(calibrated=True, method="test", measured_on="nothing", date="2026-11-28", tool="none")
TRUTH = PredictorParams(
    provenance=PROVENANCE,
    overhead_us=3.0,
    kernels={
        "x86/matmul_v2.weights/fp32": KernelCost(call_us=1.0, mflop_us=40.0, out_kib_us=0.5),
        "x86/softmax/fp32": KernelCost(call_us=0.5, slice_us=0.05, mflop_us=150.0),
    },
)


def _row(key: str, rng: np.random.Generator, signature=None) -> KernelRow:
    slices = float(rng.integers(1, 64)) if "softmax" in key else 1.0
    features = KernelFeatures(key, 1.0, slices, float(rng.uniform(0.01, 5.0)), float(rng.uniform(1, 64)),
                              float(rng.uniform(1, 64)), 0.0)
    return KernelRow(features, signature)


def _samples(rng: np.random.Generator, truth: PredictorParams, noise: float = 0.0) -> list[Sample]:
    samples = []
    for i in range(40):
        key = "x86/matmul_v2.weights/fp32" if i % 2 else "x86/softmax/fp32"
        rows = (_row(key, rng),)
        samples.append(Sample(f"probe{i}", rows, 0, 0.0, 1.0, "probe"))
    for i in range(12):
        rows = tuple(_row(k, rng) for k in TRUTH.kernels for _ in range(int(rng.integers(1, 6))))
        samples.append(Sample(f"model{i}", rows, 0, 0.0, 1.0, "model"))
    out = []
    for s in samples:
        measured = predict_sample_ms(truth, s) * (1.0 + noise * rng.standard_normal())
        out.append(Sample(s.name, s.kernels, 0, 0.0, measured, s.group))
    return out


def test_fit_recovers_exact_costs_from_noise_free_measurements() -> None:
    samples = _samples(np.random.default_rng(0), TRUTH)
    params = fit_predictor(samples, PROVENANCE, rounds=1, ridge=0.0)
    for sample in samples:
        assert predict_sample_ms(params, sample) == pytest.approx(sample.latency_ms, rel=1e-3)
    assert params.kernels["x86/matmul_v2.weights/fp32"].mflop_us == pytest.approx(40.0, rel=0.02)
    assert params.kernels["x86/softmax/fp32"].models == 20 + 12  # its probes, and every whole model has one
    assert params.provenance is PROVENANCE


def test_cross_validation_reports_small_error_for_a_learnable_device() -> None:
    samples = _samples(np.random.default_rng(1), TRUTH, noise=0.01)
    error = cross_validate(samples, folds=3, seed=0)
    assert error.models == 12 and error.mape_percent < 3.0 and error.within10 == 1.0
    assert "3-fold cross-validation over 12 calibration models" in error.what


def test_error_summary_math() -> None:
    error = error_summary([1.05, 2.0, 2.85, 5.0], [1.0, 2.0, 3.0, 4.0], "four")
    assert error.mape_percent == pytest.approx(100 * (0.05 + 0 + 0.05 + 0.25) / 4)
    assert error.within10 == pytest.approx(0.75)
    assert error.spearman == pytest.approx(1.0)
    with pytest.raises(FitError):
        error_summary([], [], "none")


def test_fit_refuses_too_few_or_non_positive_measurements() -> None:
    samples = _samples(np.random.default_rng(2), TRUTH)
    with pytest.raises(FitError, match="at least two"):
        fit_predictor(samples[:1], PROVENANCE)
    broken = [Sample(s.name, s.kernels, 0, 0.0, 0.0, s.group) for s in samples]
    with pytest.raises(FitError, match="positive"):
        fit_predictor(broken, PROVENANCE)
