"""Taps on a model's Transformer blocks: per-block hidden states, attention projections and FFN activations.

This is the only module of the evaluators that reaches inside a model. Feature- and relation-based
distillation and the activation-based zero-cost proxies read what :func:`tap_blocks` captures and nothing
else. Where the blocks and their parts are comes from the teacher's :class:`~devicefit.spaces.ModelLayout`
(found by the family adapters of :mod:`devicefit.spaces`: ``paddle.nn.TransformerEncoder`` models, ViTs,
BERT-style encoders, or a user's own adapter), so a new layout needs a new adapter there, not a change here.
A student cut from a teacher keeps the teacher's layout (fewer blocks, narrower projections), so the
teacher's layout serves both.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from devicefit.spaces._layout import ModelLayout
from devicefit.spaces._surgery import get_sublayer


@dataclasses.dataclass
class BlockTaps:
    """Tensors captured during forward passes, one entry per block and pass, in call order.

    They are the live tensors of the forward pass: when gradients are on, losses built from them
    back-propagate into the model.

    Attributes:
        hidden: Output of each block, ``[batch, tokens, hidden_size]``.
        queries: Output of each block's query projection, ``[batch, tokens, heads * head_dim]``.
        keys: Output of each block's key projection, same shape.
        values: Output of each block's value projection, same shape.
        ffn_inner: Output of each block's first FFN linear, before the activation, ``[batch, tokens, ffn]``.
    """

    hidden: list[Any] = dataclasses.field(default_factory=list)
    queries: list[Any] = dataclasses.field(default_factory=list)
    keys: list[Any] = dataclasses.field(default_factory=list)
    values: list[Any] = dataclasses.field(default_factory=list)
    ffn_inner: list[Any] = dataclasses.field(default_factory=list)

    def clear(self) -> None:
        """Forget what was captured (call between forward passes)."""
        for field in dataclasses.fields(self):
            getattr(self, field.name).clear()


def teacher_layout(teacher: Any) -> ModelLayout:
    """The layout of ``teacher`` as the default family adapters map it (what :class:`TransformerSpace` uses).

    Raises:
        UnsupportedModelError: No adapter recognizes the model (the message names the layer).
    """
    from devicefit.spaces._adapters import DEFAULT_ADAPTERS
    from devicefit.spaces._layout import find_layout

    return find_layout(teacher, DEFAULT_ADAPTERS)[1]


def blocks(model: Any, layout: ModelLayout) -> list[Any]:
    """The Transformer blocks of ``model`` (a teacher, or a student cut from it), in order."""
    return list(get_sublayer(model, layout.blocks_path))


def _block_parts(block: Any, layout: ModelLayout) -> dict[str, Any]:
    """The sublayers of one block whose outputs are tapped, by :class:`BlockTaps` field."""
    parts = layout.block
    return {
        "hidden": block,
        "queries": get_sublayer(block, parts.query),
        "keys": get_sublayer(block, parts.key),
        "values": get_sublayer(block, parts.value),
        "ffn_inner": get_sublayer(block, parts.ffn_in),
    }


@contextlib.contextmanager
def tap_blocks(model: Any, layout: ModelLayout) -> Iterator[BlockTaps]:
    """Capture the blocks' intermediate tensors while the context is open.

    Forward post-hooks are registered on entry and removed on exit, also when the body raises, so the
    model is left as it was. Each forward pass appends one tensor per block to each list. A block that
    returns a tuple contributes its first element as its hidden state.

    Args:
        model: The model to tap.
        layout: Where its blocks are (the teacher's layout, for a student cut from it too).

    Yields:
        The :class:`BlockTaps` being filled.
    """
    taps = BlockTaps()
    handles = []

    def recorder(target: list[Any]) -> Any:
        def hook(layer: Any, inputs: Any, output: Any) -> None:
            target.append(output[0] if isinstance(output, (tuple, list)) else output)

        return hook

    try:
        for block in blocks(model, layout):
            for field, part in _block_parts(block, layout).items():
                handles.append(part.register_forward_post_hook(recorder(getattr(taps, field))))
        yield taps
    finally:
        for handle in handles:
            handle.remove()
