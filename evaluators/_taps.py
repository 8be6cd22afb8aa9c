"""Taps on a model's encoder: its per-layer hidden states, attention projections and FFN activations.

This is the only module of the evaluators that knows how an encoder is laid out inside a model. Feature-
and relation-based distillation and the activation-based zero-cost proxies read what :func:`tap_encoder`
captures and nothing else, so supporting another encoder layout (BERT-style blocks, a ViT with a different
attention module...) means teaching :func:`encoder_blocks` and :func:`_block_parts` about it, here.

Today's layout is the one :func:`devicefit.spaces.find_encoder` recognises: a ``paddle.nn.TransformerEncoder``
at ``structure.encoder_path`` whose ``layers`` are ``paddle.nn.TransformerEncoderLayer`` s, with
``self_attn.q_proj/k_proj/v_proj`` and ``linear1``. A student cut from a teacher keeps the teacher's
layout (fewer layers, narrower projections), so the same structure serves both.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from devicefit.spaces._encoder import EncoderStructure, get_sublayer


@dataclasses.dataclass
class EncoderTaps:
    """Tensors captured during forward passes, one entry per encoder layer and pass, in call order.

    They are the live tensors of the forward pass: when gradients are on, losses built from them
    back-propagate into the model.

    Attributes:
        hidden: Output of each encoder layer, ``[batch, tokens, hidden_size]``.
        queries: Output of each layer's query projection, ``[batch, tokens, heads * head_dim]``.
        keys: Output of each layer's key projection, same shape.
        values: Output of each layer's value projection, same shape.
        ffn_inner: Output of each layer's first FFN linear, before the activation, ``[batch, tokens, ffn]``.
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


def encoder_blocks(model: Any, structure: EncoderStructure) -> list[Any]:
    """The encoder layers of ``model`` (a teacher, or a student cut from it), in order."""
    return list(get_sublayer(model, structure.encoder_path).layers)


def _block_parts(block: Any) -> dict[str, Any]:
    """The sublayers of one encoder layer whose outputs are tapped, by :class:`EncoderTaps` field."""
    attention = block.self_attn
    return {
        "hidden": block,
        "queries": attention.q_proj,
        "keys": attention.k_proj,
        "values": attention.v_proj,
        "ffn_inner": block.linear1,
    }


@contextlib.contextmanager
def tap_encoder(model: Any, structure: EncoderStructure) -> Iterator[EncoderTaps]:
    """Capture the encoder's intermediate tensors while the context is open.

    Forward post-hooks are registered on entry and removed on exit, also when the body raises, so the
    model is left as it was. Each forward pass appends one tensor per layer to each list.

    Args:
        model: The model to tap.
        structure: Where its encoder is (from :func:`devicefit.spaces.find_encoder` on the teacher).

    Yields:
        The :class:`EncoderTaps` being filled.
    """
    taps = EncoderTaps()
    handles = []

    def recorder(target: list[Any]) -> Any:
        def hook(layer: Any, inputs: Any, output: Any) -> None:
            target.append(output[0] if isinstance(output, (tuple, list)) else output)

        return hook

    try:
        for block in encoder_blocks(model, structure):
            for field, part in _block_parts(block).items():
                handles.append(part.register_forward_post_hook(recorder(getattr(taps, field))))
        yield taps
    finally:
        for handle in handles:
            handle.remove()
