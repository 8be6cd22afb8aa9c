"""How repeatable is a latency measurement on this host? The same model measured N times through the protocol.

Each measurement is separate in the way that matters (STACK-NOTES.md, "Latency on this host is noisy"):
a fresh Lite worker process, a fresh evaluator, no cache, no lease. The model is the digits-vit teacher
(the model devicefit's demo compresses), converted once for x86.

Printed: one line per measurement, then the spread across measurements of

- ``latency_ms`` (the reported figure: the fastest timed run, ``min-of-runs``),
- ``reference_ratio`` (that figure over the interleaved reference's),
- ``median_ms`` (a plain median of all runs, for comparison: what a naive protocol reports),

as a half-range in percent of the median (``(max - min) / 2 / median * 100``: "within +-x%"), the cost of a
measurement, and the machine's load while it ran. The last line is machine-readable::

    RESULT median_spread_pct=<x> ratio_spread_pct=<y> plain_median_spread_pct=<z> seconds_per_measurement=<s>
           noisy=<k>/<n> load1_mean=<l> cpus=<c>

Run: ``.venv/bin/python bench/measure_noise.py [--runs 10] [--out DIR]``.
"""

from __future__ import annotations

import zlib  # noqa: F401  (before anything imports Paddle; see devicefit.spaces._paddle)

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def half_range_pct(values: list[float]) -> float:
    """``(max - min) / 2 / median * 100``."""
    return (max(values) - min(values)) / 2 / statistics.median(values) * 100


def load1() -> float:
    return os.getloadavg()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="separate measurements (default 10)")
    parser.add_argument("--out", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args(argv)

    from devicefit.device_profiles import load_profile
    from devicefit.evaluators._latency import MeasureSettings, host_latency
    from devicefit.evaluators._lite_client import LiteWorker
    from devicefit.examples import load_example
    from devicefit.spaces._export import export_inference_model

    work = args.out or Path(tempfile.mkdtemp(prefix="devicefit-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    task = load_example("digits-vit")
    artifact = export_inference_model(task.teacher, task.input_spec, work / "teacher")
    sample = work / "teacher" / "sample_input_0.npy"
    np.save(sample, task.data.val.take(slice(0, 1)).inputs[0])
    profile = load_profile("host-x86")
    settings = MeasureSettings()
    print(f"model: digits-vit teacher ({artifact.size_bytes} bytes), device: {profile.id}, {os.cpu_count()} CPUs")
    print(f"protocol: {settings}")
    print(f"load before: {os.getloadavg()}")
    print(
        f"{'run':>3} {'latency_ms':>10} {'ratio':>7} {'median_ms':>9} {'p90_ms':>7} {'blocks':>6} {'rounds':>6} "
        f"{'ci_pct':>6} {'noisy':>5} {'seconds':>7} {'load1':>5}"
    )
    rows = []
    loads = [load1()]
    for run in range(1, args.runs + 1):
        with LiteWorker(timeout_seconds=600) as worker:  # a fresh process per measurement
            evaluator = host_latency(worker, settings, reference_dir=work / "reference")
            started = time.perf_counter()
            result = evaluator.latency(artifact, profile, [sample])
            seconds = time.perf_counter() - started
        loads.append(load1())
        rows.append((result, seconds))
        ci = "-" if result.ci_half_width_pct is None else f"{result.ci_half_width_pct:.2f}"
        print(
            f"{run:>3} {result.latency_ms:>10.4f} {result.reference_ratio:>7.4f} {result.median_ms:>9.4f} "
            f"{result.p90_ms:>7.4f} {result.blocks:>6} {result.remeasures + 1:>6} {ci:>6} {str(result.noisy):>5} "
            f"{seconds:>7.1f} {loads[-1]:>5.2f}",
            flush=True,
        )
    latency = [r.latency_ms for r, _ in rows]
    ratio = [r.reference_ratio for r, _ in rows if r.reference_ratio is not None]
    plain = [r.median_ms for r, _ in rows if r.median_ms is not None]
    cost = statistics.mean(s for _, s in rows)
    noisy = sum(r.noisy for r, _ in rows)
    print(f"load after: {os.getloadavg()}")
    print(f"latency_ms (fastest run):          {min(latency):.4f}..{max(latency):.4f}, +-{half_range_pct(latency):.2f}%")
    print(f"reference ratio:                   {min(ratio):.4f}..{max(ratio):.4f}, +-{half_range_pct(ratio):.2f}%")
    print(f"plain median of runs:              {min(plain):.4f}..{max(plain):.4f}, +-{half_range_pct(plain):.2f}%")
    print(f"cost: {cost:.1f} s per measurement (conversion and memory measurement included; no cache)")
    print(
        f"RESULT median_spread_pct={half_range_pct(latency):.2f} ratio_spread_pct={half_range_pct(ratio):.2f} "
        f"plain_median_spread_pct={half_range_pct(plain):.2f} seconds_per_measurement={cost:.1f} "
        f"noisy={noisy}/{len(rows)} load1_mean={statistics.mean(loads):.2f} cpus={os.cpu_count()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
