"""The common structure every Transformer family is mapped onto, and the adapter contract that maps it.

A :class:`ModelAdapter` knows one layout of Transformer (a model family): where its blocks are and how to
change a block's head count. It returns the blocks it found as :class:`LocatedBlocks`; :func:`find_layout`
then completes them into a :class:`ModelLayout` with checks that are the same for every family: the
projections are ``paddle.nn.Linear`` layers of consistent shapes, the blocks are uniform, and every
parameter outside the blocks is placed with respect to the hidden width (the embeddings that write the
hidden stream, the norms on it, the heads that read it). A model no adapter recognizes gets an
:class:`UnsupportedModelError` that names the layer devicefit could not place.

To support a custom model, subclass :class:`ModelAdapter` (``locate`` and ``set_num_heads``) and pass it
to the search space (``TransformerSpace(..., adapters=[MyAdapter()])``).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar

import numpy as np

from devicefit.spaces._candidate import Candidate
from devicefit.spaces._paddle import import_paddle
from devicefit.spaces._surgery import get_sublayer, join, set_sublayer


class UnsupportedModelError(ValueError):
    """The teacher's structure cannot be mapped onto the search space; the message names the layer."""


class LayoutMismatch(Exception):
    """Raised by :meth:`ModelAdapter.locate`: the model is not of the adapter's family (message: which layer)."""


#: The projections of a block, by role; each is a ``paddle.nn.Linear``.
PROJECTIONS = ("query", "key", "value", "attention_output", "ffn_in", "ffn_out")


@dataclasses.dataclass(frozen=True)
class BlockLayout:
    """Where the parts of one Transformer block are: dotted paths relative to the block.

    Attributes:
        attention: The layer whose head count :meth:`ModelAdapter.set_num_heads` changes.
        query: Linear, hidden -> heads * head_dim (columns grouped by head).
        key: Linear, hidden -> heads * head_dim.
        value: Linear, hidden -> heads * head_dim.
        attention_output: Linear, heads * head_dim -> hidden.
        ffn_in: Linear, hidden -> FFN width.
        ffn_out: Linear, FFN width -> hidden.
        norms: The LayerNorms over the hidden width inside the block.
    """

    attention: str
    query: str
    key: str
    value: str
    attention_output: str
    ffn_in: str
    ffn_out: str
    norms: tuple[str, ...]

    def projection(self, role: str) -> str:
        """The path of the projection with that role (one of :data:`PROJECTIONS`)."""
        return str(getattr(self, role))


@dataclasses.dataclass(frozen=True)
class LocatedBlocks:
    """What an adapter found: the list of blocks and the layout of each.

    Attributes:
        blocks_path: Dotted path of the ``paddle.nn.LayerList`` that holds the blocks.
        block: The layout shared by every block.
        num_heads: Attention heads per block in the teacher.
        head_dim: Width of one head.
        hidden_maps: Linear layers outside the blocks that map the hidden stream to a representation of
            the same width, which the rest of the model reads as hidden-wide (BERT's pooler, whose output
            the classifier reads): both their axes follow the hidden width. Without this, a hidden-to-hidden
            layer is ambiguous and the hidden width is not offered.
    """

    blocks_path: str
    block: BlockLayout
    num_heads: int
    head_dim: int
    hidden_maps: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class OutsideParameter:
    """A parameter outside the blocks, and which of its axes have the hidden width.

    Attributes:
        path: Dotted path of the parameter (``bert.embeddings.word_embeddings.weight``).
        shape: Its shape in the teacher.
        hidden_axes: Axes whose extent is the hidden width (empty: independent of it).
    """

    path: str
    shape: tuple[int, ...]
    hidden_axes: tuple[int, ...]

    def count(self, hidden: int) -> int:
        """Scalars in this parameter when the model's hidden width is ``hidden``."""
        shape = [hidden if axis in self.hidden_axes else extent for axis, extent in enumerate(self.shape)]
        return int(np.prod(shape))


