"""A model-based multi-objective sampler for searches whose trials are expensive and few.

Each trial, after a few start-up trials, it:

1. fits one Gaussian process per objective (and one per budget constraint) to the study's completed trials,
   over an encoding of their parameters (the search space's own, which knows that the blocks a candidate drops
   have no widths, or a generic one);
2. draws a pool of proposals: uniform random ones, and mutations of the current front's members (one or two
   parameters redrawn or moved a step), leaving out every candidate already tried or being tried;
3. takes the proposal whose *optimistic* values (mean improved by ``beta`` standard deviations, for each
   objective) would add the most hypervolume to the front of the feasible trials, among those whose
   optimistic constraints are met. When no proposal's optimism adds anything, it takes the most uncertain.

Why: on a phone search, latency and size are smooth, almost deterministic functions of the architecture that a
surrogate learns from a dozen trials, and accuracy is smooth enough; so the sampler spends trials where the
front can still move instead of on the random and recombined draws of NSGA-II (``bench/search_efficiency.py``
measures both). The Gaussian processes are plain numpy (isotropic RBF kernel, length scale and noise picked by
marginal likelihood on a small grid), which keeps one proposal to well under a second at a few hundred trials.

The proposal for trial ``n`` depends only on the seed, ``n`` and the study's trials, so a resumed or distributed
study proposes the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.trial import FrozenTrial, TrialState

from devicefit.search._hypervolume import hypervolume
from devicefit.search._pareto import pareto_front_mask

Encoder = Callable[[dict[str, Any]], np.ndarray]

_LENGTH_SCALES = (0.25, 0.5, 0.8, 1.2, 2.0, 3.0)
_NOISES = (1e-4, 1e-3, 1e-2, 0.05, 0.2)


class GaussianProcess:
    """Gaussian-process regression with an isotropic RBF kernel on standardized targets.

    The length scale and the noise are chosen from small grids by the log marginal likelihood.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
            raise ValueError(f"x must be [n, d] and y [n] with n >= 1, got {x.shape} and {y.shape}")
        self._x = x
        self._mean = float(y.mean())
        self._scale = float(y.std()) or 1.0
        z = (y - self._mean) / self._scale
        distances = _squared_distances(x, x)
        best: tuple[float, float, float, np.ndarray, np.ndarray] | None = None
        for length in _LENGTH_SCALES:
            # One eigendecomposition per length scale serves every noise level: K + s I = Q (L + s) Q^T.
            eigenvalues, vectors = np.linalg.eigh(np.exp(-distances / (2.0 * length * length)))
            eigenvalues = np.clip(eigenvalues, 0.0, None)
            projected = vectors.T @ z
            for noise in _NOISES:
                shifted = eigenvalues + noise
                likelihood = -0.5 * float((projected ** 2 / shifted).sum()) - 0.5 * float(np.log(shifted).sum())
                if best is None or likelihood > best[0]:
                    best = (likelihood, length, noise, eigenvalues, vectors)
        assert best is not None
        _, self.length_scale, self.noise, eigenvalues, vectors = best
        self._vectors = vectors
        self._inverse = 1.0 / (eigenvalues + self.noise)
        self._alpha = vectors @ (self._inverse * (vectors.T @ z))

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation at the rows of ``x`` (in the targets' units)."""
        cross = np.exp(-_squared_distances(np.asarray(x, dtype=float), self._x) / (2.0 * self.length_scale ** 2))
        mean = cross @ self._alpha
        projected = cross @ self._vectors
        variance = np.clip(1.0 - (projected ** 2 * self._inverse).sum(axis=1), 1e-12, None)
        return mean * self._scale + self._mean, np.sqrt(variance) * self._scale


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.clip((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0, None)


def generic_encoding(params: dict[str, Any], space: dict[str, BaseDistribution]) -> np.ndarray:
    """Numbers scaled to [0, 1] over their range (log scale where the distribution is), categories one-hot."""
    parts: list[float] = []
    for name in sorted(space):
        distribution, value = space[name], params[name]
        if isinstance(distribution, CategoricalDistribution):
            parts.extend(1.0 if value == choice else 0.0 for choice in distribution.choices)
            continue
        low, high = float(distribution.low), float(distribution.high)  # type: ignore[attr-defined]
        if getattr(distribution, "log", False):
            low, high, value = math.log(low), math.log(high), math.log(value)
        parts.append(0.0 if high == low else (float(value) - low) / (high - low))
    return np.asarray(parts, dtype=float)


class SurrogateSampler(BaseSampler):
    """Gaussian-process surrogates and optimistic hypervolume improvement over a pool of proposals.

    Args:
        seed: Seed of the proposals (and of the random start-up and fallback draws).
        encoder: Parameters -> feature vector (the search space's encoding); ``None``: :func:`generic_encoding`.
        startup_trials: Completed trials before the surrogates are used (random draws, or a warm start, until then).
        pool: Uniform random proposals per trial (as many mutations of the front again, at most).
        beta: Optimism: standard deviations added to each objective's mean.
    """

    def __init__(self, *, seed: int | None = None, encoder: Encoder | None = None, startup_trials: int = 6,
                 pool: int = 512, beta: float = 1.0) -> None:
        self._seed = 0 if seed is None else int(seed)
        self._encoder = encoder
        self._startup = max(2, startup_trials)
        self._pool = max(1, pool)
        self._beta = beta
        self._random = RandomSampler(seed=seed)
        self._space = IntersectionSearchSpace()

    @property
    def encoder(self) -> Encoder | None:
        """The parameters' encoding it compares trials by (``None``: the generic one)."""
        return self._encoder

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self._space.calculate(study))

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space or "fixed_params" in trial.system_attrs:  # an enqueued trial draws nothing
            return {}
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        done = [t for t in trials if all(name in t.params for name in search_space)]
        if len(done) < self._startup:
            return {}
        rng = np.random.default_rng([self._seed, trial.number])
        return self.propose(study, done, search_space, rng)

    # -- the proposal -----------------------------------------------------------------------------------------

    def _encode(self, params: dict[str, Any], space: dict[str, BaseDistribution]) -> np.ndarray:
        if self._encoder is None:
            return generic_encoding(params, space)
        return np.asarray(self._encoder(params), dtype=float)

    def propose(self, study: optuna.Study, done: Sequence[FrozenTrial], space: dict[str, BaseDistribution],
                rng: np.random.Generator) -> dict[str, Any]:
        """The parameters of the next trial, from the completed trials ``done``."""
        signs = np.array([-1.0 if d == optuna.study.StudyDirection.MAXIMIZE else 1.0 for d in study.directions])
        x = np.array([self._encode(t.params, space) for t in done])
        y = np.array([t.values for t in done], dtype=float) * signs  # every objective minimized
        violations = _constraints(done)
        feasible = np.all(violations <= 0, axis=1) if violations.size else np.ones(len(done), dtype=bool)

        tried = {_fingerprint(v) for v in x}
        others = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.PRUNED, TrialState.FAIL))
        for other in others:  # being tried by another worker, or known not to build
            if all(name in other.params for name in space):
                tried.add(_fingerprint(self._encode(other.params, space)))
        front_rows = np.flatnonzero(feasible)[pareto_front_mask(y[feasible])] if feasible.any() else np.array([], int)
        front = [done[i].params for i in front_rows]
        proposals, features = self._pool_of(space, front, tried, rng)
        if not proposals:
            return {}  # the space is exhausted around here: independent random draws

        optimistic = np.empty((len(proposals), y.shape[1]))
        spread = np.zeros(len(proposals))
        for column in range(y.shape[1]):
            mean, deviation = GaussianProcess(x, y[:, column]).predict(features)
            scale = float(np.ptp(y[:, column])) or 1.0
            optimistic[:, column] = mean - self._beta * deviation
            spread += deviation / scale
        allowed = np.ones(len(proposals), dtype=bool)
        expected_violation = np.zeros(len(proposals))
        for column in range(violations.shape[1]):
            mean, deviation = GaussianProcess(x, violations[:, column]).predict(features)
            allowed &= mean - self._beta * deviation <= 0
            expected_violation += np.clip(mean, 0, None)

        if not feasible.any():  # nothing meets the budget yet (so there is one): head for the least violation
            return proposals[int(np.argmin(expected_violation))]

        points = y[front_rows]
        worst, best = y.max(axis=0), y.min(axis=0)
        reference = worst + 0.1 * np.where(worst > best, worst - best, np.abs(worst) + 1.0)
        base = hypervolume(points, reference)
        gain = np.zeros(len(proposals))
        for i in np.flatnonzero(allowed):
            point = optimistic[i]
            if np.any(point >= reference) or np.any(np.all(points <= point, axis=1)):
                continue
            gain[i] = hypervolume(np.vstack([points, point]), reference) - base
        if gain.max() > 0:
            return proposals[int(np.argmax(gain))]
        candidates = np.flatnonzero(allowed) if allowed.any() else np.arange(len(proposals))
        return proposals[int(candidates[np.argmax(spread[candidates])])]

    def _pool_of(self, space: dict[str, BaseDistribution], front: list[dict[str, Any]], tried: set[bytes],
                 rng: np.random.Generator) -> tuple[list[dict[str, Any]], np.ndarray]:
        """Distinct untried proposals (uniform draws, then mutations of the front) and their encodings."""
        drawn = [{name: _draw(d, rng) for name, d in space.items()} for _ in range(self._pool)]
        if front:
            per_member = max(1, self._pool // len(front))
            for params in front:
                drawn.extend(_mutate(params, space, rng) for _ in range(per_member))
        proposals: list[dict[str, Any]] = []
        features: list[np.ndarray] = []
        seen = set(tried)
        for params in drawn:
            vector = self._encode(params, space)
            key = _fingerprint(vector)
            if key in seen:
                continue
            seen.add(key)
            proposals.append(params)
            features.append(vector)
        return proposals, np.array(features)


def _fingerprint(vector: np.ndarray) -> bytes:
    return np.round(np.asarray(vector, dtype=float), 6).tobytes()


def _constraints(trials: Sequence[FrozenTrial]) -> np.ndarray:
    """``[n_trials, n_constraints]`` violations (<= 0: met), by name; a trial without one counts as met."""
    names = sorted({name for t in trials for name in t.constraints})
    return np.array([[float(t.constraints.get(name, 0.0)) for name in names] for t in trials], dtype=float).reshape(
        len(trials), len(names))


def _draw(distribution: BaseDistribution, rng: np.random.Generator) -> Any:
    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[int(rng.integers(len(distribution.choices)))]
    if isinstance(distribution, IntDistribution):
        if distribution.log:
            value = math.exp(rng.uniform(math.log(distribution.low), math.log(distribution.high + 1)))
            return int(min(distribution.high, max(distribution.low, math.floor(value))))
        steps = (distribution.high - distribution.low) // distribution.step
        return int(distribution.low + distribution.step * int(rng.integers(steps + 1)))
    if isinstance(distribution, FloatDistribution):
        if distribution.log:
            return float(math.exp(rng.uniform(math.log(distribution.low), math.log(distribution.high))))
        if distribution.step is not None:
            steps = int(round((distribution.high - distribution.low) / distribution.step))
            return float(distribution.low + distribution.step * int(rng.integers(steps + 1)))
        return float(rng.uniform(distribution.low, distribution.high))
    raise TypeError(f"unsupported distribution {distribution!r}")


def _mutate(params: dict[str, Any], space: dict[str, BaseDistribution], rng: np.random.Generator) -> dict[str, Any]:
    """A neighbour: one or two parameters moved a step (numbers) or redrawn (categories, or a coin's toss)."""
    child = dict(params)
    names = sorted(space)
    for name in rng.choice(names, size=min(len(names), int(rng.integers(1, 3))), replace=False):
        distribution = space[name]
        if isinstance(distribution, IntDistribution) and not distribution.log and rng.random() < 0.7:
            moved = child[name] + distribution.step * int(rng.choice((-1, 1)))
            child[name] = int(min(distribution.high, max(distribution.low, moved)))
        else:
            child[name] = _draw(distribution, rng)
    return child
