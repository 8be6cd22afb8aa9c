"""Samplers by name, with the settings a hands-off run picks for its budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

SAMPLERS: tuple[str, ...] = ("nsga2", "surrogate", "tpe", "gp", "random")
DEFAULT_SAMPLER = "surrogate"
#: Completed trials before the surrogate sampler's Gaussian processes take over (warm-start points count).
SURROGATE_STARTUP = 6


class UnknownSamplerError(ValueError):
    """No sampler has that name."""


def nsga2_population(trials: int) -> int:
    """NSGA-II population for a run of ``trials``: a third of them, between 4 and 50.

    Optuna's default (50) would make a 12-trial run one random generation.
    """
    return max(4, min(50, trials // 3))


def warm_start_for(name: str, starts: Sequence[T]) -> list[T]:
    """The warm-start points (the space's, most informative first) that a run with sampler ``name`` enqueues.

    ``surrogate`` takes the first half, and at least its :data:`SURROGATE_STARTUP` trials (where one precision is
    searched, that is the whole start): the teacher and the shallow half of the depth and precision grid. Its
    optimism where it is uncertain explores the rest, and each grid point it does not need is a trial spent
    where the front can still move. Replayed on the ``bench/search_efficiency.py`` cache,
    the whole 15-point grid took it to 95% of the reference in 24-26 trials, the first 7 points in 14-25.
    Every other sampler takes them all: they have no model to cover the range with.
    """
    if name == "surrogate":
        return list(starts[: max(SURROGATE_STARTUP, len(starts) // 2)])
    return list(starts)


def startup_trials(trials: int) -> int:
    """Random start-up trials of the model-based samplers (TPE, GP): a quarter of the run, 4 to 10."""
    return max(4, min(10, trials // 4))


def describe_sampler(name: str, *, trials: int, seed: int) -> str:
    """One line for the banner."""
    if name == "nsga2":
        return f"NSGA-II, population {nsga2_population(trials)}, seed {seed}"
    if name == "surrogate":
        return f"surrogate (Gaussian processes, optimistic hypervolume improvement over a pool), seed {seed}"
    if name == "tpe":
        return f"multi-objective TPE, {startup_trials(trials)} random start-up trials, seed {seed}"
    if name == "gp":
        return f"Gaussian process (logEHVI), {startup_trials(trials)} random start-up trials, seed {seed}"
    return f"random, seed {seed}"


def make_sampler(name: str, *, seed: int, trials: int, encoder: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """Build the Optuna sampler called ``name`` (one of :data:`SAMPLERS`), seeded.

    Budgets reach the samplers as constraints set on each trial (``Trial.set_constraint``), which
    NSGA-II, TPE and GP read; random sampling ignores them.

    Args:
        name: ``surrogate`` (default), ``nsga2``, ``tpe``, ``gp`` or ``random``.
        seed: Sampler seed.
        trials: The run's trial budget (sets population and start-up sizes).
        encoder: Parameters -> feature vector, for ``surrogate`` (the search space's encoding); ``None``: a
            generic one.

    Raises:
        UnknownSamplerError: ``name`` is not one of :data:`SAMPLERS`.
    """
    import optuna

    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=nsga2_population(trials))
    if name == "surrogate":
        from devicefit.search._surrogate import SurrogateSampler

        return SurrogateSampler(seed=seed, encoder=encoder, startup_trials=SURROGATE_STARTUP)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(trials), multivariate=True)
    if name == "gp":
        try:
            import torch  # noqa: F401
        except ImportError:
            raise UnknownSamplerError(
                "the gp sampler needs torch: pip install 'devicefit[gp]' (torch 2.13.0, CPU build)"
            ) from None
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials(trials))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UnknownSamplerError(f"unknown sampler '{name}' (known: {', '.join(SAMPLERS)})")
