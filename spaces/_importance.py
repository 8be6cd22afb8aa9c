"""Importance of heads, FFN neurons, hidden channels and whole blocks, measured on a calibration batch.

Heads, neurons and hidden channels are ranked by first-order Taylor importance: the sum of
``|weight * gradient|`` of the loss over the parameter entries that belong to the head, neuron or channel.
Blocks are ranked by how much the loss grows when the block is skipped. This is DynaBERT's recipe; it needs
only the common structure of :class:`~devicefit.spaces._layout.ModelLayout`, so every family shares it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from devicefit.spaces._layout import ModelAdapter, ModelLayout
from devicefit.spaces._paddle import import_paddle
from devicefit.spaces._surgery import get_parameter, get_sublayer, join


@dataclasses.dataclass(frozen=True)
class Importance:
    """Importance scores measured on a calibration batch (larger means more important).

    Attributes:
        heads: ``[num_layers, num_heads]`` first-order Taylor importance of each attention head.
        ffn: ``[num_layers, ffn_size]`` first-order Taylor importance of each FFN neuron.
        layers: ``[num_layers]`` loss increase on the batch when the block is skipped.
        hidden: ``[hidden_size]`` first-order Taylor importance of each hidden channel.
    """

    heads: np.ndarray
    ffn: np.ndarray
    layers: np.ndarray
    hidden: np.ndarray

    def layers_for_depth(self, depth: int) -> tuple[int, ...]:
        """The ``depth`` most important blocks, in their original order."""
        order = np.argsort(-self.layers, kind="stable")[:depth]
        return tuple(sorted(int(i) for i in order))

    def most_important(self, layers: tuple[int, ...], count: int) -> tuple[int, ...]:
        """The ``count`` most important of ``layers``, ascending."""
        ranked = sorted(layers, key=lambda index: (-self.layers[index], index))[:count]
        return tuple(sorted(ranked))

    def head_order(self, layer: int) -> np.ndarray:
        """Heads of ``layer``, most important first."""
        return np.argsort(-self.heads[layer], kind="stable")

    def neuron_order(self, layer: int) -> np.ndarray:
        """FFN neurons of ``layer``, most important first."""
        return np.argsort(-self.ffn[layer], kind="stable")

    def hidden_order(self) -> np.ndarray:
        """Hidden channels, most important first."""
        return np.argsort(-self.hidden, kind="stable")


def hidden_parameters(layout: ModelLayout, num_blocks: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Every parameter with a hidden-width axis, as ``(path, hidden axes)``, for a model with ``num_blocks``."""
    for parameter in layout.outside:
        if parameter.hidden_axes:
            yield parameter.path, parameter.hidden_axes
    block = layout.block
    for index in range(num_blocks):
        base = layout.block_path(index)
        for role in ("query", "key", "value", "ffn_in"):  # input rows are hidden channels
            yield join(base, block.projection(role), "weight"), (0,)
        for role in ("attention_output", "ffn_out"):  # output columns (and the bias) are hidden channels
            yield join(base, block.projection(role), "weight"), (1,)
            if role in layout.projection_biases:
                yield join(base, block.projection(role), "bias"), (0,)
        for norm in block.norms:  # a norm without affine parameters has neither (callers skip missing ones)
            yield join(base, norm, "weight"), (0,)
            yield join(base, norm, "bias"), (0,)


def _abs_taylor(parameter: Any) -> np.ndarray:
    if parameter.grad is None:
        return np.zeros(parameter.shape, dtype=np.float64)
    return np.abs(parameter.numpy().astype(np.float64) * parameter.grad.numpy().astype(np.float64))


def _per_index(scores: np.ndarray, axis: int) -> np.ndarray:
    """Sum ``scores`` over every axis but ``axis``."""
    return scores.sum(axis=tuple(a for a in range(scores.ndim) if a != axis)) if scores.ndim > 1 else scores


def _loss(paddle: Any, model: Any, inputs: tuple[np.ndarray, ...], labels: np.ndarray) -> Any:
    logits = model(*[paddle.to_tensor(x) for x in inputs])
    return paddle.nn.functional.cross_entropy(logits, paddle.to_tensor(labels))


def _existing_parameter(model: Any, path: str) -> Any | None:
    try:
        return get_parameter(model, path)
    except AttributeError:
        return None  # a norm without affine parameters


def measure_importance(
    model: Any,
    adapter: ModelAdapter,
    layout: ModelLayout,
    inputs: tuple[np.ndarray, ...],
    labels: np.ndarray,
) -> Importance:
    """Measure head, neuron, hidden-channel and block importance of ``model`` on one calibration batch.

    The model is left unchanged: gradients are computed on a copy, and blocks are skipped in a copy.
    Dropout is off while measuring.

    Args:
        model: The teacher.
        adapter: The adapter that produced ``layout``.
        layout: The teacher's layout.
        inputs: The model's inputs for the batch (one array per ``forward`` argument).
        labels: Integer class labels of the batch.
    """
    paddle = import_paddle()
    work = copy.deepcopy(model)
    work.eval()
    loss = _loss(paddle, work, inputs, labels)
    loss.backward()
    block = layout.block
    hd = layout.head_dim
    heads = np.zeros((layout.num_layers, layout.num_heads))
    ffn = np.zeros((layout.num_layers, layout.ffn_size))
    for index in range(layout.num_layers):
        base = layout.block_path(index)
        per_column = np.zeros(layout.num_heads * hd)
        for path in (block.query, block.key, block.value):
            linear = get_sublayer(work, join(base, path))
            per_column += _abs_taylor(linear.weight).sum(axis=0)
            if linear.bias is not None:
                per_column += _abs_taylor(linear.bias)
        per_column += _abs_taylor(get_sublayer(work, join(base, block.attention_output)).weight).sum(axis=1)
        heads[index] = per_column.reshape(layout.num_heads, hd).sum(axis=1)
        ffn_in = get_sublayer(work, join(base, block.ffn_in))
        ffn[index] = _abs_taylor(ffn_in.weight).sum(axis=0) + _abs_taylor(get_sublayer(work, join(base, block.ffn_out)).weight).sum(axis=1)
        if ffn_in.bias is not None:
            ffn[index] += _abs_taylor(ffn_in.bias)
    hidden = np.zeros(layout.hidden_size)
    for path, axes in hidden_parameters(layout, layout.num_layers):
        parameter = _existing_parameter(work, path)
        if parameter is None:
            continue
        scores = _abs_taylor(parameter)
        for axis in axes:
            hidden += _per_index(scores, axis)
    work.clear_gradients()

    layer_scores = np.zeros(layout.num_layers)
    with paddle.no_grad():
        base_loss = float(_loss(paddle, work, inputs, labels))
        all_blocks = list(get_sublayer(work, layout.blocks_path))
        for skipped in range(layout.num_layers):
            adapter.set_blocks(work, layout, [b for i, b in enumerate(all_blocks) if i != skipped])
            layer_scores[skipped] = float(_loss(paddle, work, inputs, labels)) - base_loss
    return Importance(heads=heads, ffn=ffn, layers=layer_scores, hidden=hidden)
