"""Export to an inference program (moved here from test_encoder_space.py, which the adapter rewrite replaced)."""

from __future__ import annotations

import numpy as np


def test_export_leaves_identity_dropouts_out_and_keeps_the_function(paddle, tmp_path, toy_batch) -> None:
    from paddle.base.proto import framework_pb2

    from devicefit.spaces import export_inference_model

    paddle.seed(0)
    layer = paddle.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.3)  # upscale_in_train dropouts
    model = paddle.nn.Sequential(layer, paddle.nn.Dropout(0.5, mode="downscale_in_infer"))
    model.eval()
    artifact = export_inference_model(model, [paddle.static.InputSpec([None, 6, 8], "float32")], tmp_path)
    program = framework_pb2.ProgramDesc()
    program.ParseFromString(artifact.model_file.read_bytes())
    dropouts = [op for op in program.blocks[0].ops if op.type == "dropout"]
    assert len(dropouts) == 1  # only the downscale_in_infer one, which scales at inference
    features = toy_batch[0][0]
    exported = paddle.jit.load(str(tmp_path / "model"))
    np.testing.assert_allclose(exported(paddle.to_tensor(features)).numpy(), model(paddle.to_tensor(features)).numpy(), atol=1e-6)
    assert layer.dropout1.p == 0.3  # the model itself is unchanged
    weights = {var.name for var in program.blocks[0].vars if var.persistable}
    # the program names its weights by their path in the model (stable across processes, unlike p.name)
    assert {path for path, _ in model.named_parameters()} <= weights
