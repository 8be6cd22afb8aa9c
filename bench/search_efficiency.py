"""How fast each sampler finds the front: hypervolume after N trials, NSGA-II, TPE, GP and random.

Each sampler searches the digits-ViT example's space for a phone whose latency is *predicted* by its device
profile (``sd865-cpu-4t``: no phone here, and prediction keeps a trial to a few seconds), with the same
objectives, trial budget and reference point, over several seeds. A candidate is evaluated for real, exactly
as ``devicefit fit`` evaluates it during the search (materialize, the search's accuracy rung, export at its
precision, Paddle Lite conversion, predicted latency); its objective values are cached by candidate key, so
a candidate that several runs reach is built once (a run's trajectory is unaffected: the values are the same).

    .venv/bin/python bench/search_efficiency.py [--trials 40] [--seeds 3] [--samplers nsga2,tpe,gp,random]

Reference: the hypervolume of the front of *every* point evaluated in this invocation (all samplers and
seeds: the best front known), with the reference point at accuracy 0, and 1.1 x the teacher's latency and
size. ``trials_to_95`` is the first trial after which a run's hypervolume reaches 95% of it; the median over
seeds is reported (a run that never reaches it counts as ``trials + 1``, and the figure is printed ``>N``).
Every run starts like ``devicefit fit`` does (the space's warm-start points are enqueued first), except the
``random`` baseline, which is plain random search; ``random+warm`` (random with the warm start) is printed
for comparison.

``--cache FILE`` keeps every built candidate's values in FILE (keyed by candidate, checked against the device
profile's version, the rung's epochs and the objectives) and reuses them in later invocations, which may run
at the same time; the reference front then also holds every candidate FILE has seen. ``--render JSON...``
prints the table and RESULT line again from ``--json`` files without running anything (several files: every
history against the largest of their references).

Last line: ``RESULT trials_to_95_default=<n> trials_to_95_random=<n> default=<sampler>``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from devicefit.search._hypervolume import hypervolume
from devicefit.search._samplers import DEFAULT_SAMPLER, make_sampler

DEVICE = "sd865-cpu-4t"
BASELINE = "random"
WARM_BASELINE = "random+warm"


class SearchObjective:
    """The search's own evaluation of a candidate for one device, cached by candidate key.

    Args:
        out: Folder for the candidates' files.
        device: Device profile id (a device this machine cannot reach, so latency is predicted).
        epochs: Accuracy rung epochs; ``None`` keeps the search's default.
    """

    def __init__(self, out: Path, device: str, *, epochs: int | None = None, cache: Path | None = None) -> None:
        import dataclasses

        from devicefit.device_profiles import load_profile
        from devicefit.examples import load_example
        from devicefit.search._fit import Fit, FitSettings
        from devicefit.search._progress import Progress
        from devicefit.search._screening import LadderSettings

        # The ladder off: every candidate scored at the search's screening rung (the device is predicted anyway),
        # so every sampler is compared on the same figures.
        settings = FitSettings(out=out, devices=(load_profile(device),), trials=1, ladder=LadderSettings(enabled=False))
        if epochs is not None:
            settings = dataclasses.replace(settings, distillation=dataclasses.replace(settings.distillation,
                                                                                      epochs=epochs))
        self.settings = settings
        self.task = load_example("digits-vit", seed=0)
        self.fit = Fit(self.task, settings, progress=Progress(1, quiet=True))
        self.space = self.fit.space
        self.names = [o.name for o in settings.objectives]
        self.directions = [o.direction for o in settings.objectives]
        self._cache: dict[str, list[float] | None] = {}
        self.evaluations = 0
        self.hits = 0
        self.latency_sources: set[str] = set()
        self._cache_file = cache
        profile = settings.devices[0]
        self._cache_header = {"device": profile.id, "profile_version": profile.version,
                              "epochs": settings.distillation.epochs, "objectives": self.names}
        self.loaded = 0
        if cache is not None and cache.exists():
            saved = json.loads(cache.read_text())
            if saved.get("header") != self._cache_header:
                raise SystemExit(f"{cache} holds values for {saved.get('header')}, not {self._cache_header}: "
                                 f"use another --cache file")
            self._cache.update({k: v for k, v in saved["values"].items()})
            self.loaded = len(self._cache)
            self.latency_sources.update(saved.get("latency_sources", []))

    def describe(self) -> str:
        return f"digits-vit -> {self.settings.device_ids[0]}; space: {self.space.describe()}"  # type: ignore[attr-defined]

    def teacher_values(self) -> list[float]:
        values = self(self.space.full_candidate())  # type: ignore[attr-defined]
        if values is None:
            raise RuntimeError("the teacher itself cannot be evaluated for this device")
        return values

    def __call__(self, candidate: object) -> list[float] | None:
        from devicefit.search._fit import rejection_reason

        key = candidate.key()  # type: ignore[attr-defined]
        if key in self._cache:
            self.hits += 1
            return self._cache[key]
        values: list[float] | None = None
        if rejection_reason(candidate, self.settings.devices) is None:  # type: ignore[arg-type]
            record = self.fit.evaluate(candidate)  # type: ignore[arg-type]
            self.latency_sources.update(r.source for r in record.latencies.values())
            values = record.values(self.settings.objectives)
        self.evaluations += 1
        self._cache[key] = values
        self._save()
        return values

    def _save(self) -> None:
        """Write the cache (atomically), so an interrupted or later invocation reuses every candidate built."""
        if self._cache_file is None:
            return
        if self._cache_file.exists():  # another invocation may share the file: keep what it added
            saved = json.loads(self._cache_file.read_text())
            if saved.get("header") == self._cache_header:
                for key, values in saved["values"].items():
                    self._cache.setdefault(key, values)
        tmp = self._cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"header": self._cache_header, "latency_sources": sorted(self.latency_sources),
                                   "values": self._cache}))
        tmp.replace(self._cache_file)

    def known_points(self) -> list[list[float]]:
        """Every feasible candidate's values (minimized form) in the cache: all this and earlier invocations built."""
        return [minimized(v, self.directions) for v in self._cache.values() if v is not None]

    def close(self) -> None:
        self.fit.close()


