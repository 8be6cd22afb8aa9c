"""Trials per minute of one search with 1 and with 2 workers on PostgreSQL (Optuna's RDB storage).

Each configuration runs the digits-vit example for real (`devicefit fit`, plus `devicefit worker`s),
with the same trial count, sampler and seed, against a throwaway PostgreSQL cluster; throughput is
trials / wall time from the fit's start to its end. Both configurations run in this one invocation, so
the baseline (1 worker) is measured on the same machine under the same conditions.

    .venv/bin/python bench/worker_scaling.py [--trials 12] [--epochs 1]

Last line: ``RESULT scaling_2w=<throughput with 2 workers / throughput with 1>``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.postgres import ThrowawayPostgres  # noqa: E402

DEVICEFIT = [sys.executable, "-m", "devicefit.search.cli"]


def _spec_stored(url: str, study: str) -> bool:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return any(s.study_name == study and "spec" in s.user_attrs for s in optuna.get_all_study_summaries(url))
    except Exception:  # noqa: BLE001  (the tables do not exist yet)
        return False


def run(url: str, study: str, workers: int, trials: int, epochs: int, out: Path) -> float:
    """Wall seconds for ``trials`` trials with the fit plus ``workers - 1`` extra workers."""
    started = time.monotonic()
    fit = subprocess.Popen(
        [*DEVICEFIT, "fit", "--storage", url, "--study", study, "--trials", str(trials), "--epochs", str(epochs),
         "--sampler", "random", "--quiet", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    extra = []
    if workers > 1:
        while not _spec_stored(url, study):
            if fit.poll() is not None:
                raise RuntimeError(f"devicefit fit ended early: {fit.stderr.read()[-2000:]}")
            time.sleep(0.2)
        extra = [
            subprocess.Popen([*DEVICEFIT, "worker", "--storage", url, "--study", study, "--quiet"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(workers - 1)
        ]
    _, stderr = fit.communicate()
    if fit.returncode != 0:
        raise RuntimeError(f"devicefit fit failed: {stderr[-2000:]}")
    for worker in extra:
        worker.wait()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    print(f"task: digits-vit, {args.trials} trials, {args.epochs} distillation epoch(s), random sampler")
    rates = {}
    with ThrowawayPostgres() as server, tempfile.TemporaryDirectory() as folder:
        for workers in (1, 2):
            seconds = run(server.url, f"scaling-{workers}", workers, args.trials, args.epochs, Path(folder) / str(workers))
            rates[workers] = args.trials / seconds * 60
            print(f"{workers} worker(s): {args.trials} trials in {seconds:6.1f} s = {rates[workers]:5.2f} trials/min")
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    print(f"RESULT scaling_2w={rates[2] / rates[1]:.2f} trials_per_min_1w={rates[1]:.2f} trials_per_min_2w={rates[2]:.2f}")


if __name__ == "__main__":
    main()
