"""The model families devicefit maps out of the box, one adapter per layout.

- :class:`BertAdapter`: BERT-style encoders laid out like the public BERT/ERNIE/TinyBERT definitions
  (``embeddings``; ``encoder.layer[i].attention.self.{query,key,value}``, ``attention.output.dense``,
  ``intermediate.dense``, ``output.dense``; ``pooler``; a classifier).
- :class:`ViTAdapter`: Vision Transformers on ``paddle.nn.TransformerEncoder`` (a convolutional patch
  embedding, a position embedding, a class token or mean pooling).
- :class:`TransformerEncoderAdapter`: any model built on one ``paddle.nn.TransformerEncoder`` of
  ``TransformerEncoderLayer`` s, pre- or post-norm.

They are tried in that order (:data:`DEFAULT_ADAPTERS`): the most specific first.
"""

from __future__ import annotations

from typing import Any

from devicefit.spaces._layout import (
    BlockLayout,
    LayoutMismatch,
    LocatedBlocks,
    ModelAdapter,
    ModelLayout,
    UnsupportedModelError,
)
from devicefit.spaces._paddle import import_paddle
from devicefit.spaces._surgery import get_sublayer, has_sublayer, join

#: The layout of a ``paddle.nn.TransformerEncoderLayer``.
ENCODER_LAYER_BLOCK = BlockLayout(
    attention="self_attn",
    query="self_attn.q_proj",
    key="self_attn.k_proj",
    value="self_attn.v_proj",
    attention_output="self_attn.out_proj",
    ffn_in="linear1",
    ffn_out="linear2",
    norms=("norm1", "norm2"),
)

#: The layout of a public-style BERT layer (``BertLayer``).
BERT_LAYER_BLOCK = BlockLayout(
    attention="attention.self",
    query="attention.self.query",
    key="attention.self.key",
    value="attention.self.value",
    attention_output="attention.output.dense",
    ffn_in="intermediate.dense",
    ffn_out="output.dense",
    norms=("attention.output.LayerNorm", "output.LayerNorm"),
)


class TransformerEncoderAdapter(ModelAdapter):
    """Models built on one ``paddle.nn.TransformerEncoder`` (pre- or post-norm layers)."""

    family = "transformer-encoder"

    def _encoder(self, model: Any) -> tuple[str, Any]:
        paddle = import_paddle()
        found = [
            (name, layer)
            for name, layer in model.named_sublayers(include_self=True)
            if isinstance(layer, paddle.nn.TransformerEncoder)
        ]
        if not found:
            raise LayoutMismatch("no paddle.nn.TransformerEncoder")
        if len(found) > 1:
            names = ", ".join(name or "<model>" for name, _ in found)
            raise UnsupportedModelError(
                f"{type(model).__name__} has several TransformerEncoders ({names}); devicefit expects one"
            )
        return found[0]

    def locate(self, model: Any) -> LocatedBlocks:
        paddle = import_paddle()
        path, encoder = self._encoder(model)
        blocks_path = join(path, "layers")
        heads = set()
        for index, layer in enumerate(encoder.layers):
            where = join(blocks_path, str(index))
            if not isinstance(layer, paddle.nn.TransformerEncoderLayer):
                raise UnsupportedModelError(f"{where} is a {type(layer).__name__}, not a TransformerEncoderLayer")
            attention = layer.self_attn
            if attention.kdim != attention.embed_dim or attention.vdim != attention.embed_dim:
                raise UnsupportedModelError(f"{where}.self_attn has kdim/vdim different from embed_dim")
            heads.add((attention.num_heads, attention.head_dim))
        if len(heads) != 1:
            raise UnsupportedModelError(f"the layers of {blocks_path} differ in heads: {sorted(heads)}")
        num_heads, head_dim = heads.pop()
        return LocatedBlocks(blocks_path, ENCODER_LAYER_BLOCK, num_heads, head_dim)

    def set_num_heads(self, attention: Any, num_heads: int) -> None:
        attention.num_heads = num_heads  # head_dim is kept; forward reshapes with (num_heads, head_dim)

    def set_blocks(self, model: Any, layout: ModelLayout, blocks: list[Any]) -> None:
        super().set_blocks(model, layout, blocks)
        get_sublayer(model, layout.blocks_path.rpartition(".")[0]).num_layers = len(blocks)

    def set_hidden_size(self, model: Any, layout: ModelLayout, hidden_size: int) -> None:
        # MultiHeadAttention keeps embed_dim/kdim/vdim for reference only (forward does not read them);
        # keep them true to the cut model.
        for block in get_sublayer(model, layout.blocks_path):
            block.self_attn.embed_dim = block.self_attn.kdim = block.self_attn.vdim = hidden_size