@dataclasses.dataclass(frozen=True)
class ModelLayout:
    """A teacher mapped onto the common structure: uniform blocks, sizes, and the parameters around them.

    Attributes:
        family: The adapter's family name (``bert``, ``vit``, ``transformer-encoder``, or a custom one).
        blocks_path: Dotted path of the ``paddle.nn.LayerList`` holding the blocks.
        block: Layout of every block (paths relative to the block).
        num_layers: Blocks in the teacher.
        num_heads: Attention heads per block.
        head_dim: Width of one head.
        hidden_size: The hidden width (model width).
        ffn_size: FFN width per block.
        outside: Every parameter outside the blocks, placed with respect to the hidden width.
        projection_biases: The projection roles (:data:`PROJECTIONS`) that have a bias.
        norm_parameters_per_channel: Scalars per hidden channel in one block's norms (4 for two affine norms).
        hidden_unavailable: ``None`` when the hidden width can be cut; otherwise why not (names the layer).
    """

    family: str
    blocks_path: str
    block: BlockLayout
    num_layers: int
    num_heads: int
    head_dim: int
    hidden_size: int
    ffn_size: int
    outside: tuple[OutsideParameter, ...]
    projection_biases: frozenset[str]
    norm_parameters_per_channel: int
    hidden_unavailable: str | None = None

    def block_path(self, index: int) -> str:
        """Dotted path of block ``index``."""
        return join(self.blocks_path, str(index))

    def full_candidate(self) -> Candidate:
        """The candidate that keeps everything (the teacher itself, in fp32)."""
        layers = tuple(range(self.num_layers))
        return Candidate(layers, (self.num_heads,) * self.num_layers, (self.ffn_size,) * self.num_layers)

    def block_parameter_count(self, heads: int, ffn: int, hidden: int) -> int:
        """Scalars in one block that keeps ``heads`` heads and ``ffn`` FFN units at hidden width ``hidden``."""
        inner = heads * self.head_dim
        fan = {  # role -> (inputs, outputs)
            "query": (hidden, inner),
            "key": (hidden, inner),
            "value": (hidden, inner),
            "attention_output": (inner, hidden),
            "ffn_in": (hidden, ffn),
            "ffn_out": (ffn, hidden),
        }
        total = self.norm_parameters_per_channel * hidden
        for role, (fan_in, fan_out) in fan.items():
            total += fan_in * fan_out + (fan_out if role in self.projection_biases else 0)
        return total

    def parameter_count(self, candidate: Candidate) -> int:
        """Scalars in the whole student that ``candidate`` describes (the formula the cut must meet)."""
        hidden = candidate.hidden or self.hidden_size
        outside = sum(p.count(hidden) for p in self.outside)
        blocks = sum(self.block_parameter_count(h, f, hidden) for h, f in zip(candidate.heads, candidate.ffn))
        return outside + blocks


class ModelAdapter(abc.ABC):
    """Maps one family of Transformer models onto the common block structure.

    Contract:
        - :meth:`locate` finds the blocks of a model of this family and returns :class:`LocatedBlocks`
          (paths are dotted sublayer paths; list items by index). For a model of another family it raises
          :class:`LayoutMismatch` saying which layer did not fit; for a model of this family that cannot be
          used it raises :class:`UnsupportedModelError` naming the layer. It never changes the model.
        - :meth:`set_num_heads` makes an attention layer (``BlockLayout.attention``) compute with
          ``num_heads`` heads of unchanged width, after its projections were cut to those heads.
        - :meth:`set_blocks` installs the given blocks, in order, as the model's blocks (the default
          replaces the ``LayerList`` at ``blocks_path``; override it when the model also keeps a count).
        - :meth:`set_hidden_size` is told the new hidden width after every hidden-width parameter was cut
          (the default does nothing; override it when a layer keeps the width in an attribute it uses).
    """

    #: The family's name, as it appears in layouts, banners and errors.
    family: ClassVar[str] = "custom"

    @abc.abstractmethod
    def locate(self, model: Any) -> LocatedBlocks:
        """Find the blocks of ``model``; raise :class:`LayoutMismatch` if it is not of this family."""

    @abc.abstractmethod
    def set_num_heads(self, attention: Any, num_heads: int) -> None:
        """Make ``attention`` compute with ``num_heads`` heads."""

    def set_blocks(self, model: Any, layout: ModelLayout, blocks: list[Any]) -> None:
        """Install ``blocks`` (in order) as the model's blocks."""
        paddle = import_paddle()
        set_sublayer(model, layout.blocks_path, paddle.nn.LayerList(blocks))

    def set_hidden_size(self, model: Any, layout: ModelLayout, hidden_size: int) -> None:
        """Hook called after the hidden width was cut to ``hidden_size``."""


