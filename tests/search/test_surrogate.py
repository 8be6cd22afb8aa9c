"""The surrogate sampler: its Gaussian process, its encoding, and what it proposes in a study."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from devicefit.search._hypervolume import hypervolume
from devicefit.search._surrogate import GaussianProcess, SurrogateSampler, generic_encoding

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_the_gaussian_process_interpolates_and_knows_where_it_has_not_looked() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(30, 2))
    y = np.sin(3 * x[:, 0]) + x[:, 1] ** 2
    gp = GaussianProcess(x, y)
    near = rng.uniform(0, 1, size=(20, 2))
    mean, deviation = gp.predict(near)
    assert np.max(np.abs(mean - (np.sin(3 * near[:, 0]) + near[:, 1] ** 2))) < 0.1
    _, far = gp.predict(np.array([[4.0, 4.0]]))
    assert far[0] > 5 * deviation.mean()
    with pytest.raises(ValueError):
        GaussianProcess(x, y[:3])


def test_the_generic_encoding_scales_numbers_and_spreads_categories() -> None:
    space = {"b": IntDistribution(1, 5), "a": CategoricalDistribution(["x", "y", "z"]),
             "c": FloatDistribution(1.0, 100.0, log=True)}
    vector = generic_encoding({"a": "y", "b": 4, "c": 10.0}, space)
    assert vector.tolist() == pytest.approx([0.0, 1.0, 0.0, 0.75, 0.5])


def _toy(trial: optuna.Trial) -> tuple[list[float], float]:
    """Two objectives on a small discrete space: a front along x, a category that is better as 'a'."""
    x = trial.suggest_int("x", 0, 20)
    y = trial.suggest_int("y", 0, 20)
    c = trial.suggest_categorical("c", ["a", "b", "c"])
    quality = x / 20 - 0.5 * ((y - 7) / 20) ** 2 - (0.0 if c == "a" else 0.3)
    cost = (x / 20) ** 2 + 0.1
    return [quality, cost], x / 20 - 0.6  # constraint: x <= 12, which cuts the front's best-quality end off


def _run(sampler: optuna.samplers.BaseSampler, trials: int, *, constrained: bool = False) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    for _ in range(trials):
        trial = study.ask()
        values, violation = _toy(trial)
        if constrained:
            trial.set_constraint("x_at_most_12", violation)
        study.tell(trial, values)
    return study


def _hypervolume(study: optuna.Study) -> float:
    points = np.array([[-t.values[0], t.values[1]] for t in study.trials])
    return hypervolume(points, [0.0, 1.2])


@pytest.mark.parametrize("seed", [0, 1])
def test_it_finds_more_of_the_front_than_random_search_in_the_same_trials(seed: int) -> None:
    surrogate = _run(SurrogateSampler(seed=seed), 24)
    random = _run(optuna.samplers.RandomSampler(seed=seed), 24)
    assert _hypervolume(surrogate) > 1.05 * _hypervolume(random)


def test_it_never_proposes_a_candidate_twice_and_is_reproducible() -> None:
    first = _run(SurrogateSampler(seed=3, pool=128), 30)
    proposals = [tuple(sorted(t.params.items())) for t in first.trials]
    assert len(set(proposals)) == len(proposals)
    again = [tuple(sorted(t.params.items())) for t in _run(SurrogateSampler(seed=3, pool=128), 30).trials]
    assert again == proposals


def test_it_keeps_to_the_budget_once_it_has_learned_it() -> None:
    study = _run(SurrogateSampler(seed=0, startup_trials=8, pool=128), 30, constrained=True)
    later = [t for t in study.trials if t.number >= 12]
    met = sum(t.system_attrs["constraints:x_at_most_12"] <= 0 for t in later)
    assert met >= 0.9 * len(later)  # random draws meet it 13 times in 21


def test_an_encoder_that_merges_parameters_counts_them_as_one_candidate() -> None:
    """With the space's encoding, parameters that make the same candidate are one proposal, not two."""
    def encoder(params: dict) -> np.ndarray:  # y only matters when c is 'a' (as a dropped block's width)
        return np.array([params["x"] / 20, params["y"] / 20 if params["c"] == "a" else 0.0, params["c"] == "a"])

    study = _run(SurrogateSampler(seed=0, encoder=encoder, startup_trials=4, pool=128), 40)
    seen = [tuple(encoder(t.params)) for t in study.trials[4:]]  # the random start-up may repeat itself
    assert len(set(seen)) == len(seen)


def test_enqueued_trials_are_left_as_they_are() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=SurrogateSampler(seed=0, startup_trials=2))
    for x in (1, 2, 3):
        study.enqueue_trial({"x": x, "y": 7, "c": "b"})
    for _ in range(3):
        trial = study.ask()
        values, _ = _toy(trial)
        study.tell(trial, values)
    assert [t.params for t in study.trials] == [{"x": x, "y": 7, "c": "b"} for x in (1, 2, 3)]


def test_while_nothing_meets_the_budget_it_heads_for_the_least_violation() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=SurrogateSampler(seed=0, pool=128))
    for x in (4, 6, 8, 10, 12, 20):  # the start-up: every one over the budget (x <= 3), the least at 4
        study.enqueue_trial({"x": x, "y": 7, "c": "a"})
    for _ in range(7):
        trial = study.ask()
        values, _ = _toy(trial)
        trial.set_constraint("x_at_most_3", trial.params["x"] / 20 - 0.15)
        study.tell(trial, values)
    assert study.trials[6].params["x"] <= 3  # the most uncertain proposal instead would have been x = 12
