from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from devicefit.search._ladder import (
    kendall_tau,
    ladder_margin,
    promotion_mask,
    should_promote,
    spearman_rho,
)

ACC_LAT = {"maximize": (True, False)}


@pytest.mark.parametrize("seed", range(4))
def test_rank_correlations_match_scipy_with_and_without_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, size=30).astype(float)  # many ties
    y = x + rng.normal(scale=2.0, size=30)
    y[:5] = y[5]  # ties in y too
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)
    assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)


def test_rank_correlation_extremes() -> None:
    x = [1.0, 2.0, 3.0, 4.0]
    assert kendall_tau(x, [10, 20, 30, 40]) == 1.0 and spearman_rho(x, [1, 4, 9, 16]) == 1.0
    assert kendall_tau(x, [4, 3, 2, 1]) == -1.0
    assert math.isnan(kendall_tau(x, [1, 1, 1, 1]))
    with pytest.raises(ValueError):
        kendall_tau([1.0], [2.0])
    with pytest.raises(ValueError):
        spearman_rho([1.0, float("nan")], [1.0, 2.0])


def test_margin_is_zero_for_a_perfect_linear_proxy_and_grows_with_noise() -> None:
    rng = np.random.default_rng(0)
    high = rng.uniform(0.6, 0.97, size=40)
    assert ladder_margin(2.0 * high - 0.5, high) == pytest.approx(0.0, abs=1e-9)
    small = ladder_margin(high + rng.normal(scale=0.01, size=40), high)
    large = ladder_margin(high + rng.normal(scale=0.05, size=40), high)
    assert 0 < small < large


def test_margin_is_in_the_cheap_rungs_units() -> None:
    rng = np.random.default_rng(1)
    high = rng.uniform(0.6, 0.97, size=40)
    low = high + rng.normal(scale=0.02, size=40)
    assert ladder_margin(10 * low, high) == pytest.approx(10 * ladder_margin(low, high))


def test_a_proxy_that_predicts_nothing_promotes_everything() -> None:
    assert ladder_margin([0.5, 0.5, 0.5], [0.7, 0.8, 0.9]) == math.inf
    assert ladder_margin([3.0, 2.0, 1.0], [0.7, 0.8, 0.9]) == math.inf
    assert should_promote([0.1, 9.0], [[0.9, 1.0]], margins=[math.inf, 0.0], **ACC_LAT)


def test_promotion_without_margin_is_plain_non_dominance() -> None:
    front = [[0.90, 2.0], [0.80, 1.0]]
    assert should_promote([0.95, 3.0], front, margins=[0, 0], **ACC_LAT)  # most accurate
    assert should_promote([0.70, 0.5], front, margins=[0, 0], **ACC_LAT)  # fastest
    assert not should_promote([0.85, 2.5], front, margins=[0, 0], **ACC_LAT)  # dominated by the first
    assert should_promote([0.90, 2.0], front, margins=[0, 0], **ACC_LAT)  # equal to a front point
    assert should_promote([0.5, 9.0], [], margins=[0, 0], **ACC_LAT)  # nothing to compare with


def test_the_margin_saves_candidates_that_are_dominated_by_less_than_the_error() -> None:
    front = [[0.90, 2.0]]
    assert not should_promote([0.88, 2.5], front, margins=[0.01, 0.0], **ACC_LAT)
    assert should_promote([0.88, 2.5], front, margins=[0.03, 0.0], **ACC_LAT)
    # A latency margin counts the same way.
    assert should_promote([0.89, 2.1], front, margins=[0.0, 0.2], **ACC_LAT)
    assert not should_promote([0.89, 2.1], front, margins=[0.0, 0.05], **ACC_LAT)


def test_promotion_mask_over_a_whole_rung() -> None:
    values = np.array([[0.95, 3.0], [0.90, 2.0], [0.85, 2.5], [0.60, 0.5], [0.88, 2.05]])
    np.testing.assert_array_equal(
        promotion_mask(values, margins=[0, 0], **ACC_LAT), [True, True, False, True, False]
    )
    np.testing.assert_array_equal(
        promotion_mask(values, margins=[0.03, 0.1], **ACC_LAT), [True, True, False, True, True]
    )


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="margins must be >= 0"):
        should_promote([0.9, 1.0], [[0.8, 2.0]], margins=[-0.1, 0], **ACC_LAT)
    with pytest.raises(ValueError, match="one entry per objective"):
        should_promote([0.9, 1.0, 5.0], [[0.8, 2.0, 1.0]], margins=[0, 0], **ACC_LAT)
    with pytest.raises(ValueError, match="quantile"):
        ladder_margin([1, 2], [1, 2], quantile=0)
