"""Building a student: cut the teacher's blocks, heads, FFN neurons and hidden channels, inheriting weights.

The cut is DynaBERT-style weight inheritance: a :class:`CutPlan` lists, for each kept block, the heads and
neurons to keep in order of importance, and the hidden channels to keep; :func:`cut_model` applies it to a
copy of the teacher. Keeping everything in a permuted order only reorders the computation, so a plan that
keeps every index reproduces the teacher (tested for every family). Unstructured sparsity is applied after
the cut by PaddleSlim's unstructured pruner (:func:`prune_unstructured`) and survives fine-tuning.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
from typing import Any

import numpy as np

from devicefit.spaces._candidate import Candidate
from devicefit.spaces._importance import Importance, hidden_parameters
from devicefit.spaces._layout import ModelAdapter, ModelLayout
from devicefit.spaces._paddle import import_paddle, import_paddleslim
from devicefit.spaces._surgery import cut_linear, cut_parameter, get_parameter, get_sublayer, join


@dataclasses.dataclass(frozen=True)
class CutPlan:
    """Exactly which parts of the teacher a student keeps, in which order.

    Attributes:
        layers: Teacher block indices kept, ascending.
        head_orders: For each kept block, the teacher's head indices kept, in the student's order.
        neuron_orders: For each kept block, the teacher's FFN neuron indices kept, in order.
        hidden_order: The hidden channels kept, in order; ``None`` keeps the hidden width as it is.
    """

    layers: tuple[int, ...]
    head_orders: tuple[np.ndarray, ...]
    neuron_orders: tuple[np.ndarray, ...]
    hidden_order: np.ndarray | None = None


def plan_for(candidate: Candidate, importance: Importance) -> CutPlan:
    """The plan that keeps the most important parts that ``candidate`` asks for."""
    hidden_order = None if candidate.hidden is None else importance.hidden_order()[: candidate.hidden]
    return CutPlan(
        layers=candidate.layers,
        head_orders=tuple(importance.head_order(i)[:h] for i, h in zip(candidate.layers, candidate.heads)),
        neuron_orders=tuple(importance.neuron_order(i)[:f] for i, f in zip(candidate.layers, candidate.ffn)),
        hidden_order=hidden_order,
    )


def check_fits(layout: ModelLayout, candidate: Candidate) -> None:
    """Raise ``ValueError`` when ``candidate`` asks for more than the teacher has."""
    if candidate.layers[-1] >= layout.num_layers:
        raise ValueError(f"candidate keeps layer {candidate.layers[-1]}; the teacher has {layout.num_layers}")
    if max(candidate.heads) > layout.num_heads or max(candidate.ffn) > layout.ffn_size:
        raise ValueError(
            f"candidate asks for more than the teacher has ({layout.num_heads} heads, "
            f"{layout.ffn_size} FFN units): {candidate.describe()}"
        )
    if candidate.hidden is not None:
        if layout.hidden_unavailable is not None:
            raise ValueError(f"the hidden width of this {layout.family} model cannot be cut: {layout.hidden_unavailable}")
        if candidate.hidden > layout.hidden_size:
            raise ValueError(f"candidate asks for hidden width {candidate.hidden}; the teacher has {layout.hidden_size}")


def _head_columns(order: np.ndarray, head_dim: int) -> np.ndarray:
    return np.concatenate([np.arange(h * head_dim, (h + 1) * head_dim) for h in order]).astype(np.int64)


def cut_model(teacher: Any, adapter: ModelAdapter, layout: ModelLayout, plan: CutPlan) -> Any:
    """A copy of ``teacher`` cut as ``plan`` says, in eval mode; the teacher is not modified."""
    student = copy.deepcopy(teacher)
    block = layout.block
    kept = []
    for layer_index, head_order, neuron_order in zip(plan.layers, plan.head_orders, plan.neuron_orders):
        base = layout.block_path(layer_index)
        columns = _head_columns(np.asarray(head_order), layout.head_dim)
        for path in (block.query, block.key, block.value):
            cut_linear(student, join(base, path), outputs=columns)
        cut_linear(student, join(base, block.attention_output), inputs=columns)
        adapter.set_num_heads(get_sublayer(student, join(base, block.attention)), len(head_order))
        cut_linear(student, join(base, block.ffn_in), outputs=np.asarray(neuron_order))
        cut_linear(student, join(base, block.ffn_out), inputs=np.asarray(neuron_order))
        kept.append(get_sublayer(student, base))
    adapter.set_blocks(student, layout, kept)
    if plan.hidden_order is not None:
        channels = np.asarray(plan.hidden_order, dtype=np.int64)
        for path, axes in hidden_parameters(layout, len(kept)):
            try:
                get_parameter(student, path)
            except AttributeError:
                continue  # a norm without affine parameters
            cut_parameter(student, path, {axis: channels for axis in axes})
        _set_norm_widths(student, layout, len(kept), len(channels))
        adapter.set_hidden_size(student, layout, len(channels))
    student.eval()
    return student


def _set_norm_widths(student: Any, layout: ModelLayout, num_blocks: int, width: int) -> None:
    """LayerNorms without affine parameters still carry their width; keep it true to the cut."""
    paddle = import_paddle()
    for index in range(num_blocks):
        for norm in layout.block.norms:
            layer = get_sublayer(student, join(layout.block_path(index), norm))
            if isinstance(layer, paddle.nn.LayerNorm):
                layer._normalized_shape = [width]  # noqa: SLF001  (read by LayerNorm.forward)


def block_linear_weights(layout: ModelLayout, num_blocks: int) -> list[str]:
    """Paths of the weights of every projection of the first ``num_blocks`` blocks."""
    block = layout.block
    roles = ("query", "key", "value", "attention_output", "ffn_in", "ffn_out")
    return [join(layout.block_path(i), block.projection(role), "weight") for i in range(num_blocks) for role in roles]


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """What unstructured pruning did.

    Attributes:
        ratio: The requested ratio.
        pruned_weights: Scalars in the weights it applies to (the blocks' projection weights).
        zero_weights: How many of them are zero afterwards.
    """

    ratio: float
    pruned_weights: int
    zero_weights: int

    @property
    def achieved(self) -> float:
        """The fraction of the pruned weights that are zero."""
        return self.zero_weights / self.pruned_weights if self.pruned_weights else 0.0


def prune_unstructured(student: Any, layout: ModelLayout, ratio: float) -> SparsityReport:
    """Zero the smallest-magnitude ``ratio`` of every block projection weight, and keep them zero.

    The masks come from PaddleSlim's ``UnstructuredPruner`` (ratio mode, the same ratio in every matrix:
    ``local_sparsity=True``), run on a copy of the student so that its forward hooks and mask buffers never
    reach the exported program. Each pruned weight gets a gradient hook that multiplies its gradient by the
    mask, so a later fine-tune (SGD, Adam, AdamW: a zero gradient never moves a zero weight) keeps the zeros.

    Args:
        student: A student built by :func:`cut_model` (modified in place).
        layout: The teacher's layout (paths are shared).
        ratio: Fraction of each weight matrix to zero, in ``[0, 1)``.
    """
    paddle = import_paddle()
    num_blocks = len(get_sublayer(student, layout.blocks_path))
    targets = block_linear_weights(layout, num_blocks)
    shadow = copy.deepcopy(student)
    shadow_names = {get_parameter(shadow, path).name: path for path in targets}
    masks = magnitude_masks(shadow, list(shadow_names), ratio)
    zeros = 0
    total = 0
    for name, path in shadow_names.items():
        mask = masks[name]
        parameter = get_parameter(student, path)
        parameter.set_value(parameter.numpy() * mask)
        mask_tensor = paddle.to_tensor(mask)
        parameter.register_hook(lambda grad, kept=mask_tensor: grad * kept)
        zeros += int(mask.size - np.count_nonzero(mask))
        total += int(mask.size)
    return SparsityReport(ratio, total, zeros)


def magnitude_masks(model: Any, names: list[str], ratio: float) -> dict[str, np.ndarray]:
    """PaddleSlim's ``UnstructuredPruner`` masks (ratio mode, ``local_sparsity=True``) of the named parameters.

    Each mask (float32, 1 kept, 0 pruned) zeroes the smallest-magnitude ``ratio`` of its matrix. The pruner
    registers forward hooks and mask buffers on ``model``: pass a copy that is thrown away afterwards.

    Args:
        model: The layer that holds the parameters (any ``paddle.nn.Layer``, a ``TranslatedLayer`` too).
        names: The parameters' ``name`` attributes (``param.name``); the model's other parameters are left alone.
        ratio: Fraction of each matrix to zero, in ``[0, 1)``.
    """
    paddle = import_paddle()
    slim = import_paddleslim()
    wanted = set(names)
    all_names = {p.name for p in model.parameters()}

    def skip_everything_else(layer: Any) -> set[str]:
        del layer
        return all_names - wanted

    holder = paddle.nn.LayerList([model])  # the pruner visits sublayers, never the model it is given itself
    with contextlib.redirect_stdout(io.StringIO()):  # the pruner prints a line per parameter
        pruner = slim.UnstructuredPruner(
            holder, mode="ratio", ratio=ratio, local_sparsity=True, skip_params_func=skip_everything_else
        )
        pruner.step()
    return {name: pruner.masks[name].numpy().astype(np.float32) for name in names}


def count_zero_weights(model: Any, layout: ModelLayout) -> tuple[int, int]:
    """``(zeros, scalars)`` over the blocks' projection weights of ``model``."""
    num_blocks = len(get_sublayer(model, layout.blocks_path))
    zeros = total = 0
    for path in block_linear_weights(layout, num_blocks):
        values = get_parameter(model, path).numpy()
        zeros += int(values.size - np.count_nonzero(values))
        total += int(values.size)
    return zeros, total
