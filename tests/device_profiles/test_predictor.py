"""The predictor's math on hand-built kernel lists: shapes, features, costs, subgraphs, shape factors."""

from __future__ import annotations

import math
from types import MappingProxyType

import pytest

from devicefit.device_profiles import (
    KernelCost,
    PredictorParams,
    Provenance,
    ShapeFactorRule,
    SubgraphCost,
    UncoveredKernelError,
    predict_latency,
)
from devicefit.device_profiles._features import kernel_features, shape_signature
from devicefit.device_profiles._shapes import ShapeInferenceError, Tensor, infer_shapes
from devicefit.device_profiles._program import KernelOp, KernelProgram, PersistableVar

PROVENANCE = Provenance(calibrated=True, method="test", measured_on="nothing", date="2026-11-28", tool="none")


def op(type_: str, kernel: str, inputs: dict, outputs: dict, sub_ops: tuple = (), **attrs) -> KernelOp:
    return KernelOp(
        type_, kernel, {k: tuple(v) for k, v in inputs.items()}, {k: tuple(v) for k, v in outputs.items()},
        MappingProxyType(attrs), sub_ops,
    )


def arm_program() -> KernelProgram:
    """feed -> fc (64->128, fused from matmul_v2) -> reshape -> softmax over 128 -> fetch, with reused names."""
    ops = (
        op("feed", "feed/def/1/4/2", {"X": ["feed"]}, {"Out": ["x"]}, col=0),
        op("fc", "fc/def/4/1/1", {"Input": ["x"], "W": ["w"], "Bias": ["b"]}, {"Out": ["t"]},
           in_num_col_dims=1, op_type="matmul_v2"),
        op("reshape2", "reshape2/def/1/4/2", {"X": ["t"]}, {"Out": ["x"], "XShape": ["xs"]}, shape=(0, 0, 2, 64)),
        op("softmax", "softmax/def/4/1/1", {"X": ["x"]}, {"Out": ["t"]}, axis=-1),
        op("fetch", "fetch/def/1/4/2", {"X": ["t"]}, {"Out": ["fetch"]}, col=0),
    )
    weights = {"w": PersistableVar((64, 128), "float32"), "b": PersistableVar((128,), "float32")}
    return KernelProgram(ops, MappingProxyType(weights))


def test_shapes_follow_reused_variables_in_execution_order() -> None:
    program = infer_shapes(arm_program(), [Tensor((1, 17, 64))])
    kinds = [(k.type, k.target, k.precision) for k in program.kernels]
    assert kinds == [("feed", "host", "any"), ("fc", "arm", "fp32"), ("reshape2", "host", "any"),
                     ("softmax", "arm", "fp32"), ("fetch", "host", "any")]
    fc, reshape, softmax = program.kernels[1], program.kernels[2], program.kernels[3]
    assert fc.output("Out").shape == (1, 17, 128)  # in_num_col_dims is recomputed for an fc from matmul_v2
    # "x" was the [1,17,64] input; the reshape wrote it again, and the softmax reads the new one.
    assert reshape.output("Out").shape == (1, 17, 2, 64) and softmax.input("X").shape == (1, 17, 2, 64)


def test_features_of_known_kernels() -> None:
    program = infer_shapes(arm_program(), [Tensor((1, 17, 64))])
    fc = kernel_features(program.kernels[1])
    assert fc.key == "arm/fc/fp32"
    assert fc.mflop == pytest.approx(2 * 17 * 64 * 128 / 1e6)
    assert fc.in_kib == pytest.approx(17 * 64 * 4 / 1024)
    assert fc.out_kib == pytest.approx(17 * 128 * 4 / 1024)
    assert fc.weight_kib == pytest.approx((64 * 128 + 128) * 4 / 1024)
    softmax = kernel_features(program.kernels[3])
    assert softmax.slices == 17 * 2 and softmax.mflop == pytest.approx(5 * 17 * 128 / 1e6)
    assert shape_signature(program.kernels[1]) == pytest.approx((math.log2(17), 6.0, 7.0))