class ViTAdapter(TransformerEncoderAdapter):
    """Vision Transformers on ``paddle.nn.TransformerEncoder``.

    Recognized by a ``paddle.nn.Conv2D`` patch embedding whose output channels are the hidden width and a
    position-embedding parameter of shape ``[1, tokens, hidden]``; a class token ``[1, 1, hidden]`` is
    optional (mean pooling otherwise). The forward must not hard-code the hidden width (use
    ``reshape([0, 0, -1])`` after the patch embedding) for the hidden width to be searchable.
    """

    family = "vit"

    def locate(self, model: Any) -> LocatedBlocks:
        paddle = import_paddle()
        located = super().locate(model)
        hidden = located.num_heads * located.head_dim
        encoder_path = located.blocks_path.rpartition(".")[0]
        outside_encoder = [
            (name, layer)
            for name, layer in model.named_sublayers(include_self=True)
            if not (encoder_path and (name == encoder_path or name.startswith(encoder_path + ".")))
        ]
        patch_embeddings = [
            name for name, layer in outside_encoder if isinstance(layer, paddle.nn.Conv2D) and layer.weight.shape[0] == hidden
        ]
        if not patch_embeddings:
            raise LayoutMismatch(f"no Conv2D patch embedding with {hidden} output channels")
        position = [
            join(name, pname)
            for name, layer in outside_encoder
            for pname, parameter in layer.named_parameters(include_sublayers=False)
            if len(parameter.shape) == 3 and parameter.shape[0] == 1 and parameter.shape[2] == hidden and parameter.shape[1] > 1
        ]
        if not position:
            raise LayoutMismatch(f"no position embedding parameter of shape [1, tokens, {hidden}]")
        return located


class BertAdapter(ModelAdapter):
    """BERT-style encoders laid out like the public BERT/ERNIE/TinyBERT definitions.

    The model (or one of its sublayers) has ``embeddings`` and ``encoder.layer``, a ``LayerList`` of layers
    with ``attention.self.{query,key,value}``, ``attention.output.{dense,LayerNorm}``,
    ``intermediate.dense`` and ``output.{dense,LayerNorm}``. The self-attention layer keeps its head count
    in ``num_attention_heads`` and the head width in ``attention_head_size`` (and ``all_head_size``).
    """

    family = "bert"

    def locate(self, model: Any) -> LocatedBlocks:
        paddle = import_paddle()
        roots = [
            name
            for name, layer in model.named_sublayers(include_self=True)
            if has_sublayer(layer, "embeddings") and has_sublayer(layer, "encoder.layer")
        ]
        if not roots:
            raise LayoutMismatch("no sublayer with 'embeddings' and 'encoder.layer'")
        if len(roots) > 1:
            raise UnsupportedModelError(f"{type(model).__name__} has several BERT encoders ({', '.join(roots)})")
        root = roots[0]
        blocks_path = join(root, "encoder.layer")
        blocks = get_sublayer(model, blocks_path)
        if not isinstance(blocks, paddle.nn.LayerList) or len(blocks) == 0:
            raise UnsupportedModelError(f"{blocks_path} is not a non-empty paddle.nn.LayerList")
        heads = set()
        for index, block in enumerate(blocks):
            where = join(blocks_path, str(index))
            for role_path in (
                BERT_LAYER_BLOCK.query,
                BERT_LAYER_BLOCK.key,
                BERT_LAYER_BLOCK.value,
                BERT_LAYER_BLOCK.attention_output,
                BERT_LAYER_BLOCK.ffn_in,
                BERT_LAYER_BLOCK.ffn_out,
                *BERT_LAYER_BLOCK.norms,
            ):
                if not has_sublayer(block, role_path):
                    raise UnsupportedModelError(f"{where} has no {role_path}, which a BERT-style layer has")
            attention = get_sublayer(block, BERT_LAYER_BLOCK.attention)
            for attribute in ("num_attention_heads", "attention_head_size", "all_head_size"):
                if not isinstance(getattr(attention, attribute, None), int):
                    raise UnsupportedModelError(
                        f"{where}.{BERT_LAYER_BLOCK.attention} has no integer '{attribute}', which BERT-style "
                        "self-attention keeps its head count in"
                    )
            heads.add((attention.num_attention_heads, attention.attention_head_size))
        if len(heads) != 1:
            raise UnsupportedModelError(f"the layers of {blocks_path} differ in heads: {sorted(heads)}")
        num_heads, head_dim = heads.pop()
        pooler = join(root, "pooler.dense")
        maps = (pooler,) if has_sublayer(model, pooler) else ()
        return LocatedBlocks(blocks_path, BERT_LAYER_BLOCK, num_heads, head_dim, hidden_maps=maps)

    def set_num_heads(self, attention: Any, num_heads: int) -> None:
        attention.num_attention_heads = num_heads
        attention.all_head_size = num_heads * attention.attention_head_size


#: The adapters tried when none is given, most specific first.
DEFAULT_ADAPTERS: tuple[ModelAdapter, ...] = (BertAdapter(), ViTAdapter(), TransformerEncoderAdapter())
