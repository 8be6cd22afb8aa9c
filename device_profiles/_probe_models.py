"""The Paddle layers of the calibration models (imports Paddle: load this module only to build models).

dy2static (``paddle.jit.to_static``) rebuilds ``forward`` from its source with the module's globals, so
these layers live at module level and read their configuration from attributes, never from closures.
"""

from __future__ import annotations

from typing import Any

from devicefit.spaces._paddle import import_paddle

paddle = import_paddle()


class ProbeModel(paddle.nn.Layer):  # type: ignore[misc,name-defined]
    """One single-kernel probe (see :class:`devicefit.device_profiles._probes.ProbeSpec`).

    Args:
        kind: The probe kind.
        dims: Its named dimensions.
    """

    def __init__(self, kind: str, dims: dict[str, int]) -> None:
        super().__init__()
        self.kind = kind
        self.dims = dict(dims)
        nn = paddle.nn
        # Paddle Lite cannot convert a program without weights, so every probe has one tiny weight, fetched
        # as a second output through a one-element ``scale`` kernel (a known, near-constant cost).
        self.anchor = self.create_parameter([1])
        if kind in ("linear", "linear_relu", "int8_linear"):
            self.linear = nn.Linear(dims["k"], dims["n"])
        elif kind == "layer_norm":
            self.norm = nn.LayerNorm(dims["d"])
        elif kind == "conv":
            self.conv = nn.Conv2D(dims["c"], dims["o"], kernel_size=dims["k"], stride=dims["k"])
        elif kind == "lookup":
            self.embed = nn.Embedding(dims["v"], dims["d"])
        elif kind == "bias_add":
            self.bias = self.create_parameter([dims["d"]], is_bias=True)
        elif kind == "concat":
            self.token = self.create_parameter([1, 1, dims["d"]])

    def forward(self, x, y=None):  # type: ignore[no-untyped-def]
        return self.main(x, y), self.anchor * 1.0

    def main(self, x, y=None):  # type: ignore[no-untyped-def]
        """The probed kernel."""
        kind = self.kind
        if kind in ("linear", "int8_linear"):  # int8_linear: quantized after export (see _probes.export_probe)
            return self.linear(x)
        if kind == "linear_relu":
            return paddle.nn.functional.relu(self.linear(x))
        if kind == "matmul_qk":
            return paddle.matmul(x, y, transpose_y=True)
        if kind == "matmul_av":
            return paddle.matmul(x, y)
        if kind == "softmax":
            return paddle.nn.functional.softmax(x, axis=-1)
        if kind == "layer_norm":
            return self.norm(x)
        if kind == "gelu":
            return paddle.nn.functional.gelu(x)
        if kind == "relu":
            return paddle.nn.functional.relu(x)
        if kind == "tanh":
            return paddle.tanh(x)
        if kind == "add":
            return x + y
        if kind == "mul":
            return x * y
        if kind == "bias_add":
            return x + self.bias
        if kind == "mean":
            return x.mean(axis=1)
        if kind == "scale":
            return x * 0.25
        if kind == "transpose":
            return x.reshape([0, 0, self.dims["h"], self.dims["d"]]).transpose([0, 2, 1, 3])
        if kind == "conv":
            return self.conv(x)
        if kind == "lookup":
            return self.embed(x)
        if kind == "slice":
            return x[:, 0]
        if kind == "zeros_like":
            return paddle.zeros_like(x)
        if kind == "arange":
            # the position ids of a BERT-style model (digits-bert): a range over the run-time sequence length
            # (int32, the type of the shape, so no cast kernel joins the probe)
            return paddle.arange(paddle.shape(x)[1], dtype="int32")
        if kind == "unsqueeze":
            return x.unsqueeze(1)
        if kind == "squeeze":
            return x.squeeze(2)
        return paddle.concat([self.token.expand([paddle.shape(x)[0], -1, -1]), x], axis=1)


class EncoderClassifier(paddle.nn.Layer):  # type: ignore[misc,name-defined]
    """A ``paddle.nn.TransformerEncoder`` classifier (see :class:`devicefit.device_profiles._probes.EncoderSpec`)."""

    def __init__(self, spec: Any) -> None:
        super().__init__()
        nn = paddle.nn
        self.vit = spec.family == "vit"
        self.hidden = spec.hidden
        if self.vit:
            self.patch_embed = nn.Conv2D(1, spec.hidden, kernel_size=spec.patch, stride=spec.patch)
            patches = (spec.image // spec.patch) ** 2
            self.cls_token = self.create_parameter([1, 1, spec.hidden])
            self.pos_embed = self.create_parameter([1, patches + 1, spec.hidden])
        else:
            self.embed = nn.Embedding(spec.vocab, spec.hidden)
            self.pos_embed = self.create_parameter([1, spec.tokens, spec.hidden])
        layer = nn.TransformerEncoderLayer(
            spec.hidden, spec.heads, spec.ffn, dropout=0.0, activation=spec.activation,
            normalize_before=spec.pre_norm,
        )
        norm = nn.LayerNorm(spec.hidden) if spec.pre_norm else None
        self.encoder = nn.TransformerEncoder(layer, spec.layers, norm=norm)
        self.head = nn.Linear(spec.hidden, spec.classes)

    def forward(self, x):  # type: ignore[no-untyped-def]
        if self.vit:
            tokens = self.patch_embed(x).reshape([0, self.hidden, -1]).transpose([0, 2, 1])
            cls_tokens = self.cls_token.expand([paddle.shape(tokens)[0], -1, -1])
            tokens = paddle.concat([cls_tokens, tokens], axis=1) + self.pos_embed
        else:
            tokens = self.embed(x) + self.pos_embed
        return self.head(self.encoder(tokens)[:, 0])
