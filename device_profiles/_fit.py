"""Fitting the kernel-level predictor to measured latencies.

A model's latency is linear in the predictor's coefficients (see :mod:`devicefit.device_profiles._predictor`):
one row per measured model holds its kernel features summed per cost key (each kernel's features scaled by
its shape factor), so single-kernel probes and whole models are fitted together. The fit minimises the
squared *relative* error (rows are divided by the measured latency) because the predictor is judged by
relative error, under non-negativity constraints (no kernel has a negative cost), with a small ridge term
that keeps collinear coefficients bounded.

Shape factors come from the probes: once the linear coefficients are fitted, the probe's main kernel (its
largest kernel with a shape signature) gets the factor that makes the probe's prediction equal its
measurement; the coefficients are then refitted with those factors applied, a few times.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from devicefit.device_profiles._features import FEATURES, KernelFeatures, kernel_features, shape_signature
from devicefit.device_profiles._predictor import (
    COEFFICIENTS,
    KernelCost,
    PredictorError,
    PredictorParams,
    Provenance,
    ShapeFactorRule,
    SubgraphCost,
)
from devicefit.device_profiles._shapes import ShapedProgram

#: Relative weight of the ridge term (per normalised coefficient).
DEFAULT_RIDGE = 1e-5
#: Weight of a whole model's row against a probe's. Chosen on this host by leave-one-width-out cross-validation
#: (every calibration encoder of one width predicted by a fit on the other widths and every probe: what a model
#: of a width the sweep does not have needs), over the measurements of two full calibrations (bench runs p4-a and
#: p5-a, 88 encoders and 512-528 probes each): mean MAPE 3.31% at 4, 3.29% at 5, 3.32% at 6, 3.41% at 8, 3.48% at
#: 10. Plain 5-fold cross-validation prefers 7 (2.92% against 2.97% at 5); it was 10 when the sweep had 48 encoders
#: (chosen then by 5-fold cross-validation: 1 -> 4.2%, 10 -> 2.9%, 30 -> 3.0%), and the sweep has 88 now.
DEFAULT_MODEL_WEIGHT = 5.0
#: Rounds of "fit coefficients, then shape factors".
FIT_ROUNDS = 3
_CALLS, _SLICES = FEATURES.index("calls"), FEATURES.index("slices")
#: Bounds of a measured shape factor (a probe further off than this is a measurement problem, not a shape).
FACTOR_BOUNDS = (0.2, 5.0)


class FitError(ValueError):
    """The measurements cannot determine a predictor (too few, or not positive)."""


@dataclasses.dataclass(frozen=True)
class KernelRow:
    """One kernel of a measured model: its cost features and shape signature."""

    features: KernelFeatures
    signature: tuple[float, ...] | None


@dataclasses.dataclass(frozen=True)
class Sample:
    """One measured model, reduced to what the fit needs.

    Attributes:
        name: Identifies the model (probe or candidate name).
        kernels: Its kernels, feed and fetch included.
        subgraphs: Its NNAdapter subgraphs.
        subgraph_kib: KiB crossing its subgraph boundaries per run.
        latency_ms: The measured latency, in milliseconds.
        group: ``probe`` (a single-kernel model: its main kernel gets a shape factor) or ``model``.
    """

    name: str
    kernels: tuple[KernelRow, ...]
    subgraphs: int
    subgraph_kib: float
    latency_ms: float
    group: str = "model"

    @classmethod
    def from_program(cls, name: str, program: ShapedProgram, latency_ms: float, group: str = "model") -> Sample:
        """Reduce a shaped program and its measurement to a sample."""
        rows = tuple(KernelRow(kernel_features(k), shape_signature(k)) for k in program.kernels)
        crossing = sum(g.input_bytes + g.output_bytes for g in program.subgraphs) / 1024.0
        return cls(name, rows, len(program.subgraphs), crossing, latency_ms, group)

    @property
    def keys(self) -> set[str]:
        """The cost keys of its kernels."""
        return {row.features.key for row in self.kernels}


def predict_sample_ms(params: PredictorParams, sample: Sample) -> float:
    """Predicted latency of a measured model, in milliseconds.

    Raises:
        KeyError: A cost key of the sample has no coefficients.
    """
    total_us = params.overhead_us + sum(params.kernel_cost_us(r.features, r.signature) for r in sample.kernels)
    if sample.subgraphs and params.subgraph is not None:
        total_us += params.subgraph.call_us * sample.subgraphs + params.subgraph.kib_us * sample.subgraph_kib
    return total_us / 1000.0


def _design_row(sample: Sample, keys: dict[str, int], factors: dict[str, float], with_subgraphs: bool) -> np.ndarray:
    width = len(FEATURES)
    row = np.zeros(1 + width * len(keys) + (2 if with_subgraphs else 0))
    row[0] = 1.0
    for kernel, factor in zip(sample.kernels, _kernel_factors(sample, factors)):
        start = 1 + width * keys[kernel.features.key]
        vector = np.asarray(kernel.features.vector())
        if vector[_SLICES] == vector[_CALLS]:
            vector[_SLICES] = 0.0  # a kernel with one slice: its whole fixed cost goes to call_us
        row[start : start + width] += factor * vector
    if with_subgraphs:
        row[-2] = sample.subgraphs
        row[-1] = sample.subgraph_kib
    return row


def _kernel_factors(sample: Sample, factors: dict[str, float]) -> list[float]:
    return [factors.get(f"{sample.name}#{i}", 1.0) for i in range(len(sample.kernels))]


def _solve(design: np.ndarray, target_us: np.ndarray, ridge: float, row_weights: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls

    weights = row_weights / target_us
    a = design * weights[:, None]
    scale = np.abs(a).max(axis=0)  # normalise the weighted columns, so the ridge treats them alike
    scale[scale == 0] = 1.0
    a = a / scale
    b = target_us * weights
    if ridge > 0:
        a = np.vstack([a, np.sqrt(ridge) * np.eye(a.shape[1])])
        b = np.concatenate([b, np.zeros(a.shape[1])])
    solution, _ = nnls(a, b, maxiter=50 * a.shape[1])
    solution[np.abs(design).max(axis=0) == 0] = 0.0  # a feature no sample has: its coefficient is unknown
    return solution / scale


def _params(
    theta: np.ndarray,
    keys: dict[str, int],
    samples: Sequence[Sample],
    tables: dict[str, list[tuple[float, ...]]],
    with_subgraphs: bool,
    provenance: Provenance,
    rule: ShapeFactorRule,
) -> PredictorParams:
    width = len(FEATURES)
    kernels = {}
    for key, index in sorted(keys.items()):
        values = theta[1 + width * index : 1 + width * (index + 1)]
        seen = sum(1 for s in samples if key in s.keys)
        kernels[key] = KernelCost(
            **dict(zip(COEFFICIENTS, (float(v) for v in values))),
            models=seen,
            shape_factors=tuple(sorted(tables.get(key, ()))),
        )
    subgraph = SubgraphCost(float(theta[-2]), float(theta[-1])) if with_subgraphs else None
    return PredictorParams(
        provenance=provenance, kernels=kernels, overhead_us=float(theta[0]), subgraph=subgraph, shape_factor_rule=rule
    )


def _probe_factors(params: PredictorParams, probes: Sequence[Sample]) -> dict[str, list[tuple[float, ...]]]:
    """Shape factors measured by the probes: per key, ``signature + (factor,)`` (repeats averaged)."""
    collected: dict[str, dict[tuple[float, ...], list[float]]] = {}
    for probe in probes:
        linear = [params.kernels[r.features.key].cost_us(r.features) for r in probe.kernels]
        shaped = [i for i, r in enumerate(probe.kernels) if r.signature is not None]
        if not shaped:
            continue
        main = max(shaped, key=lambda i: linear[i])
        if linear[main] <= 0:
            continue
        others_us = sum(
            params.kernel_cost_us(r.features, r.signature) for i, r in enumerate(probe.kernels) if i != main
        )
        extra_us = params.subgraph.call_us * probe.subgraphs if params.subgraph is not None else 0.0
        factor = (probe.latency_ms * 1000.0 - params.overhead_us - others_us - extra_us) / linear[main]
        factor = min(max(factor, FACTOR_BOUNDS[0]), FACTOR_BOUNDS[1])
        signature = probe.kernels[main].signature
        assert signature is not None
        collected.setdefault(probe.kernels[main].features.key, {}).setdefault(signature, []).append(factor)
    return {
        key: [(*sig, math.exp(sum(math.log(f) for f in fs) / len(fs))) for sig, fs in points.items()]
        for key, points in collected.items()
    }


def fit_predictor(
    samples: Sequence[Sample],
    provenance: Provenance,
    *,
    ridge: float = DEFAULT_RIDGE,
    rule: ShapeFactorRule = ShapeFactorRule(),
    rounds: int = FIT_ROUNDS,
    model_weight: float = DEFAULT_MODEL_WEIGHT,
) -> PredictorParams:
    """Fit the predictor's coefficients and shape factors to measured samples.

    Args:
        samples: Measured models (probes and whole models), each with positive latency.
        provenance: Recorded in the result as it is (its ``error`` is usually filled in afterwards from
            :func:`cross_validate`).
        ridge: Weight of the ridge term on normalised coefficients.
        rule: How shape factors are interpolated (stored in the result).
        rounds: Rounds of coefficients-then-factors (1: no shape factors).
        model_weight: Weight of a whole model's relative error against a probe's (whole models show the
            kernels in context: caches shared with the rest of the model).

    Raises:
        FitError: Fewer samples than two, or a non-positive latency.
    """
    if len(samples) < 2:
        raise FitError(f"at least two measured models are needed, got {len(samples)}")
    if any(not s.latency_ms > 0 for s in samples):
        raise FitError("every measured latency must be positive")
    keys = {key: i for i, key in enumerate(sorted({key for s in samples for key in s.keys}))}
    with_subgraphs = any(s.subgraphs for s in samples)
    target_us = np.array([s.latency_ms * 1000.0 for s in samples])
    row_weights = np.array([model_weight if s.group == "model" else 1.0 for s in samples])
    probes = [s for s in samples if s.group == "probe"]
    tables: dict[str, list[tuple[float, ...]]] = {}
    factors: dict[str, float] = {}
    params: PredictorParams | None = None
    for round_index in range(max(1, rounds)):
        matrix = np.array([_design_row(s, keys, factors, with_subgraphs) for s in samples])
        theta = _solve(matrix, target_us, ridge, row_weights)
        params = _params(theta, keys, samples, tables, with_subgraphs, provenance, rule)
        if round_index == max(1, rounds) - 1:
            break
        tables = _probe_factors(params, probes)
        with_tables = _params(theta, keys, samples, tables, with_subgraphs, provenance, rule)
        factors = {
            f"{s.name}#{i}": with_tables.shape_factor_rule.factor(with_tables.kernels[r.features.key].shape_factors, r.signature)
            for s in samples
            for i, r in enumerate(s.kernels)
            if r.signature is not None
        }
    assert params is not None
    return params


def error_summary(predicted_ms: Sequence[float], measured_ms: Sequence[float], what: str) -> PredictorError:
    """MAPE, share within +-10% and Spearman rho of predictions against measurements.

    Raises:
        FitError: The sequences are empty or differ in length.
    """
    predicted, measured = np.asarray(predicted_ms, float), np.asarray(measured_ms, float)
    if predicted.size == 0 or predicted.shape != measured.shape:
        raise FitError("predicted and measured latencies must be non-empty and of equal length")
    relative = np.abs(predicted - measured) / measured
    return PredictorError(
        what=what,
        models=int(predicted.size),
        mape_percent=float(100.0 * relative.mean()),
        within10=float((relative <= 0.10).mean()),
        spearman=spearman_rho(predicted, measured) if predicted.size > 2 else None,
    )


def spearman_rho(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (ties get their average rank)."""
    from scipy.stats import spearmanr

    return float(spearmanr(np.asarray(a, float), np.asarray(b, float)).statistic)


