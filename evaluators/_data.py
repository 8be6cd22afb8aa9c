"""Task data: fixed train/validation/test splits of numpy arrays, checked before any training starts."""

from __future__ import annotations

import dataclasses

import numpy as np


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
        test: Used only to report the final models' accuracy; never for a choice.
        num_classes: Number of classes; labels are in ``[0, num_classes)``.
    """

    train: Split
    val: Split
    test: Split
    num_classes: int

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise DataError(f"num_classes must be >= 2, got {self.num_classes}")
        arity = None
        for name in ("train", "val", "test"):
            split: Split = getattr(self, name)
            if len(split) == 0:
                raise DataError(f"the {name} split is empty")
            if split.labels.ndim != 1 or not np.issubdtype(split.labels.dtype, np.integer):
                raise DataError(f"{name} labels must be a 1-D integer array, got {split.labels.dtype} {split.labels.shape}")
            low, high = int(split.labels.min()), int(split.labels.max())
            if low < 0 or high >= self.num_classes:
                raise DataError(f"{name} labels must be in [0, {self.num_classes}), found {low}..{high}")
            if arity is not None and len(split.inputs) != arity:
                raise DataError(f"{name} has {len(split.inputs)} input arrays, train has {arity}")
            arity = len(split.inputs)
            for index, array in enumerate(split.inputs):
                if array.shape[0] != len(split):
                    raise DataError(
                        f"{name} input {index} has {array.shape[0]} samples but {len(split)} labels"
                    )