def minimized(values: Sequence[float], directions: Sequence[str]) -> list[float]:
    return [-v if d == "maximize" else v for v, d in zip(values, directions)]


def trials_to_reach(history: Sequence[float], target: float) -> int | None:
    """1-based trial after which ``history`` (hypervolume per trial) first reaches ``target``; None: never."""
    for index, value in enumerate(history):
        if value >= target:
            return index + 1
    return None


def hypervolume_history(points: Sequence[Sequence[float]], reference: Sequence[float]) -> list[float]:
    """Hypervolume of the first k points, for every k (points already minimized)."""
    return [hypervolume(np.asarray(points[: k + 1], dtype=float), reference) for k in range(len(points))]


def run_search(
    sampler_name: str,
    seed: int,
    trials: int,
    *,
    evaluate: Callable[[object], list[float] | None],
    space: object,
    directions: Sequence[str],
    warm_start: bool,
    population: int | None = None,
) -> list[list[float]]:
    """One search of ``trials`` trials; returns each completed trial's objective values (minimized), in order.

    A candidate the evaluation rejects (``None``) is a pruned trial and counts towards the budget, as in a fit.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = make_sampler("random" if sampler_name == WARM_BASELINE else sampler_name, seed=seed, trials=trials)
    if population is not None and sampler_name == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    study = optuna.create_study(directions=list(directions), sampler=sampler)
    if warm_start:
        for candidate in space.warm_start()[:trials]:  # type: ignore[attr-defined]
            study.enqueue_trial(space.params_for(candidate), skip_if_exists=True)  # type: ignore[attr-defined]
    points: list[list[float]] = []
    for _ in range(trials):
        trial = study.ask()
        candidate = space.suggest(trial)  # type: ignore[attr-defined]
        values = evaluate(candidate)
        if values is None:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            points.append(points[-1] if points else [float("inf")] * len(directions))
            continue
        study.tell(trial, values)
        points.append(minimized(values, directions))
    return points


def summarize(
    runs: dict[str, list[list[list[float]]]], reference: Sequence[float], trials: int,
    known: Sequence[Sequence[float]] = (),
) -> tuple[float, dict[str, list[int | None]], dict[str, list[list[float]]]]:
    """Reference hypervolume (front of every point of the runs and of ``known``), trials to 95% of it per run,
    and each run's history."""
    finite = [p for sampler_runs in runs.values() for run in sampler_runs for p in run if np.all(np.isfinite(p))]
    finite += [list(p) for p in known]
    best = hypervolume(np.asarray(finite, dtype=float), reference)
    reached: dict[str, list[int | None]] = {}
    histories: dict[str, list[list[float]]] = {}
    for name, sampler_runs in runs.items():
        histories[name] = [
            hypervolume_history([p if np.all(np.isfinite(p)) else list(reference) for p in run], reference)
            for run in sampler_runs
        ]
        reached[name] = [trials_to_reach(h, 0.95 * best) for h in histories[name]]
    return best, reached, histories


def median_trials(reached: Sequence[int | None], trials: int) -> tuple[float, str]:
    value = statistics.median([r if r is not None else trials + 1 for r in reached])
    return value, (f">{trials}" if value > trials else f"{value:g}")