def _linear_shape(paddle: Any, model: Any, path: str, where: str) -> tuple[int, int, bool]:
    try:
        layer = get_sublayer(model, path)
    except AttributeError:
        raise UnsupportedModelError(f"{where} has no sublayer '{path.rpartition('.')[2]}' ({path})") from None
    if not isinstance(layer, paddle.nn.Linear):
        raise UnsupportedModelError(f"{path} is a {type(layer).__name__}, expected a paddle.nn.Linear")
    fan_in, fan_out = (int(n) for n in layer.weight.shape)
    return fan_in, fan_out, layer.bias is not None


def _check_block(paddle: Any, model: Any, located: LocatedBlocks, index: int) -> tuple[int, int, frozenset[str], int]:
    """Check one block; returns (hidden, ffn, roles with a bias, norm scalars per hidden channel)."""
    block_path = join(located.blocks_path, str(index))
    layout = located.block
    shapes = {
        role: _linear_shape(paddle, model, join(block_path, layout.projection(role)), block_path)
        for role in PROJECTIONS
    }
    inner = located.num_heads * located.head_dim
    hidden = shapes["query"][0]
    ffn = shapes["ffn_in"][1]
    expected = {
        "query": (hidden, inner),
        "key": (hidden, inner),
        "value": (hidden, inner),
        "attention_output": (inner, hidden),
        "ffn_in": (hidden, ffn),
        "ffn_out": (ffn, hidden),
    }
    for role, (fan_in, fan_out) in expected.items():
        if shapes[role][:2] != (fan_in, fan_out):
            path = join(block_path, layout.projection(role))
            raise UnsupportedModelError(
                f"{path} maps {shapes[role][0]} -> {shapes[role][1]}; as the {role} projection of a block with "
                f"{located.num_heads} heads of {located.head_dim} and hidden width {hidden} it should map "
                f"{fan_in} -> {fan_out}"
            )
    norm_tensors = 0  # affine parameters of the norms, each one scalar per hidden channel
    for norm_path in layout.norms:
        path = join(block_path, norm_path)
        try:
            norm = get_sublayer(model, path)
        except AttributeError:
            raise UnsupportedModelError(f"{block_path} has no norm '{norm_path}'") from None
        if not isinstance(norm, paddle.nn.LayerNorm) or list(norm._normalized_shape) != [hidden]:  # noqa: SLF001
            raise UnsupportedModelError(f"{path} is not a LayerNorm over the hidden width {hidden}")
        norm_tensors += sum(1 for p in (norm.weight, norm.bias) if p is not None)
    biases = frozenset(role for role, shape in shapes.items() if shape[2])
    return hidden, ffn, biases, norm_tensors


def _place_outside_parameter(
    paddle: Any, owner: Any, owner_path: str, name: str, shape: tuple[int, ...], hidden: int, maps: set[str]
) -> tuple[int, ...] | None:
    """The hidden axes of one parameter outside the blocks, or ``None`` when it cannot be placed."""
    hidden_dims = tuple(axis for axis, extent in enumerate(shape) if extent == hidden)
    if not hidden_dims:
        return ()
    if isinstance(owner, paddle.nn.LayerNorm):
        return (0,) if shape == (hidden,) else None
    if isinstance(owner, paddle.nn.Embedding):
        return (1,) if name == "weight" and shape[1] == hidden and shape[0] != hidden else None
    if isinstance(owner, paddle.nn.Linear):
        fan_in, fan_out = (int(n) for n in owner.weight.shape)
        if owner_path in maps:
            return (0, 1) if name == "weight" else (0,)
        if fan_in == hidden and fan_out == hidden:
            return None  # reads and writes the hidden width: a stream-to-stream map or a coincidence
        if name == "weight":
            return (0,) if fan_in == hidden else (1,)
        return (0,) if fan_out == hidden else ()
    if isinstance(owner, (paddle.nn.Conv1D, paddle.nn.Conv2D)):
        out_channels, in_channels = int(owner.weight.shape[0]), int(owner.weight.shape[1])
        if out_channels == hidden and in_channels == hidden:
            return None
        if name == "weight":
            return (0,) if out_channels == hidden else (1,)
        return (0,) if out_channels == hidden else ()
    if hidden_dims == (len(shape) - 1,) and len(shape) >= 2 and shape[0] == 1:
        return hidden_dims  # a token-like parameter such as a class token or position embedding: [1, ..., hidden]
    return None


