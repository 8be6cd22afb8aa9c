"""Refit a finished predictor_accuracy run's calibration with today's code, and score it on that run's held-out timings.

    .venv/bin/python bench/predictor_refit.py runs/bench-pred3-a             # refit, cross-validate, score held-out
    .venv/bin/python bench/predictor_refit.py runs/bench-pred3-a --kernels   # also: the residual per cost key

Nothing is timed: the measured latencies come from the run's ``profiles/<id>.v<N>.measurements.json`` (the
calibration) and ``results.json`` (the held-out models), the kernels from the programs the run left in its
``calibration/`` and ``held-out/`` folders. So a change of the features or the fit can be judged on the
same measurements in seconds, without a 20-minute calibration, and without the machine's load of the day
moving the figures. It does not replace the bench: a change of the sweep or of the timing needs new
measurements. The held-out models stay held out (they are scored, never fitted).
"""

from __future__ import annotations

import zlib  # noqa: F401  (before anything imports Paddle: see devicefit.spaces._paddle)

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from devicefit.device_profiles._fit import Sample, cross_validate, error_summary, fit_predictor, predict_sample_ms
from devicefit.device_profiles._predictor import Provenance
from devicefit.device_profiles._program import read_kernel_program
from devicefit.device_profiles._shapes import Tensor, infer_shapes


def load_sample(directory: Path, name: str, latency_ms: float, group: str) -> Sample:
    """The sample of one model the run built in ``directory`` (its program and sample inputs)."""
    inputs = [np.load(p, mmap_mode="r") for p in sorted(directory.glob("input_*.npy"))]
    program = infer_shapes(
        read_kernel_program(directory / "program" / "model", directory / "program" / "params"),
        [Tensor(tuple(a.shape), str(a.dtype)) for a in inputs],
    )
    return Sample.from_program(name, program, latency_ms, group)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the --out folder of a finished bench/predictor_accuracy.py run")
    parser.add_argument("--kernels", action="store_true", help="print each cost key's share of the held-out residual")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--fold-seeds", type=int, default=1, help="cross-validation repeats (seeds 0..N-1)")
    args = parser.parse_args(argv)

    (measurements_file,) = sorted((args.run / "profiles").glob("*.measurements.json"))[-1:]
    measured = json.loads(measurements_file.read_text(encoding="utf-8"))
    samples = [
        load_sample(args.run / "calibration" / m["name"], m["name"], m["measured_ms"], m["group"])
        for m in measured["models"]
    ]
    provenance = Provenance(calibrated=True, method="refit", measured_on="", date="", tool="")
    params = fit_predictor(samples, provenance)
    for seed in range(args.fold_seeds):
        print(f"calibration CV (fold seed {seed}): {cross_validate(samples, folds=args.folds, seed=seed).describe()}")

    results = json.loads((args.run / "results.json").read_text(encoding="utf-8"))
    rows = []
    residual_by_key: dict[str, list[float]] = defaultdict(list)
    for model in results["models"]:
        sample = load_sample(args.run / "held-out" / model["name"], model["name"], model["measured_ms"], "model")
        predicted = predict_sample_ms(params, sample)
        rows.append((model["name"], predicted, model["measured_ms"]))
        if args.kernels:
            costs: dict[str, float] = defaultdict(float)
            for row in sample.kernels:
                costs[row.features.key] += params.kernel_cost_us(row.features, row.signature)
            for key, cost in costs.items():
                residual_by_key[key].append((cost / 1000.0) / model["measured_ms"])
    print(f"\n{'model':<62} {'predicted_ms':>12} {'measured_ms':>12} {'error':>8}")
    for name, predicted, actual in sorted(rows, key=lambda r: -abs(r[1] / r[2] - 1))[:25]:
        print(f"{name:<62} {predicted:>12.4f} {actual:>12.4f} {100 * (predicted / actual - 1):>+7.1f}%")
    families = {"digits-vit": "digits-vit", "vit": "vit-", "bert": "bert-"}
    for family, prefix in families.items():
        subset = [r for r in rows if r[0].startswith(prefix)]
        if subset:
            err = error_summary([r[1] for r in subset], [r[2] for r in subset], family)
            bias = np.mean([100 * (r[1] / r[2] - 1) for r in subset])
            print(f"{family:<12} {err.describe()}; mean signed error {bias:+.1f}%")
    overall = error_summary([r[1] for r in rows], [r[2] for r in rows], "held-out models")
    if args.kernels:
        print("\nshare of the measured latency predicted per cost key (mean over the held-out models that have it)")
        for key, shares in sorted(residual_by_key.items(), key=lambda kv: -np.mean(kv[1])):
            print(f"  {key:<40} {100 * np.mean(shares):6.1f}%  ({len(shares)} models)")
    print(f"REFIT within10={overall.within10:.3f} mape={overall.mape_percent:.2f} spearman={overall.spearman:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