def test_predicted_latency_is_the_sum_of_kernel_costs() -> None:
    program = infer_shapes(arm_program(), [Tensor((1, 17, 64))])
    free = KernelCost()
    params = PredictorParams(
        provenance=PROVENANCE,
        overhead_us=10.0,
        kernels={
            "host/feed/any": KernelCost(call_us=1.0),
            "arm/fc/fp32": KernelCost(call_us=2.0, mflop_us=100.0, weight_kib_us=0.5),
            "host/reshape2/any": free,
            "arm/softmax/fp32": KernelCost(call_us=1.0, slice_us=0.25),
            "host/fetch/any": KernelCost(out_kib_us=3.0),
        },
    )
    prediction = predict_latency(program, params)
    fc_us = 2.0 + 100.0 * 2 * 17 * 64 * 128 / 1e6 + 0.5 * (64 * 128 + 128) * 4 / 1024
    softmax_us = 1.0 + 0.25 * 34
    assert prediction.kernels_ms["arm/fc/fp32"] == pytest.approx(fc_us / 1000)
    assert prediction.latency_ms == pytest.approx((10.0 + 1.0 + fc_us + softmax_us) / 1000)  # fetch writes nothing
    without_softmax = {key: cost for key, cost in params.kernels.items() if "softmax" not in key}
    with pytest.raises(UncoveredKernelError, match="arm/softmax/fp32"):
        predict_latency(program, PredictorParams(provenance=PROVENANCE, kernels=without_softmax))


def test_nnadapter_subgraphs_cost_their_ops_and_the_hand_off() -> None:
    inner = (
        op("matmul_v2", "", {"X": ["x"], "Y": ["w"]}, {"Out": ["y"]}, trans_x=False, trans_y=False),
        op("relu", "", {"X": ["y"]}, {"Out": ["z"]}),
    )
    ops = (
        op("feed", "feed/def/1/4/2", {"X": ["feed"]}, {"Out": ["x"]}, col=0),
        op("subgraph", "subgraph/def/18/4/1", {"Inputs": ["x", "w"]}, {"Outputs": ["y", "z"]}, inner,
           sub_block=1, input_data_names=("x",), output_data_names=("z",)),
        op("softmax", "softmax/def/4/1/1", {"X": ["z"]}, {"Out": ["s"]}, axis=-1),
        op("fetch", "fetch/def/1/4/2", {"X": ["s"]}, {"Out": ["fetch"]}, col=0),
    )
    program = infer_shapes(KernelProgram(ops, MappingProxyType({"w": PersistableVar((32, 16), "float32")})),
                           [Tensor((1, 8, 32))])
    assert [(k.type, k.target, k.subgraph) for k in program.kernels] == [
        ("feed", "host", None), ("matmul_v2", "nnadapter", 0), ("relu", "nnadapter", 0),
        ("softmax", "arm", None), ("fetch", "host", None)]
    (boundary,) = program.subgraphs
    assert (boundary.ops, boundary.input_bytes, boundary.output_bytes) == (2, 8 * 32 * 4, 8 * 16 * 4)
    kernels = {"host/feed/any": KernelCost(), "nnadapter/matmul_v2.weights/any": KernelCost(call_us=5.0),
               "nnadapter/relu/any": KernelCost(call_us=1.0), "arm/softmax/fp32": KernelCost(call_us=3.0),
               "host/fetch/any": KernelCost()}
    params = PredictorParams(provenance=PROVENANCE, kernels=kernels, subgraph=SubgraphCost(call_us=100.0, kib_us=2.0))
    prediction = predict_latency(program, params)
    assert prediction.subgraphs_ms == pytest.approx((100.0 + 2.0 * (1024 + 512) / 1024) / 1000)
    assert prediction.accelerator_ms == pytest.approx(6.0 / 1000)
    assert prediction.latency_ms == pytest.approx(prediction.subgraphs_ms + 9.0 / 1000)
    with pytest.raises(UncoveredKernelError, match="subgraph"):
        predict_latency(program, PredictorParams(provenance=PROVENANCE, kernels=kernels))


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ((op("matmul_v2", "matmul_v2/def/4/1/1", {"X": ["x"], "Y": ["w"]}, {"Out": ["y"]}),),
         "inner dimensions differ"),
        ((op("roi_align", "roi_align/def/4/1/1", {"X": ["x"]}, {"Out": ["y"]}),), "no shape rule for op type 'roi_align'"),
        ((op("relu", "relu/def/4/1/1", {"X": ["nobody"]}, {"Out": ["y"]}),), "reads 'nobody' before any op wrote it"),
        ((op("reshape2", "reshape2/def/1/4/2", {"X": ["x"]}, {"Out": ["y"]}, shape=(0, 5, -1)),), "cannot reshape"),
    ],
)
def test_inconsistent_or_unknown_kernels_are_errors_never_free(ops: tuple, message: str) -> None:
    feed = op("feed", "feed/def/1/4/2", {"X": ["feed"]}, {"Out": ["x"]}, col=0)
    program = KernelProgram((feed, *ops), MappingProxyType({"w": PersistableVar((48, 16), "float32")}))
    with pytest.raises(ShapeInferenceError, match=message):
        infer_shapes(program, [Tensor((1, 8, 32))])


