"""Models built on ``paddle.nn.TransformerEncoder``: finding the encoder, measuring importance, cutting.

The cut is DynaBERT-style weight inheritance: heads and FFN neurons are ranked by importance measured on a
calibration batch (first-order Taylor: the sum of ``|weight * gradient|`` over the parameters that belong to
the head or neuron), the most important are kept, and layers are chosen by how much the loss grows when
each one is skipped. A student therefore starts from the teacher's knowledge, not from scratch.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np

from devicefit.spaces._candidate import Candidate
from devicefit.spaces._paddle import import_paddle


class UnsupportedModelError(ValueError):
    """The teacher's structure cannot be mapped onto the search space; the message names the layer."""


@dataclasses.dataclass(frozen=True)
class EncoderStructure:
    """What the space found in the teacher: where the encoder is and how big it is.

    Attributes:
        encoder_path: Dotted sublayer path of the ``paddle.nn.TransformerEncoder`` inside the teacher.
        num_layers: Encoder layers in the teacher.
        num_heads: Attention heads per layer.
        head_dim: Width of one head.
        hidden_size: Model width (``embed_dim``).
        ffn_size: FFN intermediate width per layer.
    """

    encoder_path: str
    num_layers: int
    num_heads: int
    head_dim: int
    hidden_size: int
    ffn_size: int

    def full_candidate(self) -> Candidate:
        """The candidate that keeps everything (the teacher itself, in fp32)."""
        layers = tuple(range(self.num_layers))
        return Candidate(layers, (self.num_heads,) * self.num_layers, (self.ffn_size,) * self.num_layers)

    def encoder_parameter_count(self, candidate: Candidate) -> int:
        """Parameters of the encoder layers a candidate keeps (weights and biases, layer norms included)."""
        d, hd = self.hidden_size, self.head_dim
        total = 0
        for heads, ffn in zip(candidate.heads, candidate.ffn):
            inner = heads * hd
            attention = 3 * (d * inner + inner) + (inner * d + d)
            feed_forward = (d * ffn + ffn) + (ffn * d + d)
            norms = 2 * 2 * d
            total += attention + feed_forward + norms
        return total


@dataclasses.dataclass(frozen=True)
class Importance:
    """Importance scores measured on a calibration batch (larger means more important).

    Attributes:
        heads: ``[num_layers, num_heads]`` first-order Taylor importance of each attention head.
        ffn: ``[num_layers, ffn_size]`` first-order Taylor importance of each FFN neuron.
        layers: ``[num_layers]`` loss increase on the batch when the layer is skipped.
    """

    heads: np.ndarray
    ffn: np.ndarray
    layers: np.ndarray

    def layers_for_depth(self, depth: int) -> tuple[int, ...]:
        """The ``depth`` most important layers, in their original order."""
        order = np.argsort(-self.layers, kind="stable")[:depth]
        return tuple(sorted(int(i) for i in order))


def find_encoder(model: Any) -> EncoderStructure:
    """Locate the single ``paddle.nn.TransformerEncoder`` in ``model`` and describe it.

    Raises:
        UnsupportedModelError: There is no such encoder, more than one, or its layers are not uniform
            ``TransformerEncoderLayer`` s. The message names the offending layer.
    """
    paddle = import_paddle()
    found = [
        (name, layer)
        for name, layer in model.named_sublayers(include_self=True)
        if isinstance(layer, paddle.nn.TransformerEncoder)
    ]
    model_name = type(model).__name__
    if not found:
        raise UnsupportedModelError(
            f"{model_name} has no paddle.nn.TransformerEncoder sublayer; devicefit cannot place its encoder"
        )
    if len(found) > 1:
        names = ", ".join(name or "<model>" for name, _ in found)
        raise UnsupportedModelError(f"{model_name} has several TransformerEncoders ({names}); expected one")
    path, encoder = found[0]
    shapes = set()
    for index, layer in enumerate(encoder.layers):
        where = f"{path}.layers.{index}" if path else f"layers.{index}"
        if not isinstance(layer, paddle.nn.TransformerEncoderLayer):
            raise UnsupportedModelError(f"{where} is a {type(layer).__name__}, not a TransformerEncoderLayer")
        attention = layer.self_attn
        if attention.kdim != attention.embed_dim or attention.vdim != attention.embed_dim:
            raise UnsupportedModelError(f"{where}.self_attn has kdim/vdim different from embed_dim")
        shapes.add((attention.num_heads, attention.head_dim, attention.embed_dim, layer.linear1.weight.shape[1]))
    if len(shapes) != 1:
        raise UnsupportedModelError(f"the layers of {path or '<model>'} differ in shape: {sorted(shapes)}")
    (num_heads, head_dim, hidden_size, ffn_size) = shapes.pop()
    return EncoderStructure(path, len(encoder.layers), num_heads, head_dim, hidden_size, ffn_size)


def get_sublayer(model: Any, path: str) -> Any:
    """The sublayer at a dotted path ('' is the model itself)."""
    layer = model
    for part in filter(None, path.split(".")):
        layer = layer[int(part)] if part.isdigit() else getattr(layer, part)
    return layer


def _abs_taylor(parameter: Any) -> np.ndarray:
    if parameter.grad is None:
        return np.zeros(parameter.shape, dtype=np.float64)
    return np.abs(parameter.numpy().astype(np.float64) * parameter.grad.numpy().astype(np.float64))


def _loss(paddle: Any, model: Any, inputs: tuple[np.ndarray, ...], labels: np.ndarray) -> Any:
    logits = model(*[paddle.to_tensor(x) for x in inputs])
    return paddle.nn.functional.cross_entropy(logits, paddle.to_tensor(labels))


