"""Pareto math as pure numpy functions, testable without a study."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def to_minimization(values: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Flip the sign of maximized columns so that every column is minimized."""
    values = np.asarray(values, dtype=float)
    signs = np.where(np.asarray(maximize, dtype=bool), -1.0, 1.0)
    return values * signs


def pareto_front_mask(values: np.ndarray) -> np.ndarray:
    """Which rows are not dominated (every column minimized).

    Row ``a`` dominates ``b`` when it is no worse in every column and strictly better in one. Identical
    rows do not dominate each other, so duplicates of a front point are all on the front.

    Args:
        values: ``[n_points, n_objectives]``.

    Returns:
        Boolean mask of length ``n_points``.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D, got shape {values.shape}")
    mask = np.ones(values.shape[0], dtype=bool)
    for start in range(0, values.shape[0], 1024):  # [all, 1024, objectives] at a time: memory stays bounded
        block = values[None, start:start + 1024, :]
        dominated = np.all(values[:, None, :] <= block, axis=2) & np.any(values[:, None, :] < block, axis=2)
        mask[start:start + 1024] = ~np.any(dominated, axis=0)
    return mask
