"""Exact hypervolume of a set of points, written here in plain numpy (Optuna's ``compute_hypervolume`` is private).

The hypervolume of a point set (every objective minimized) is the volume of the region that the points
dominate and that is bounded by a reference point: the larger, the better the front. devicefit uses it to
show how a search progressed (the report's hypervolume history).

Algorithm: a sweep for two objectives (sort by the first, add one rectangle per point that improves the
second), and slicing along the last objective for more (the volume is the sum over slabs of the
hypervolume, one dimension lower, of the points already below the slab). Exact, ``O(n log n)`` in 2-D and
``O(n^2 log n)`` in 3-D, which is plenty for the few hundred trials of a search.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from devicefit.search._pareto import pareto_front_mask


def hypervolume(points: np.ndarray, reference: Sequence[float] | np.ndarray) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (every objective minimized).

    Points that do not strictly dominate the reference point in every objective add nothing and are
    ignored, so the result is 0.0 for an empty set.

    Args:
        points: ``[n_points, n_objectives]``.
        reference: ``[n_objectives]``: the worst corner of the measured box.

    Returns:
        The hypervolume, in the product of the objectives' units.

    Raises:
        ValueError: Shapes disagree, or values are not finite.
    """
    values = np.asarray(points, dtype=float)
    ref = np.asarray(reference, dtype=float)
    if ref.ndim != 1 or ref.size < 1:
        raise ValueError(f"reference must be a 1-D point, got shape {ref.shape}")
    if values.size == 0:
        return 0.0
    if values.ndim != 2 or values.shape[1] != ref.size:
        raise ValueError(f"points must be [n, {ref.size}], got shape {values.shape}")
    if not (np.all(np.isfinite(values)) and np.all(np.isfinite(ref))):
        raise ValueError("points and reference must be finite")
    inside = values[np.all(values < ref, axis=1)]
    if inside.shape[0] > 1:
        inside = inside[pareto_front_mask(inside)]  # dominated points add no volume
    return _hypervolume(inside, ref)


def _hypervolume(values: np.ndarray, ref: np.ndarray) -> float:
    if values.shape[0] == 0:
        return 0.0
    if ref.size == 1:
        return float(ref[0] - values[:, 0].min())
    if ref.size == 2:
        return _hypervolume_2d(values, ref)
    order = np.argsort(values[:, -1], kind="stable")
    ordered = values[order]
    total = 0.0
    for index in range(ordered.shape[0]):
        top = ordered[index + 1, -1] if index + 1 < ordered.shape[0] else ref[-1]
        height = top - ordered[index, -1]
        if height > 0:
            total += height * _hypervolume(ordered[: index + 1, :-1], ref[:-1])
    return float(total)


def _hypervolume_2d(values: np.ndarray, ref: np.ndarray) -> float:
    order = np.lexsort((values[:, 1], values[:, 0]))  # by the first objective, ties by the second
    best_second = ref[1]
    area = 0.0
    for x, y in values[order]:
        if y < best_second:
            area += (ref[0] - x) * (best_second - y)
            best_second = y
    return float(area)


def normalization_box(values: np.ndarray, *, margin: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """The box a hypervolume history is measured in: the best value seen of each objective, and a reference
    ``margin`` (a fraction of the range) beyond the worst one.

    Args:
        values: ``[n_points, n_objectives]``, every objective minimized.
        margin: How far beyond the worst value the reference lies, as a fraction of the range (of the
            magnitude, or 1, when all values are equal).

    Returns:
        ``(ideal, reference)``.
    """
    values = np.asarray(values, dtype=float)
    low, high = values.min(axis=0), values.max(axis=0)
    span = high - low
    fallback = np.where(np.abs(high) > 0, np.abs(high), 1.0)
    span = np.where(span > 0, span, fallback)
    return low, high + margin * span


def normalized_history(values: np.ndarray, *, margin: float = 0.1) -> np.ndarray:
    """Hypervolume after each point in turn, as a share of the normalization box (0..1).

    Each objective is mapped to ``[0, 1]`` by :func:`normalization_box` (0 = best value seen, 1 = the
    reference), so objectives in different units weigh alike and the figure reads as "the share of the box
    the front dominates".

    Args:
        values: ``[n_points, n_objectives]`` in the order the points were found, every objective minimized.
        margin: See :func:`normalization_box`.

    Returns:
        ``[n_points]``: entry ``i`` is the hypervolume of points ``0..i``; non-decreasing.
    """
    values = np.asarray(values, dtype=float)
    if values.shape[0] == 0:
        return np.zeros(0)
    ideal, reference = normalization_box(values, margin=margin)
    scaled = (values - ideal) / (reference - ideal)
    unit = np.ones(values.shape[1])
    history = np.zeros(values.shape[0])
    front = scaled[:0]
    current = 0.0
    for index, point in enumerate(scaled):
        dominated = front.shape[0] and np.any(np.all(front <= point, axis=1))
        if not dominated:  # only a point that is not dominated can add volume
            front = np.vstack([front, point])
            front = front[pareto_front_mask(front)]
            current = hypervolume(front, unit)
        history[index] = current
    return history
