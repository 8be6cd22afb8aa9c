"""Task data: fixed train/validation/test splits of numpy arrays, checked before any training starts.

Every check raises :class:`DataError` with one line that names the array (``val input 0 'images'``,
``test labels``) and says what was expected. :class:`TaskData` checks itself on construction (splits
non-empty, labels integer and in range, lengths consistent); :func:`check_input_spec` and
:func:`check_model_outputs` check it against the model, and :func:`check_task_data` runs both. None of this
imports Paddle: an input spec is read through its ``shape``, ``dtype`` and ``name`` attributes.

How to build a :class:`TaskData` from arrays, a ``paddle.io.Dataset`` or a CSV/NPZ file is in
:mod:`devicefit.evaluators._sources`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

SPLIT_NAMES = ("train", "val", "test")


class DataError(ValueError):
    """The data cannot be used: the message names the array and what was expected."""


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: the model's inputs (one array per ``forward`` argument, batch first) and integer labels."""

    inputs: tuple[np.ndarray, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, indices: np.ndarray | slice) -> Split:
        """The samples at ``indices``."""
        return Split(tuple(x[indices] for x in self.inputs), self.labels[indices])


@dataclasses.dataclass(frozen=True)
class TaskData:
    """A classification task's splits. The test split is only for final, held-out evaluation.

    Attributes:
        train: Used to fine-tune students and to measure importance.
        val: Used to score candidates during the search.
        test: Used only by the last rung of the accuracy ladder, to report the final models' accuracy;
            never for a choice.
        num_classes: Number of classes; labels are in ``[0, num_classes)``.

    Raises:
        DataError: On construction, when a split is empty, labels are not 1-D integers in range, a split's
            input arrays disagree in number of samples with its labels, the splits disagree in the number of
            input arrays, or a float input holds NaN or infinity.
    """

    train: Split
    val: Split
    test: Split
    num_classes: int

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise DataError(f"num_classes must be >= 2, got {self.num_classes}")
        arity = None
        for name in SPLIT_NAMES:
            split: Split = getattr(self, name)
            labels = np.asarray(split.labels)
            if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
                raise DataError(f"{name} labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
            if len(split) == 0:
                raise DataError(f"the {name} split is empty (0 labels)")
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= self.num_classes:
                raise DataError(f"{name} labels must be in [0, {self.num_classes}), found {low}..{high}")
            if not split.inputs:
                raise DataError(f"{name} has no input arrays")
            if arity is not None and len(split.inputs) != arity:
                raise DataError(f"{name} has {len(split.inputs)} input arrays, train has {arity}")
            arity = len(split.inputs)
            for index, array in enumerate(split.inputs):
                if not isinstance(array, np.ndarray) or array.ndim == 0:
                    raise DataError(f"{name} input {index} must be a numpy array with a batch axis")
                if array.shape[0] != len(split):
                    raise DataError(f"{name} input {index} has {array.shape[0]} samples but {len(split)} labels")
                if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
                    raise DataError(f"{name} input {index} holds NaN or infinite values")

    def splits(self) -> dict[str, Split]:
        """The three splits by name."""
        return {name: getattr(self, name) for name in SPLIT_NAMES}


def _dtype_name(dtype: Any) -> str:
    """``float32`` for ``paddle.float32``, ``'float32'`` or ``np.float32``."""
    text = str(dtype)
    if text.startswith("paddle."):
        return text.split(".", 1)[1]
    try:
        return np.dtype(dtype).name
    except TypeError:
        return text


def _describe_shape(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("N" if i == 0 else ("*" if d is None or d < 0 else str(d)) for i, d in enumerate(shape)) + "]"


def check_input_spec(data: TaskData, input_spec: Sequence[Any]) -> None:
    """Check every input array of every split against the model's input spec.

    Args:
        data: The task's splits.
        input_spec: One entry per ``forward`` argument, each with ``shape`` (the first axis is the batch;
            ``None`` or ``-1`` is any size), ``dtype`` and optionally ``name`` (``paddle.static.InputSpec``
            fits).

    Raises:
        DataError: The number of inputs, a rank, a fixed axis size or a dtype differs; the message names the
            split, the input and the expected shape or dtype.
    """
    for split_name, split in data.splits().items():
        if len(split.inputs) != len(input_spec):
            raise DataError(
                f"{split_name} has {len(split.inputs)} input arrays; the model's input spec has {len(input_spec)}"
            )
        for index, (array, spec) in enumerate(zip(split.inputs, input_spec)):
            name = getattr(spec, "name", None)
            label = f"{split_name} input {index}" + (f" '{name}'" if name else "")
            shape = list(spec.shape)
            expected = _describe_shape(shape)
            if array.ndim != len(shape):
                raise DataError(f"{label} has shape {tuple(array.shape)}; the model's input spec expects {expected}")
            for axis, size in enumerate(shape[1:], start=1):
                if size is not None and size >= 0 and array.shape[axis] != size:
                    raise DataError(
                        f"{label} has shape {tuple(array.shape)}; the model's input spec expects {expected}"
                    )
            wanted = _dtype_name(spec.dtype)
            if array.dtype.name != wanted:
                raise DataError(f"{label} has dtype {array.dtype.name}; the model's input spec expects {wanted}")


def check_model_outputs(data: TaskData, num_outputs: int) -> None:
    """Check that the model's logits cover the task's classes.

    Args:
        data: The task's splits.
        num_outputs: Width of the model's logits (its number of classes).

    Raises:
        DataError: ``num_classes`` differs from the model's, naming the largest label found.
    """
    if num_outputs != data.num_classes:
        largest = max(int(np.max(split.labels)) for split in data.splits().values())
        raise DataError(
            f"labels: the task has num_classes {data.num_classes} (largest label {largest}) but the model "
            f"outputs {num_outputs} logits"
        )


def check_task_data(data: TaskData, input_spec: Sequence[Any], model: Any) -> None:
    """Check ``data`` against the model before any training starts: input spec, then number of classes.

    Runs ``model`` once, in eval mode and without gradients, on the first two training samples.

    Raises:
        DataError: See :func:`check_input_spec` and :func:`check_model_outputs`; also when the model's
            output is not ``[batch, classes]``.
    """
    check_input_spec(data, input_spec)
    from devicefit.spaces._paddle import import_paddle

    paddle = import_paddle()
    sample = data.train.take(slice(0, 2))
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad():
            logits = model(*[paddle.to_tensor(x) for x in sample.inputs])
    finally:
        if was_training:
            model.train()
    shape = tuple(logits.shape)
    if len(shape) != 2:
        raise DataError(f"the model's output has shape {shape}; a classifier's logits are [batch, classes]")
    check_model_outputs(data, int(shape[1]))
