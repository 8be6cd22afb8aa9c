"""Exports are byte-identical for the same weights: the latency cache keys measurements by content hash.

Without care they are not: Paddle names tensors from process-wide counters (``linear_57.w_0``), so a model
built later in the process exports other names, and every op records the Python call stack of the export
(file paths and line numbers of the caller).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

from devicefit.spaces._export import export_inference_model


def _export_twice(paddle, toy_encoder_factory, tmp_path):
    spec = [paddle.static.InputSpec([None, 6, 8], "float32", "features")]
    first = toy_encoder_factory(seed=3)
    weights = first.state_dict()
    for _ in range(4):
        toy_encoder_factory(seed=9)  # moves Paddle's name counters on
    second = toy_encoder_factory(seed=5)
    second.set_state_dict(weights)
    return first, export_inference_model(first, spec, tmp_path / "a"), export_inference_model(second, spec, tmp_path / "b")


def test_the_same_weights_export_the_same_bytes(paddle, toy_encoder_factory, tmp_path) -> None:
    first, a, b = _export_twice(paddle, toy_encoder_factory, tmp_path)
    assert a.content_hash == b.content_hash
    assert a.model_file.read_bytes() == b.model_file.read_bytes()
    names_before = [p.name for p in first.parameters()]
    again = export_inference_model(first, [paddle.static.InputSpec([None, 6, 8], "float32", "features")], tmp_path / "c")
    assert again.content_hash == a.content_hash
    assert [p.name for p in first.parameters()] == names_before  # the layer's own names are restored


def test_other_weights_export_other_bytes(paddle, toy_encoder_factory, tmp_path) -> None:
    spec = [paddle.static.InputSpec([None, 6, 8], "float32", "features")]
    a = export_inference_model(toy_encoder_factory(seed=3), spec, tmp_path / "a")
    b = export_inference_model(toy_encoder_factory(seed=4), spec, tmp_path / "b")
    assert a.content_hash != b.content_hash


def test_the_export_still_computes_the_model(paddle, toy_encoder_factory, tmp_path) -> None:
    model = toy_encoder_factory(seed=3)
    spec = [paddle.static.InputSpec([None, 6, 8], "float32", "features")]
    export_inference_model(model, spec, tmp_path / "m")
    x = np.random.default_rng(0).normal(size=(2, 6, 8)).astype("float32")
    loaded = paddle.jit.load(str(tmp_path / "m" / "model"))
    np.testing.assert_allclose(loaded(paddle.to_tensor(x)).numpy(), model(paddle.to_tensor(x)).numpy(), atol=1e-5)


def test_another_process_exports_the_same_bytes(paddle, toy_encoder_factory, tmp_path) -> None:
    spec = [paddle.static.InputSpec([None, 6, 8], "float32", "features")]
    model = toy_encoder_factory(seed=3)
    here = export_inference_model(model, spec, tmp_path / "here")
    paddle.save(model.state_dict(), str(tmp_path / "weights.pdparams"))
    script = textwrap.dedent(
        f"""
        import zlib
        from devicefit.spaces._paddle import import_paddle
        from devicefit.spaces._export import export_inference_model
        paddle = import_paddle()
        for _ in range(3):
            paddle.nn.Linear(4, 4)  # another history of names in this process
        class ToyEncoderClassifier(paddle.nn.Layer):
            def __init__(self):
                super().__init__()
                self.embed = paddle.nn.Linear(8, 32)
                layer = paddle.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, normalize_before=True)
                self.encoder = paddle.nn.TransformerEncoder(layer, 3)
                self.head = paddle.nn.Linear(32, 5)
            def forward(self, features):
                return self.head(self.encoder(self.embed(features)).mean(axis=1))
        model = ToyEncoderClassifier()
        model.set_state_dict(paddle.load({str(tmp_path / "weights.pdparams")!r}))
        model.eval()
        spec = [paddle.static.InputSpec([None, 6, 8], "float32", "features")]
        print("HASH", export_inference_model(model, spec, {str(tmp_path / "there")!r}).content_hash)
        """
    )
    (tmp_path / "export_elsewhere.py").write_text(script)  # dy2static reads forward's source from a file
    result = subprocess.run(
        [sys.executable, str(tmp_path / "export_elsewhere.py")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"HASH {here.content_hash}" in result.stdout