def test_shape_tensors_carry_values_into_expand() -> None:
    ops = (
        op("feed", "feed/def/1/4/2", {"X": ["feed"]}, {"Out": ["x"]}, col=0),
        op("shape", "shape/def/1/4/2", {"Input": ["x"]}, {"Out": ["s"]}),
        op("slice", "slice/def/2/1/1", {"Input": ["s"]}, {"Out": ["b"]}, axes=(0,), starts=(0,), ends=(1,),
           decrease_axis=(0,)),
        op("expand_v2", "expand_v2/def/1/1/2", {"X": ["cls"], "expand_shapes_tensor": ["b", "minus1", "minus1"]},
           {"Out": ["e"]}, shape=(-2, -1, -1)),
    )
    weights = {"cls": PersistableVar((1, 1, 64), "float32"), "minus1": PersistableVar((1,), "int32", (-1,))}
    program = infer_shapes(KernelProgram(ops, MappingProxyType(weights)), [Tensor((3, 16, 64))])
    assert program.kernels[-1].output("Out").shape == (3, 1, 64)


def test_shape_factor_rule_interpolates_and_returns_to_one_far_away() -> None:
    rule = ShapeFactorRule(neighbours=2, scale_octaves=1.0, prior_weight=0.0)
    points = ((3.0, 8.0, 8.0, 2.0), (3.0, 9.0, 8.0, 2.0))
    assert rule.factor((), (3.0, 8.0, 8.0)) == 1.0
    assert rule.factor(points, None) == 1.0
    assert rule.factor(points, (3.0, 8.0, 8.0)) == pytest.approx(2.0)
    shrunk = ShapeFactorRule(neighbours=2, scale_octaves=1.0, prior_weight=0.1)
    assert 1.0 < shrunk.factor(points, (3.0, 8.5, 8.0)) < 2.0
    assert shrunk.factor(points, (10.0, 1.0, 1.0)) == pytest.approx(1.0, abs=1e-6)


def _bert_head_program() -> KernelProgram:
    """What main's digits-bert and digits-vit put before the encoder: ``zeros_like`` (fill_any_like), ``arange``
    over the sequence length (range, bounds from the input's shape) and an ``unsqueeze``."""
    ops = (
        op("feed", "feed/def/1/4/2", {"X": ["feed"]}, {"Out": ["ids"]}, col=0),
        op("fill_any_like", "fill_any_like/def/1/4/1", {"X": ["ids"]}, {"Out": ["types"]}, dtype=-1, value=0.0),
        op("shape", "shape/def/1/4/2", {"Input": ["ids"]}, {"Out": ["s"]}),
        op("slice", "slice/def/1/4/1", {"Input": ["s"]}, {"Out": ["n"]}, axes=(0,), starts=(1,), ends=(2,),
           decrease_axis=()),
        op("range", "range/int64/1/1/2", {"Start": ["zero"], "End": ["n"], "Step": ["one"]}, {"Out": ["pos"]}),
        op("unsqueeze2", "unsqueeze2/def/1/4/2", {"X": ["pos"]}, {"Out": ["pos2"], "XShape": ["xs"]}, axes=(0,)),
        op("fetch", "fetch/def/1/4/2", {"X": ["pos2"]}, {"Out": ["fetch"]}, col=0),
    )
    weights = {"zero": PersistableVar((1,), "int64", (0,)), "one": PersistableVar((1,), "int64", (1,))}
    return KernelProgram(ops, MappingProxyType(weights))