def measure_importance(
    model: Any, structure: EncoderStructure, inputs: tuple[np.ndarray, ...], labels: np.ndarray
) -> Importance:
    """Measure head, neuron and layer importance of ``model`` on one calibration batch.

    The model is left unchanged (its gradients are cleared afterwards); dropout is off while measuring.

    Args:
        model: The teacher.
        structure: Its encoder, from :func:`find_encoder`.
        inputs: The model's inputs for the batch (one array per ``forward`` argument).
        labels: Integer class labels of the batch.
    """
    paddle = import_paddle()
    was_training = model.training
    model.eval()
    encoder = get_sublayer(model, structure.encoder_path)
    try:
        model.clear_gradients()
        loss = _loss(paddle, model, inputs, labels)
        loss.backward()
        hd = structure.head_dim
        heads = np.zeros((structure.num_layers, structure.num_heads))
        ffn = np.zeros((structure.num_layers, structure.ffn_size))
        for index, layer in enumerate(encoder.layers):
            attention = layer.self_attn
            per_column = sum(
                _abs_taylor(proj.weight).sum(axis=0) + _abs_taylor(proj.bias)
                for proj in (attention.q_proj, attention.k_proj, attention.v_proj)
            )
            per_column = per_column + _abs_taylor(attention.out_proj.weight).sum(axis=1)
            heads[index] = per_column.reshape(structure.num_heads, hd).sum(axis=1)
            ffn[index] = (
                _abs_taylor(layer.linear1.weight).sum(axis=0)
                + _abs_taylor(layer.linear1.bias)
                + _abs_taylor(layer.linear2.weight).sum(axis=1)
            )
        model.clear_gradients()

        with paddle.no_grad():
            base = float(_loss(paddle, model, inputs, labels))
            all_layers = list(encoder.layers)
            layer_scores = np.zeros(structure.num_layers)
            try:
                for skipped in range(structure.num_layers):
                    encoder.layers = paddle.nn.LayerList([m for i, m in enumerate(all_layers) if i != skipped])
                    layer_scores[skipped] = float(_loss(paddle, model, inputs, labels)) - base
            finally:
                encoder.layers = paddle.nn.LayerList(all_layers)
    finally:
        if was_training:
            model.train()
    return Importance(heads=heads, ffn=ffn, layers=layer_scores)


def _linear(paddle: Any, weight: np.ndarray, bias: np.ndarray | None) -> Any:
    layer = paddle.nn.Linear(weight.shape[0], weight.shape[1], bias_attr=None if bias is not None else False)
    layer.weight.set_value(weight.astype(np.float32))
    if bias is not None:
        layer.bias.set_value(bias.astype(np.float32))
    return layer


def _cut_linear(paddle: Any, linear: Any, *, columns: np.ndarray | None = None, rows: np.ndarray | None = None) -> Any:
    weight = linear.weight.numpy()
    bias = linear.bias.numpy() if linear.bias is not None else None
    if columns is not None:
        weight = weight[:, columns]
        bias = bias[columns] if bias is not None else None
    if rows is not None:
        weight = weight[rows, :]
    return _linear(paddle, weight, bias)


def cut_layer(layer: Any, structure: EncoderStructure, head_order: np.ndarray, neuron_order: np.ndarray) -> None:
    """Keep the heads and FFN neurons listed (in that order) in one ``TransformerEncoderLayer``, in place."""
    paddle = import_paddle()
    attention = layer.self_attn
    hd = structure.head_dim
    columns = np.concatenate([np.arange(h * hd, (h + 1) * hd) for h in head_order])
    attention.q_proj = _cut_linear(paddle, attention.q_proj, columns=columns)
    attention.k_proj = _cut_linear(paddle, attention.k_proj, columns=columns)
    attention.v_proj = _cut_linear(paddle, attention.v_proj, columns=columns)
    attention.out_proj = _cut_linear(paddle, attention.out_proj, rows=columns)
    attention.num_heads = len(head_order)
    layer.linear1 = _cut_linear(paddle, layer.linear1, columns=neuron_order)
    layer.linear2 = _cut_linear(paddle, layer.linear2, rows=neuron_order)


def materialize_encoder_student(
    teacher: Any, structure: EncoderStructure, importance: Importance, candidate: Candidate
) -> Any:
    """Build the student that ``candidate`` describes, inheriting the teacher's most important weights.

    The teacher is not modified. Heads and neurons are kept in order of importance (DynaBERT's
    reordering), which leaves the function of the kept part unchanged.

    Raises:
        ValueError: The candidate does not fit the teacher (a layer index, head or FFN count too large).
    """
    paddle = import_paddle()
    if candidate.layers[-1] >= structure.num_layers:
        raise ValueError(f"candidate keeps layer {candidate.layers[-1]}; the teacher has {structure.num_layers}")
    if max(candidate.heads) > structure.num_heads or max(candidate.ffn) > structure.ffn_size:
        raise ValueError(
            f"candidate asks for more than the teacher has ({structure.num_heads} heads, "
            f"{structure.ffn_size} FFN units): {candidate.describe()}"
        )
    student = copy.deepcopy(teacher)
    encoder = get_sublayer(student, structure.encoder_path)
    kept = []
    for layer_index, heads, ffn in zip(candidate.layers, candidate.heads, candidate.ffn):
        layer = encoder.layers[layer_index]
        head_order = np.argsort(-importance.heads[layer_index], kind="stable")[:heads]
        neuron_order = np.argsort(-importance.ffn[layer_index], kind="stable")[:ffn]
        cut_layer(layer, structure, head_order, neuron_order)
        kept.append(layer)
    encoder.layers = paddle.nn.LayerList(kept)
    encoder.num_layers = len(kept)
    student.eval()
    return student
