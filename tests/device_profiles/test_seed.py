"""Seeding from public figures: the figures file, the transfer fit, and the re-keyed, scaled kernel table."""

from __future__ import annotations

import pytest

from devicefit.device_profiles import KernelCost, PredictorParams, Provenance, SubgraphCost
from devicefit.device_profiles._seed import (
    PublicFigure,
    SeedError,
    fit_transfer,
    host_key,
    read_public_figures,
    retargeted_keys,
    seeded_kernels,
    seeded_predictor,
    select,
)

HOST = PredictorParams(
    provenance=Provenance(calibrated=True, method="test", measured_on="host", date="2026-11-28", tool="none"),
    overhead_us=2.0,
    kernels={
        "x86/matmul_v2.weights/fp32": KernelCost(call_us=1.0, mflop_us=40.0, shape_factors=((4.0, 6.0, 6.0, 1.2),)),
        "x86/softmax/fp32": KernelCost(call_us=0.5, mflop_us=100.0),
        "host/reshape2/any": KernelCost(call_us=0.2),
    },
)


def figure(model: str, latency_ms: float, version: str = "2.11") -> PublicFigure:
    return PublicFigure("test", version, "SoC", "arm", model, "fp32", 1, latency_ms, "")


def test_the_shipped_figures_parse_and_the_newest_version_is_selected() -> None:
    figures = read_public_figures()
    assert len(figures) > 60 and all(f.latency_ms > 0 for f in figures)
    sd855 = select(figures, soc="Snapdragon 855", backend="arm", precision="fp32")
    assert {f.paddle_lite_version for f in sd855} == {"2.11"} and len(sd855) == 5  # 2.11 is newer than 2.6
    four = select(figures, soc="Snapdragon 855", backend="arm", precision="fp32", threads=4)
    assert {(f.model, f.latency_ms) for f in four} == {("MobileNetV1", 10.44), ("MobileNetV2", 7.95)}
    assert select(figures, soc="Snapdragon 999", backend="arm", precision="fp32") == []


def test_fit_transfer_recovers_scale_and_per_kernel_cost() -> None:
    host_ms = {"a": 10.0, "b": 20.0, "c": 5.0}
    kernels = {"a": 30, "b": 50, "c": 100}
    figures = [figure(m, 0.5 * host_ms[m] + 0.01 * kernels[m]) for m in host_ms]
    transfer = fit_transfer(figures, host_ms, kernels)
    assert transfer.scale == pytest.approx(0.5) and transfer.per_kernel_ms == pytest.approx(0.01)
    assert transfer.residual_percent == pytest.approx(0.0, abs=1e-6) and transfer.fitted_on == 3
    single = fit_transfer(figures[:1], host_ms, kernels)  # one figure: a scale only
    assert single.per_kernel_ms == 0.0 and single.scale == pytest.approx((5.0 + 0.3) / 10.0)
    with pytest.raises(SeedError, match="no usable figure"):
        fit_transfer([figure("zz", 1.0)], host_ms, kernels)


def test_a_kept_per_kernel_cost_leaves_only_the_scale_to_fit() -> None:
    host_ms = {"a": 10.0, "b": 20.0, "c": 5.0}
    kernels = {"a": 30, "b": 50, "c": 100}
    fp32 = fit_transfer([figure(m, 0.5 * host_ms[m] + 0.01 * kernels[m]) for m in host_ms], host_ms, kernels)
    # a precision twice as fast per unit of work, same launch cost
    int8_figures = [figure(m, 0.25 * host_ms[m] + 0.01 * kernels[m]) for m in host_ms]
    kept = fit_transfer(int8_figures, host_ms, kernels, per_kernel_ms=fp32.per_kernel_ms)
    assert kept.per_kernel_ms == pytest.approx(0.01) and kept.scale == pytest.approx(0.25)
    assert kept.residual_percent == pytest.approx(0.0, abs=1e-6) and kept.scale < fp32.scale
    # figures that the kept launch cost cannot explain: the scale still fits them as well as it can
    noisy = fit_transfer([figure(m, 0.25 * host_ms[m]) for m in host_ms], host_ms, kernels, per_kernel_ms=0.01)
    assert 0.0 < noisy.scale < 0.25 and noisy.residual_percent > 1.0
    with pytest.raises(SeedError):
        fit_transfer(int8_figures, host_ms, kernels, per_kernel_ms=-1.0)