def test_zeros_like_arange_and_unsqueeze_have_shapes() -> None:
    program = infer_shapes(_bert_head_program(), [Tensor((1, 65), "int64")])
    by_type = {k.type: k for k in program.kernels}
    assert by_type["fill_any_like"].output("Out") == Tensor((1, 65), "int64")
    assert by_type["range"].output("Out").shape == (65,) and by_type["unsqueeze2"].output("Out").shape == (1, 65)
    short = infer_shapes(_bert_head_program(), [Tensor((1, 5), "int64")])
    assert [k for k in short.kernels if k.type == "range"][0].output("Out").value == (0, 1, 2, 3, 4)


def test_small_data_movement_ops_are_priced_by_a_stand_in_of_their_target_and_say_so() -> None:
    program = infer_shapes(_bert_head_program(), [Tensor((1, 65), "int64")])
    kernels = {"host/feed/any": KernelCost(), "host/shape/any": KernelCost(call_us=1.0),
               "host/slice/any": KernelCost(call_us=1.0), "host/fetch/any": KernelCost(),
               "host/fill_constant/any": KernelCost(call_us=3.0, out_kib_us=1.0),
               "host/reshape2/any": KernelCost(call_us=2.0), "arm/reshape2/fp32": KernelCost(call_us=50.0)}
    prediction = predict_latency(program, PredictorParams(provenance=PROVENANCE, kernels=kernels))
    assert prediction.stand_ins == {"host/fill_any_like/any": "host/fill_constant/any",
                                    "host/range/fp32": "host/fill_constant/any",
                                    "host/unsqueeze2/any": "host/reshape2/any"}  # never arm's reshape2
    assert prediction.kernels_ms["host/fill_any_like/any"] == pytest.approx((3.0 + 65 * 8 / 1024) / 1000)
    assert prediction.kernels_ms["host/unsqueeze2/any"] == pytest.approx(2.0 / 1000)
    assert "host/range/fp32 priced as host/fill_constant/any" in prediction.describe_stand_ins()
    # without an op of the same kind on the same target, the kernel is uncovered: an error, never free
    no_fill = {k: v for k, v in kernels.items() if k != "host/fill_constant/any"}
    with pytest.raises(UncoveredKernelError, match="host/range/fp32"):
        predict_latency(program, PredictorParams(provenance=PROVENANCE, kernels=no_fill))
    # an op that has its own coefficients uses them
    own = predict_latency(program, PredictorParams(
        provenance=PROVENANCE, kernels={**kernels, "host/range/fp32": KernelCost(call_us=7.0)}))
    assert "host/range/fp32" not in own.stand_ins and own.kernels_ms["host/range/fp32"] == pytest.approx(0.007)


def test_int8_conversions_are_priced_as_a_scale_of_their_target() -> None:
    ops = (
        op("feed", "feed/def/1/4/2", {"X": ["feed"]}, {"Out": ["x"]}, col=0),
        op("calib", "calib/fp32_to_int8/4/2/1", {"Input": ["x"]}, {"Out": ["q"]}, scale=0.1),
        op("fetch", "fetch/def/1/4/2", {"X": ["q"]}, {"Out": ["fetch"]}, col=0),
    )
    program = infer_shapes(KernelProgram(ops, MappingProxyType({})), [Tensor((1, 16, 64))])
    calib = kernel_features(program.kernels[1])
    assert calib.key == "arm/calib/int8" and calib.mflop == pytest.approx(2 * 16 * 64 / 1e6)
    kernels = {"host/feed/any": KernelCost(), "host/fetch/any": KernelCost(),
               "arm/scale/fp32": KernelCost(call_us=1.0, mflop_us=500.0), "host/scale/any": KernelCost(call_us=99.0)}
    prediction = predict_latency(program, PredictorParams(provenance=PROVENANCE, kernels=kernels))
    assert prediction.stand_ins == {"arm/calib/int8": "arm/scale/fp32"}
    assert prediction.kernels_ms["arm/calib/int8"] == pytest.approx((1.0 + 500.0 * 2 * 16 * 64 / 1e6) / 1000)