def _place_outside(
    paddle: Any, model: Any, located: LocatedBlocks, hidden: int
) -> tuple[tuple[OutsideParameter, ...], str | None]:
    blocks = get_sublayer(model, located.blocks_path)
    inside = {id(p) for p in blocks.parameters()}
    maps = set(located.hidden_maps)
    placed = []
    unplaced = None
    for owner_path, owner in model.named_sublayers(include_self=True):
        for name, parameter in owner.named_parameters(include_sublayers=False):
            if id(parameter) in inside:
                continue
            shape = tuple(int(n) for n in parameter.shape)
            axes = _place_outside_parameter(paddle, owner, owner_path, name, shape, hidden, maps)
            path = join(owner_path, name)
            if axes is None:
                unplaced = unplaced or (
                    f"{path} ({type(owner).__name__}, shape {list(shape)}) has the hidden width {hidden} but "
                    "devicefit cannot tell whether it reads or writes the hidden stream"
                )
                axes = ()
            placed.append(OutsideParameter(path, shape, axes))
    return tuple(placed), unplaced


def complete_layout(model: Any, adapter: ModelAdapter, located: LocatedBlocks) -> ModelLayout:
    """Check what ``adapter`` located in ``model`` and complete it into a :class:`ModelLayout`.

    Raises:
        UnsupportedModelError: A projection or norm is missing or has the wrong shape, or the blocks differ.
    """
    paddle = import_paddle()
    try:
        blocks = get_sublayer(model, located.blocks_path)
    except AttributeError:
        raise UnsupportedModelError(f"{type(model).__name__} has no block list '{located.blocks_path}'") from None
    if not isinstance(blocks, paddle.nn.LayerList) or len(blocks) == 0:
        raise UnsupportedModelError(f"{located.blocks_path} is not a non-empty paddle.nn.LayerList")
    shapes = [_check_block(paddle, model, located, index) for index in range(len(blocks))]
    if len(set(shapes)) != 1:
        differing = next(i for i, shape in enumerate(shapes) if shape != shapes[0])
        raise UnsupportedModelError(
            f"{join(located.blocks_path, str(differing))} differs in shape from block 0; devicefit needs uniform blocks"
        )
    hidden, ffn, biases, norm_per_channel = shapes[0]
    outside, unplaced = _place_outside(paddle, model, located, hidden)
    return ModelLayout(
        family=adapter.family,
        blocks_path=located.blocks_path,
        block=located.block,
        num_layers=len(blocks),
        num_heads=located.num_heads,
        head_dim=located.head_dim,
        hidden_size=hidden,
        ffn_size=ffn,
        outside=outside,
        projection_biases=biases,
        norm_parameters_per_channel=norm_per_channel,
        hidden_unavailable=unplaced,
    )


def _largest_layer_list(model: Any) -> tuple[str, Any] | None:
    paddle = import_paddle()
    lists = [
        (name, layer)
        for name, layer in model.named_sublayers()
        if isinstance(layer, paddle.nn.LayerList) and len(layer) > 0
    ]
    return max(lists, key=lambda item: len(item[1])) if lists else None


def find_layout(model: Any, adapters: tuple[ModelAdapter, ...]) -> tuple[ModelAdapter, ModelLayout]:
    """Map ``model`` with the first adapter that recognizes it.

    Raises:
        UnsupportedModelError: No adapter recognizes the model (the message names the layer that could not
            be placed and what each adapter missed), or the recognizing adapter found an unusable part.
    """
    misses = []
    for adapter in adapters:
        try:
            located = adapter.locate(model)
        except LayoutMismatch as miss:
            misses.append(f"{adapter.family}: {miss}")
            continue
        return adapter, complete_layout(model, adapter, located)
    largest = _largest_layer_list(model)
    if largest is not None:
        name, layers = largest
        kinds = sorted({type(layer).__name__ for layer in layers})
        where = f"could not place '{name}' (a LayerList of {len(layers)} {'/'.join(kinds)})"
    else:
        where = "found no list of Transformer blocks in it"
    raise UnsupportedModelError(
        f"devicefit cannot map {type(model).__name__}: {where}. {'; '.join(misses)}. "
        "Write a devicefit.spaces.ModelAdapter for this layout."
    )