def cross_validate(
    samples: Sequence[Sample],
    *,
    folds: int,
    seed: int,
    evaluate_group: str = "model",
    ridge: float = DEFAULT_RIDGE,
    rule: ShapeFactorRule = ShapeFactorRule(),
    rounds: int = FIT_ROUNDS,
    model_weight: float = DEFAULT_MODEL_WEIGHT,
) -> PredictorError:
    """K-fold cross-validated error of the fit on the samples of ``evaluate_group``.

    Probes stay in every training fold; the whole models of the evaluated group are split into ``folds``
    folds, each predicted by a fit on all the other samples.

    Raises:
        FitError: Fewer models in the group than folds, or fewer than two folds.
    """
    evaluated = [i for i, s in enumerate(samples) if s.group == evaluate_group]
    if folds < 2 or len(evaluated) < folds:
        raise FitError(
            f"cross-validation needs >= 2 folds and >= {folds} '{evaluate_group}' samples, got {len(evaluated)}"
        )
    order = np.random.default_rng(seed).permutation(evaluated)
    predicted, measured = [], []
    placeholder = Provenance(calibrated=False, method="cross-validation fold", measured_on="", date="", tool="")
    for fold in range(folds):
        held = {int(i) for i in order[fold::folds]}
        params = fit_predictor(
            [s for i, s in enumerate(samples) if i not in held],
            placeholder,
            ridge=ridge,
            rule=rule,
            rounds=rounds,
            model_weight=model_weight,
        )
        for i in sorted(held):
            if params.covers(samples[i].keys):
                continue  # a kernel type only held-out models have: the fit cannot know it
            predicted.append(predict_sample_ms(params, samples[i]))
            measured.append(samples[i].latency_ms)
    if not predicted:
        raise FitError(
            "no held-out model could be predicted: each has kernel types no other sample has (the sweep is too small)"
        )
    return error_summary(
        predicted, measured, f"{folds}-fold cross-validation over {len(evaluated)} calibration models"
    )
