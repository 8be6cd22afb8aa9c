from __future__ import annotations

import numpy as np

from devicefit.search._pareto import pareto_front_mask, to_minimization


def brute_force_front(values: np.ndarray) -> np.ndarray:
    n = len(values)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        for j in range(n):
            if all(values[j] <= values[i]) and any(values[j] < values[i]):
                keep[i] = False
    return keep


def test_front_of_a_small_known_set() -> None:
    values = np.array([[1.0, 5.0], [2.0, 2.0], [3.0, 3.0], [5.0, 1.0], [2.0, 2.0]])
    assert pareto_front_mask(values).tolist() == [True, True, False, True, True]


def test_front_matches_brute_force_on_random_points() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        values = rng.integers(0, 6, size=(25, 3)).astype(float)
        assert np.array_equal(pareto_front_mask(values), brute_force_front(values))


def test_maximized_columns_are_flipped() -> None:
    values = np.array([[0.9, 2.0], [0.8, 1.0], [0.7, 3.0]])
    minimized = to_minimization(values, [True, False])
    assert pareto_front_mask(minimized).tolist() == [True, True, False]
