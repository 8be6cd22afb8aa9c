"""devicefit's own exact hypervolume: hand-computed cases, and Optuna's private implementation as an oracle."""

from __future__ import annotations

import numpy as np
import pytest
from optuna._hypervolume import compute_hypervolume  # private: used here only to check ours

from devicefit.search._hypervolume import hypervolume, normalization_box, normalized_history


def test_two_dimensional_staircase_by_hand() -> None:
    points = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    assert hypervolume(points, [4.0, 4.0]) == pytest.approx(3 + 2 + 1)


def test_dominated_and_outside_points_add_nothing() -> None:
    front = np.array([[1.0, 3.0], [3.0, 1.0]])
    base = hypervolume(front, [4.0, 4.0])
    assert base == pytest.approx(3 * 1 + 1 * 2)
    with_extra = np.vstack([front, [[3.5, 3.5], [5.0, 0.0], [1.0, 3.0]]])  # dominated, outside, duplicate
    assert hypervolume(with_extra, [4.0, 4.0]) == pytest.approx(base)
    assert hypervolume(np.zeros((0, 2)), [1.0, 1.0]) == 0.0


def test_three_dimensional_by_hand() -> None:
    assert hypervolume(np.array([[0.0, 0.0, 0.0]]), [1.0, 2.0, 3.0]) == pytest.approx(6.0)
    # Boxes [0,2]x[0,2]x[1,2] (volume 4) and [1,2]x[1,2]x[0,2] (volume 2) overlap in a unit cube: 4 + 2 - 1.
    two = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    assert hypervolume(two, [2.0, 2.0, 2.0]) == pytest.approx(5.0)


@pytest.mark.parametrize("dimensions", [2, 3, 4])
def test_matches_optunas_implementation_on_random_sets(dimensions: int) -> None:
    rng = np.random.default_rng(dimensions)
    for _ in range(20):
        points = rng.uniform(0.0, 1.0, size=(int(rng.integers(1, 25)), dimensions))
        reference = np.full(dimensions, 1.1)
        assert hypervolume(points, reference) == pytest.approx(compute_hypervolume(points, reference), rel=1e-9)


def test_shapes_and_values_are_checked() -> None:
    with pytest.raises(ValueError, match="must be \\[n, 2\\]"):
        hypervolume(np.zeros((3, 3)), [1.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        hypervolume(np.array([[np.nan, 0.0]]), [1.0, 1.0])


def test_normalized_history_is_a_non_decreasing_share_of_the_box() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(30, 3))
    history = normalized_history(values)
    assert history.shape == (30,)
    assert np.all(np.diff(history) >= -1e-12)
    assert 0.0 < history[-1] < 1.0
    ideal, reference = normalization_box(values)
    scaled = (values - ideal) / (reference - ideal)
    assert history[-1] == pytest.approx(compute_hypervolume(scaled, np.ones(3)))
    assert history[0] == pytest.approx(compute_hypervolume(scaled[:1], np.ones(3)))
