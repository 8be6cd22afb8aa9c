"""Model surgery: reach a sublayer or parameter by its dotted path, and cut parameters along an axis.

Cutting replaces the parameter on the layer that owns it by a new parameter holding the kept slices, in the
order given (so a cut is also a reordering), and updates the shape attributes that Paddle's own layers read
in ``forward`` (``LayerNorm._normalized_shape``) or report (``Embedding._embedding_dim``, ``Conv2D`` channel
counts). Nothing else about the layer changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from devicefit.spaces._paddle import import_paddle


def get_sublayer(model: Any, path: str) -> Any:
    """The sublayer at a dotted path (``''`` is the model itself); list items are addressed by index.

    Raises:
        AttributeError: No sublayer at that path (the message names the path).
    """
    layer = model
    for part in filter(None, path.split(".")):
        try:
            layer = layer[int(part)] if part.isdigit() else getattr(layer, part)
        except (AttributeError, IndexError, TypeError):
            raise AttributeError(f"{type(model).__name__} has no sublayer '{path}'") from None
    return layer


def has_sublayer(model: Any, path: str) -> bool:
    """Whether :func:`get_sublayer` finds a ``paddle.nn.Layer`` at ``path``."""
    paddle = import_paddle()
    try:
        return isinstance(get_sublayer(model, path), paddle.nn.Layer)
    except AttributeError:
        return False


def set_sublayer(model: Any, path: str, layer: Any) -> None:
    """Replace the sublayer at a dotted path (not the model itself)."""
    parent_path, _, name = path.rpartition(".")
    parent = get_sublayer(model, parent_path)
    if name.isdigit():
        parent[int(name)] = layer
    else:
        setattr(parent, name, layer)


def join(*parts: str) -> str:
    """Join dotted path parts, skipping empty ones."""
    return ".".join(part for part in parts if part)


def split_parameter_path(path: str) -> tuple[str, str]:
    """``'a.b.weight'`` -> ``('a.b', 'weight')``: the owning layer's path and the parameter's name."""
    owner, _, name = path.rpartition(".")
    return owner, name


def get_parameter(model: Any, path: str) -> Any:
    """The parameter at a dotted path such as ``encoder.layers.0.linear1.weight``.

    Raises:
        AttributeError: The owner has no parameter of that name.
    """
    owner_path, name = split_parameter_path(path)
    owner = get_sublayer(model, owner_path)
    parameter = owner._parameters.get(name)  # noqa: SLF001  (Paddle keeps a layer's own parameters here)
    if parameter is None:
        raise AttributeError(f"{owner_path or type(model).__name__} has no parameter '{name}'")
    return parameter


def replace_parameter(owner: Any, name: str, value: np.ndarray) -> Any:
    """Give ``owner`` a new parameter ``name`` holding ``value`` (any shape); returns the new parameter.

    The new parameter keeps the old one's dtype and trainability; shape attributes of Paddle's standard
    layers are updated to match (see the module docstring).
    """
    paddle = import_paddle()
    old = owner._parameters[name]  # noqa: SLF001
    new = owner.create_parameter(
        shape=list(value.shape),
        dtype=old.dtype,
        is_bias=len(value.shape) == 1,
        default_initializer=paddle.nn.initializer.Assign(np.ascontiguousarray(value)),
    )
    new.stop_gradient = old.stop_gradient
    setattr(owner, name, new)
    _update_shape_attributes(paddle, owner)
    return new


def _update_shape_attributes(paddle: Any, owner: Any) -> None:
    if isinstance(owner, paddle.nn.LayerNorm) and owner.weight is not None:
        owner._normalized_shape = [int(owner.weight.shape[0])]  # noqa: SLF001  (read by LayerNorm.forward)
    elif isinstance(owner, paddle.nn.Embedding):
        owner._embedding_dim = int(owner.weight.shape[1])  # noqa: SLF001
    elif isinstance(owner, (paddle.nn.Conv1D, paddle.nn.Conv2D, paddle.nn.Conv3D)):
        owner._out_channels = int(owner.weight.shape[0])  # noqa: SLF001
        owner._in_channels = int(owner.weight.shape[1]) * int(owner._groups)  # noqa: SLF001


def cut_parameter(model: Any, path: str, keep: dict[int, np.ndarray]) -> None:
    """Keep, along each axis in ``keep``, the listed indices (in that order) of the parameter at ``path``."""
    owner_path, name = split_parameter_path(path)
    owner = get_sublayer(model, owner_path)
    value = owner._parameters[name].numpy()  # noqa: SLF001
    for axis, indices in keep.items():
        value = np.take(value, np.asarray(indices, dtype=np.int64), axis=axis)
    replace_parameter(owner, name, value)


def cut_linear(model: Any, path: str, *, inputs: np.ndarray | None = None, outputs: np.ndarray | None = None) -> None:
    """Keep the listed input rows and/or output columns of the ``paddle.nn.Linear`` at ``path`` (bias follows outputs).

    Paddle's ``Linear`` stores its weight as ``[in_features, out_features]``.
    """
    weight_keep: dict[int, np.ndarray] = {}
    if inputs is not None:
        weight_keep[0] = inputs
    if outputs is not None:
        weight_keep[1] = outputs
    if weight_keep:
        cut_parameter(model, join(path, "weight"), weight_keep)
    linear = get_sublayer(model, path)
    if outputs is not None and linear.bias is not None:
        cut_parameter(model, join(path, "bias"), {0: outputs})


def cut_layer_norm(model: Any, path: str, channels: np.ndarray) -> None:
    """Keep the listed channels of the ``paddle.nn.LayerNorm`` at ``path`` (its weight and bias, if any)."""
    norm = get_sublayer(model, path)
    for name in ("weight", "bias"):
        if getattr(norm, name, None) is not None:
            cut_parameter(model, join(path, name), {0: channels})
    norm._normalized_shape = [int(len(channels))]  # noqa: SLF001  (also when it has no affine parameters)


def parameter_count(model: Any) -> int:
    """Number of scalars in all parameters of ``model``."""
    return int(sum(int(np.prod(p.shape)) for p in model.parameters()))
