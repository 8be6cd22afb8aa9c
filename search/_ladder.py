"""The accuracy ladder's arithmetic as pure numpy functions: rank agreement, measured error, promotion.

The search evaluates every candidate on a cheap rung and promotes only those that could still be
Pareto-optimal to the expensive ones. Whether a candidate "could still be" optimal depends on how wrong the
cheap rung can be, which is measured, not guessed: ``bench/proxy_fidelity.py`` scores candidates on every
rung and on the last, and :func:`ladder_margin` turns the disagreement into an allowance in the cheap rung's
own units. :func:`should_promote` applies it. Nothing here imports Paddle or Optuna.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Measured by bench/proxy_fidelity.py for the default rung (evaluators._accuracy.DEFAULT_DISTILLATION, one epoch
# of logit distillation) on 32 digits-ViT candidates: ladder_margin(quantile=0.9) of its validation accuracy
# against the final test accuracy, in accuracy units (fraction). Refresh it when the default rung changes, and
# prefer a margin measured on the user's own task when the run has one.
DEFAULT_ACCURACY_MARGIN = 0.107


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) of ``values``; ties share the mean of their positions."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=float)
    sorted_values = values[order]
    start = 0
    while start < len(values):
        stop = start + 1
        while stop < len(values) and sorted_values[stop] == sorted_values[start]:
            stop += 1
        ranks[order[start:stop]] = (start + stop + 1) / 2.0
        start = stop
    return ranks


def _paired(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"expected two 1-D sequences of the same length, got shapes {a.shape} and {b.shape}")
    if a.size < 2:
        raise ValueError("rank agreement needs at least two points")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("rank agreement needs finite values")
    return a, b


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b between two scorings of the same items, in [-1, 1] (ties accounted for).

    Returns NaN when either scoring is constant.
    """
    a, b = _paired(x, y)
    i, j = np.triu_indices(a.size, k=1)
    sign_a, sign_b = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    concordance = float(np.sum(sign_a * sign_b))
    pairs_a, pairs_b = float(np.sum(sign_a != 0)), float(np.sum(sign_b != 0))
    if pairs_a == 0 or pairs_b == 0:
        return float("nan")
    return concordance / float(np.sqrt(pairs_a * pairs_b))


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's on average ranks), in [-1, 1]; NaN when a scoring is constant."""
    a, b = _paired(x, y)
    ranks_a, ranks_b = _ranks(a) - (a.size + 1) / 2.0, _ranks(b) - (b.size + 1) / 2.0
    denominator = float(np.sqrt(np.sum(ranks_a**2) * np.sum(ranks_b**2)))
    return float(np.sum(ranks_a * ranks_b)) / denominator if denominator else float("nan")


def ladder_margin(low: Sequence[float], high: Sequence[float], *, quantile: float = 0.9) -> float:
    """How far apart two candidates' cheap-rung scores can be while their final order is still uncertain.

    The cheap rung's score is mapped to the final rung's units by a least-squares line
    ``high ~ slope * low + intercept``; each candidate's residual is what the line gets wrong. Comparing two
    candidates is wrong by the difference of their residuals, so the margin is the ``quantile`` of
    ``|r_i - r_j|`` over all pairs, converted back to the cheap rung's units (divided by ``|slope|``).
    A cheap rung that does not predict at all (slope 0) gets an infinite margin: promote everything.

    Args:
        low: Each candidate's score on the cheap rung (higher is better).
        high: The same candidates' figures on the final rung.
        quantile: Share of candidate pairs whose error the margin covers, in (0, 1].

    Returns:
        The margin, in the units of ``low`` (>= 0).
    """
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    a, b = _paired(low, high)
    if np.ptp(a) == 0:
        return float("inf")
    slope, intercept = np.polyfit(a, b, 1)
    if slope <= 0:
        return float("inf")
    residuals = b - (slope * a + intercept)
    i, j = np.triu_indices(a.size, k=1)
    return float(np.quantile(np.abs(residuals[i] - residuals[j]), quantile) / slope)


def should_promote(
    values: Sequence[float],
    others: np.ndarray | Sequence[Sequence[float]],
    *,
    maximize: Sequence[bool],
    margins: Sequence[float],
) -> bool:
    """Whether a candidate could still be Pareto-optimal, allowing each objective its measured error.

    The candidate is given the benefit of the doubt: each objective is moved by its margin in the
    candidate's favour. It is promoted unless some other point still dominates it then (no worse in every
    objective and strictly better in one). With zero margins this is plain non-dominance; a point equal to
    the candidate does not block it.

    Args:
        values: The candidate's objective values, ``[n_objectives]``, on the rung being left.
        others: Objective values of the candidates to compare with, ``[n_points, n_objectives]``, measured on
            the same rung (the current front is enough; extra dominated points change nothing). May be empty.
        maximize: Per objective, whether larger is better.
        margins: Per objective, the allowance (>= 0, may be ``inf``), in that objective's units: e.g.
            :func:`ladder_margin` for accuracy, 0 or the measurement's spread for latency.

    Returns:
        True when the candidate should go on to the next rung.
    """
    candidate = np.asarray(values, dtype=float)
    points = np.asarray(others, dtype=float).reshape(-1, candidate.size)
    signs = np.where(np.asarray(maximize, dtype=bool), -1.0, 1.0)
    allowance = np.asarray(margins, dtype=float)
    if not (candidate.ndim == 1 and signs.shape == candidate.shape == allowance.shape):
        raise ValueError(
            f"values, maximize and margins need one entry per objective: {candidate.shape}, {signs.shape}, "
            f"{allowance.shape}"
        )
    if np.any(np.isnan(allowance)) or np.any(allowance < 0):
        raise ValueError(f"margins must be >= 0, got {list(allowance)}")
    optimistic = candidate * signs - allowance  # every column minimized, moved in the candidate's favour
    minimized = points * signs
    no_worse = np.all(minimized <= optimistic, axis=1)
    better = np.any(minimized < optimistic, axis=1)
    return not bool(np.any(no_worse & better))


def promotion_mask(
    values: np.ndarray | Sequence[Sequence[float]], *, maximize: Sequence[bool], margins: Sequence[float]
) -> np.ndarray:
    """:func:`should_promote` for every row of ``values`` against all the others (a whole rung at once)."""
    table = np.asarray(values, dtype=float)
    if table.ndim != 2:
        raise ValueError(f"values must be [n_points, n_objectives], got shape {table.shape}")
    return np.array(
        [should_promote(row, np.delete(table, i, axis=0), maximize=maximize, margins=margins) for i, row in enumerate(table)],
        dtype=bool,
    )
