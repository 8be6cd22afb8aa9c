from __future__ import annotations

from devicefit.evaluators._kernels import kernel_counts, optimized_kernels
from devicefit.evaluators._lite_client import LiteWorker
from devicefit.spaces import export_inference_model


def test_arm_kernel_list_is_the_fused_program(paddle, toy_encoder_factory, tmp_path) -> None:
    model = toy_encoder_factory(num_layers=2)
    artifact = export_inference_model(model, [paddle.static.InputSpec([None, 6, 8], "float32")], tmp_path / "m")
    with LiteWorker() as lite:
        arm = optimized_kernels(lite, artifact, "arm", tmp_path / "arm")
        x86 = optimized_kernels(lite, artifact, "x86", tmp_path / "x86")
    counts = kernel_counts(arm)
    # matmul + bias fuse into fc: embedding, q, k, v, out and two FFN linears per layer, and the head.
    assert counts["fc"] == 1 + 2 * 6 + 1
    assert counts["softmax"] == 2 and counts["layer_norm"] == 4
    assert "matmul" not in counts and "dropout" not in counts and "elementwise_add" in counts
    assert all(op.kernel.startswith(op.type + "/") for op in arm if op.kernel)
    assert arm[0].type == "feed" and arm[-1].type == "fetch"
    # ARM kernels (target code 4) differ from x86 ones (target code 2) for the same program.
    assert {op.kernel.split("/")[2] for op in arm if op.type == "fc"} == {"4"}
    assert {op.kernel.split("/")[2] for op in x86 if op.type == "fc"} != {"4"}