def test_device_kernels_take_scaled_host_costs_of_their_equivalent() -> None:
    transfer = fit_transfer([figure("a", 5.0)], {"a": 10.0}, {"a": 1})
    assert transfer.scale == pytest.approx(0.5)
    transfer = type(transfer)(0.5, 0.002, transfer.figures, 0.0, fitted_on=1)
    keys = {"arm/fc/fp32", "arm/softmax/fp32", "host/reshape2/any", "arm/roi_align/fp32"}
    table, missing = seeded_kernels(keys, HOST, {"cpu": transfer}, {"arm": "cpu", "host": "cpu"})
    assert missing == ["arm/roi_align/fp32"]
    fc = table["arm/fc/fp32"]  # an fc is priced like the host's unfused linear layer
    assert fc.mflop_us == pytest.approx(20.0) and fc.call_us == pytest.approx(0.5 + 2.0)
    assert fc.shape_factors == HOST.kernels["x86/matmul_v2.weights/fp32"].shape_factors and fc.models == 0
    assert host_key("opencl/layout/any", {"x86/transpose2/fp32"}) == "x86/transpose2/fp32"
    # a conv bias add / patch transpose is seeded from the host's own variant, or, from a host calibrated before
    # the variant existed, from the one that priced it then
    old_host = {"x86/elementwise_add.bcast/fp32", "x86/transpose2/fp32"}
    assert host_key("arm/elementwise_add.bcast_inner/fp32", old_host) == "x86/elementwise_add.bcast/fp32"
    assert host_key("arm/transpose2.inner/fp16", old_host) == "x86/transpose2/fp32"
    new_host = old_host | {"x86/elementwise_add.bcast_inner/fp32", "x86/transpose2.inner/fp32"}
    assert host_key("arm/elementwise_add.bcast_inner/fp32", new_host) == "x86/elementwise_add.bcast_inner/fp32"
    assert host_key("arm/transpose2.inner/fp32", new_host) == "x86/transpose2.inner/fp32"
    assert host_key("arm/transpose2/fp32", {"x86/transpose2.inner/fp32"}) is None  # never the other way round
    assert retargeted_keys(HOST.kernels, [("arm", "fp16"), ("nnadapter", "any")]) == {
        "arm/matmul_v2.weights/fp16", "nnadapter/matmul_v2.weights/any", "arm/softmax/fp16",
        "nnadapter/softmax/any", "host/reshape2/any"}


def test_a_seeded_predictor_is_uncalibrated_and_cites_its_figures() -> None:
    transfer = fit_transfer([figure("a", 5.0), figure("b", 9.0)], {"a": 10.0, "b": 20.0}, {"a": 1, "b": 2})
    table, _ = seeded_kernels({"arm/softmax/fp32"}, HOST, {"cpu": transfer}, {"arm": "cpu"})
    params = seeded_predictor(kernels=table, host=HOST, transfers={"cpu fp32": transfer}, subgraph=SubgraphCost(),
                              method="seeded", date="2026-11-28", tool="test", notes="rough")
    provenance = params.provenance
    assert not provenance.calibrated and provenance.error is None and provenance.models == 0
    assert len(provenance.sources) == 2 and "SoC arm a fp32 1 thread(s): 5 ms" in provenance.sources[0]
    assert "cpu fp32: scale" in provenance.notes and params.overhead_us == pytest.approx(2.0 * transfer.scale)