def render(best: float, histories: dict[str, list[list[float]]], trials: int, *, default: str) -> None:
    """Print the table (HV@k per sampler, trials to 95%) and the RESULT line."""
    reached = {name: [trials_to_reach(h, 0.95 * best) for h in runs] for name, runs in histories.items()}
    checkpoints = [k for k in (5, 10, 20, 30, 40, 60, 80, 100, 150, 200) if k <= trials]
    width = max(16, *(len(name) + len(" (default)") for name in histories))
    print(f"{'sampler':{width}s}" + "".join(f"  HV@{k:<4d}" for k in checkpoints) + "  trials_to_95 (per seed; median)")
    medians: dict[str, str] = {}
    for name, runs in histories.items():
        mean_at = [statistics.mean(h[k - 1] for h in runs) / best for k in checkpoints]
        value, text = median_trials(reached[name], trials)
        medians[name] = text
        per_seed = ", ".join(str(r) if r is not None else f">{trials}" for r in reached[name])
        label = f"{name} (default)" if name == default else name
        print(f"{label:{width}s}" + "".join(f"  {m:6.3f}" for m in mean_at) + f"  {per_seed}; median {text}")
    print(f"RESULT trials_to_95_default={medians[default]} trials_to_95_random={medians[BASELINE]} default={default}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40, help="trials per run (default: 40)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per sampler (default: 3)")
    parser.add_argument("--samplers", default="nsga2,tpe,gp,random,random+warm", help="comma-separated")
    parser.add_argument("--epochs", type=int, default=None, help="accuracy rung epochs (default: the search's)")
    parser.add_argument("--json", type=Path, help="also write every run's history here")
    parser.add_argument("--cache", type=Path, help="keep every built candidate's values in this file and reuse them; "
                        "the reference front then also holds every candidate the file has seen")
    parser.add_argument("--population", type=int, help="NSGA-II population (default: the search's, "
                        "devicefit.search._samplers.nsga2_population); for experiments")
    parser.add_argument("--render", type=Path, nargs="+", metavar="JSON",
                        help="only print the table and RESULT line again from --json files (nothing is run); with "
                        "several files (runs of the same objective), every history is scored against the largest "
                        "reference among them, and a sampler name already taken is suffixed with @<file stem>")
    args = parser.parse_args(argv)
    if args.render is not None:
        saved = [json.loads(path.read_text()) for path in args.render]
        best = max(s["reference_hypervolume"] for s in saved)
        histories: dict[str, list[list[float]]] = {}
        for path, one in zip(args.render, saved):
            for name, runs in one["histories"].items():
                histories[name if name not in histories else f"{name}@{path.stem}"] = runs
        trials = min(len(runs[0]) for runs in histories.values())
        histories = {name: [h[:trials] for h in runs] for name, runs in histories.items()}
        print(f"# rendered from {', '.join(map(str, args.render))} (reference hypervolume {best:.6g}, "
              f"{trials} trials x {len(next(iter(histories.values())))} seeds; nothing recomputed)")
        render(best, histories, trials, default=DEFAULT_SAMPLER)
        return 0
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    default = DEFAULT_SAMPLER
    if default not in samplers or BASELINE not in samplers:
        parser.error(f"--samplers must include {default} (the default) and {BASELINE}")

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="devicefit-search-eff-") as tmp:
        objective = SearchObjective(Path(tmp), DEVICE, epochs=args.epochs, cache=args.cache)
        print(f"# {objective.describe()}", flush=True)
        if args.cache is not None:
            print(f"# cache {args.cache}: {objective.loaded} candidates' values reused from earlier invocations",
                  flush=True)
        teacher = objective.teacher_values()
        directions = objective.directions
        reference = [0.0 if d == "maximize" else 1.1 * v for v, d in zip(teacher, directions)]
        if args.population is not None:
            print(f"# NSGA-II population {args.population} (not the search's default)", flush=True)
        print(f"# objectives {objective.names}; reference point {reference} (minimized form: accuracy negated)",
              flush=True)
        runs: dict[str, list[list[list[float]]]] = {name: [] for name in samplers}
        for seed in range(args.seeds):
            for name in samplers:
                t0 = time.monotonic()
                points = run_search(name, seed, args.trials, evaluate=objective, space=objective.space,
                                    directions=directions, warm_start=name not in (BASELINE,),
                                    population=args.population)
                runs[name].append(points)
                print(f"# {name:12s} seed {seed}: {time.monotonic() - t0:6.1f} s, "
                      f"{objective.evaluations} candidates built so far, {objective.hits} cache hits", flush=True)
        known = objective.known_points()
        best, reached, histories = summarize(runs, reference, args.trials, known)
        print(f"# latency of every candidate: {', '.join(sorted(objective.latency_sources))} "
              f"({objective.evaluations} candidates built, {objective.hits} cache hits)")
        objective.close()
    print(f"# reference hypervolume (front of all {sum(len(r) for v in runs.values() for r in v)} evaluated points"
          f"{f' and the {len(known)} candidates of the cache' if args.cache else ''}): {best:.6g}")
    print(f"# {args.trials} trials x {args.seeds} seeds per sampler; HV@k is the mean over seeds of the hypervolume "
          f"after k trials / reference; {time.monotonic() - started:.0f} s wall on this machine")
    if args.json:
        args.json.write_text(json.dumps({"reference_hypervolume": best, "histories": histories,
                                         "trials_to_95": reached}, indent=1))
    render(best, histories, args.trials, default=default)
    return 0


if __name__ == "__main__":
    sys.exit(main())