def _patch_embedding_program() -> KernelProgram:
    """A ViT front end as opt leaves it: conv2d, its bias reshaped to [1, C, 1, 1] and added, the patches
    flattened and transposed to tokens, a linear layer's bias add, and an attention head split."""
    ops = (
        op("feed", "feed/def/1/4/2", {"X": ["feed"]}, {"Out": ["x"]}, col=0),
        op("conv2d", "conv2d/def/4/1/1", {"Input": ["x"], "Filter": ["w"]}, {"Output": ["c"]},
           strides=(2, 2), paddings=(0, 0), dilations=(1, 1), groups=1),
        op("reshape2", "reshape2/def/1/4/2", {"X": ["b"]}, {"Out": ["b4"], "XShape": ["bs"]}, shape=(1, 64, 1, 1)),
        op("elementwise_add", "elementwise_add/def/4/1/1", {"X": ["c"], "Y": ["b4"]}, {"Out": ["t"]}, axis=-1),
        op("reshape2", "reshape2/def/1/4/2", {"X": ["t"]}, {"Out": ["p"], "XShape": ["ps"]}, shape=(0, 64, -1)),
        op("transpose2", "transpose2/def/4/1/1", {"X": ["p"]}, {"Out": ["tok"], "XShape": ["ts"]}, axis=(0, 2, 1)),
        op("elementwise_add", "elementwise_add/def/4/1/1", {"X": ["tok"], "Y": ["lb"]}, {"Out": ["y"]}, axis=-1),
        op("reshape2", "reshape2/def/1/4/2", {"X": ["y"]}, {"Out": ["h"], "XShape": ["hs"]}, shape=(0, 0, 4, 16)),
        op("transpose2", "transpose2/def/4/1/1", {"X": ["h"]}, {"Out": ["q"], "XShape": ["qs"]}, axis=(0, 2, 1, 3)),
        op("fetch", "fetch/def/1/4/2", {"X": ["q"]}, {"Out": ["fetch"]}, col=0),
    )
    weights = {"w": PersistableVar((64, 1, 2, 2), "float32"), "b": PersistableVar((64,), "float32"),
               "lb": PersistableVar((64,), "float32")}
    return KernelProgram(ops, MappingProxyType(weights))


def test_a_conv_bias_add_and_the_patch_transpose_have_their_own_code_paths() -> None:
    program = infer_shapes(_patch_embedding_program(), [Tensor((1, 1, 8, 8))])
    features = [kernel_features(k) for k in program.kernels]
    keys = [f.key for f in features]
    conv_bias = features[keys.index("arm/elementwise_add.bcast_inner/fp32")]
    bias = features[keys.index("arm/elementwise_add.bcast/fp32")]
    # [1, 64, 4, 4] + [1, 64, 1, 1]: one scalar added to each of 64 runs of 16 elements
    assert conv_bias.slices == 64 and conv_bias.mflop == pytest.approx(64 * 16 / 1e6)
    # [1, 16, 64] + [64]: one vector add per row, 16 rows
    assert bias.slices == 16
    # the patch transpose gathers every element; the head split moves rows of 16: not one code path
    assert "arm/transpose2.inner/fp32" in keys and keys.count("arm/transpose2/fp32") == 1
    assert program.kernels[keys.index("arm/transpose2/fp32")].attrs["axis"] == (0, 2, 1, 3)


def test_a_profile_without_the_new_variants_prices_them_by_the_variant_that_priced_them_before() -> None:
    program = infer_shapes(_patch_embedding_program(), [Tensor((1, 1, 8, 8))])
    kernels = {"host/feed/any": KernelCost(), "host/fetch/any": KernelCost(), "host/reshape2/any": KernelCost(),
               "arm/conv2d/fp32": KernelCost(call_us=1.0), "arm/elementwise_add.bcast/fp32": KernelCost(slice_us=0.5),
               "arm/transpose2/fp32": KernelCost(call_us=2.0),
               "arm/elementwise_add.same/fp32": KernelCost(call_us=99.0)}
    prediction = predict_latency(program, PredictorParams(provenance=PROVENANCE, kernels=kernels))
    assert prediction.stand_ins == {"arm/elementwise_add.bcast_inner/fp32": "arm/elementwise_add.bcast/fp32",
                                    "arm/transpose2.inner/fp32": "arm/transpose2/fp32"}
    assert prediction.kernels_ms["arm/elementwise_add.bcast_inner/fp32"] == pytest.approx(0.5 * 64 / 1000)
    # a profile that has them uses its own
    own = {**kernels, "arm/elementwise_add.bcast_inner/fp32": KernelCost(call_us=3.0),
           "arm/transpose2.inner/fp32": KernelCost(call_us=4.0)}
    prediction = predict_latency(program, PredictorParams(provenance=PROVENANCE, kernels=own))
    assert prediction.stand_ins == {} and prediction.kernels_ms["arm/transpose2.inner/fp32"] == pytest.approx(0.004)
