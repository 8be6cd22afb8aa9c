"""How fast each sampler finds the front: hypervolume after N trials, surrogate, NSGA-II, TPE, GP and random.

Each sampler searches the digits-ViT example's space for a phone whose latency is *predicted* by its device
profile (``sd865-cpu-4t``: no phone here, and prediction keeps a trial to a few seconds), with the same
objectives, trial budget and reference point, over several seeds. A candidate is evaluated for real, exactly
as ``devicefit fit`` evaluates it during the search (materialize, the search's accuracy rung, export at its
precision, Paddle Lite conversion, predicted latency); its objective values are cached by candidate key, so
a candidate that several runs reach is built once (a run's trajectory is unaffected: the values are the same).

    .venv/bin/python bench/search_efficiency.py [--trials 40] [--seeds 3] [--samplers surrogate,nsga2,tpe,gp,random]

Reference: the hypervolume of the front of *every* point evaluated in this invocation (all samplers and
seeds: the best front known), with the reference point at accuracy 0, and 1.1 x the teacher's latency and
size. ``trials_to_95`` is the first trial after which a run's hypervolume reaches 95% of it; the median over
seeds is reported (a run that never reaches it counts as ``trials + 1``, and the figure is printed ``>N``).
Every run starts like ``devicefit fit`` does (the warm-start points that sampler takes are enqueued first), except the
``random`` baseline, which is plain random search; ``random+warm`` (random with the warm start) is printed
for comparison.

``--cache FILE`` keeps every built candidate's values in FILE (keyed by candidate, checked against the device
profile's version, the rung's epochs and the objectives) and reuses them in later invocations, which may run
at the same time; the reference front then also holds every candidate FILE has seen. ``--render JSON...``
prints the table and RESULT line again from ``--json`` files without running anything (several files: every
history against the largest of their references; a run repeated identically is printed once).

``--rescore-seeds K`` builds every member of the reference front again with fine-tune seeds 1..K-1 and prints
how much of the reference hypervolume the front keeps when its accuracies are those of another seed (or their
mean): the part of the reference that is the screening rung's noise, which no sampler can be expected to find
except by drawing many candidates.

Last line: ``RESULT trials_to_95_default=<n> trials_to_95_random=<n> default=<sampler> trials_to_90_default=<n>
trials_to_90_random=<n>`` (``to_90`` in the table: the median trials to 90% of the reference).
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
from devicefit.search._samplers import DEFAULT_SAMPLER, make_sampler, nsga2_population, warm_start_for

DEVICE = "sd865-cpu-4t"
BASELINE = "random"
WARM_BASELINE = "random+warm"


class SearchObjective:
    """The search's own evaluation of a candidate for one device, cached by candidate key.

    Args:
        out: Folder for the candidates' files.
        device: Device profile id (a device this machine cannot reach, so latency is predicted).
        epochs: Accuracy rung epochs; ``None`` keeps the search's default.
        cache: File to keep every built candidate's values (and parameters) in, across invocations.
        train_seed: Seed of the rung's fine-tune (the search's is 0); other seeds re-score candidates.
    """

    def __init__(self, out: Path, device: str, *, epochs: int | None = None, cache: Path | None = None,
                 train_seed: int = 0) -> None:
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
        if train_seed:
            settings = dataclasses.replace(settings, distillation=dataclasses.replace(settings.distillation,
                                                                                      seed=train_seed))
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
        if train_seed:
            self._cache_header["train_seed"] = train_seed
        self.candidates: dict[str, object] = {}  # every candidate this invocation was asked about, by key
        self._params: dict[str, dict] = {}
        self.loaded = 0
        if cache is not None and cache.exists():
            saved = json.loads(cache.read_text())
            if saved.get("header") != self._cache_header:
                raise SystemExit(f"{cache} holds values for {saved.get('header')}, not {self._cache_header}: "
                                 f"use another --cache file")
            self._cache.update(saved["values"])
            self._params.update(saved.get("params", {}))
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
        self.candidates[key] = candidate
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
        self._params[key] = self.space.params_for(candidate)  # type: ignore[attr-defined]
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
                for key, params in saved.get("params", {}).items():
                    self._params.setdefault(key, params)
        tmp = self._cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"header": self._cache_header, "latency_sources": sorted(self.latency_sources),
                                   "values": self._cache, "params": self._params}))
        tmp.replace(self._cache_file)

    def candidate(self, key: str) -> object | None:
        """The candidate of ``key``, if this invocation saw it or the cache holds its parameters."""
        import optuna

        if key in self.candidates:
            return self.candidates[key]
        if key in self._params:
            return self.space.suggest(optuna.trial.FixedTrial(self._params[key]))  # type: ignore[attr-defined]
        return None

    def known(self) -> dict[str, list[float]]:
        """Every feasible candidate's values by key (as the objectives give them), from the cache."""
        return {k: v for k, v in self._cache.items() if v is not None}

    def known_points(self) -> list[list[float]]:
        """Every feasible candidate's values (minimized form) in the cache: all this and earlier invocations built."""
        return [minimized(v, self.directions) for v in self.known().values()]

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
    keys: list[str] | None = None,
) -> list[list[float]]:
    """One search of ``trials`` trials; returns each completed trial's objective values (minimized), in order.

    A candidate the evaluation rejects (``None``) is a pruned trial and counts towards the budget, as in a fit.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler_name.startswith("nsga2:"):  # an experiment: NSGA-II with other settings (nsga2:pop=15,mut=0.3)
        options = dict(item.split("=", 1) for item in sampler_name.split(":", 1)[1].split(","))
        sampler = optuna.samplers.NSGAIISampler(
            seed=seed, population_size=int(options.get("pop", nsga2_population(trials))),
            mutation_prob=float(options["mut"]) if "mut" in options else None)
    elif sampler_name == "nsga3":  # an experiment: reference-point NSGA-III, the default's population
        sampler = optuna.samplers.NSGAIIISampler(seed=seed, population_size=nsga2_population(trials))
    else:
        sampler = make_sampler("random" if sampler_name == WARM_BASELINE else sampler_name, seed=seed, trials=trials,
                               encoder=space.encode_params)  # type: ignore[attr-defined]
    study = optuna.create_study(directions=list(directions), sampler=sampler)
    if warm_start:
        for candidate in warm_start_for(sampler_name, space.warm_start())[:trials]:  # type: ignore[attr-defined]
            study.enqueue_trial(space.params_for(candidate), skip_if_exists=True)  # type: ignore[attr-defined]
    points: list[list[float]] = []
    for _ in range(trials):
        trial = study.ask()
        candidate = space.suggest(trial)  # type: ignore[attr-defined]
        if keys is not None:
            keys.append(candidate.key())  # type: ignore[attr-defined]
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


def front_keys(known: dict[str, list[float]], directions: Sequence[str], reference: Sequence[float]) -> list[str]:
    """Keys of the non-dominated candidates inside the reference box."""
    keys = [k for k, v in known.items() if np.all(np.asarray(minimized(v, directions)) < np.asarray(reference))]
    points = np.asarray([minimized(known[k], directions) for k in keys], dtype=float)
    return [k for i, k in enumerate(keys)
            if not np.any(np.all(points <= points[i], axis=1) & np.any(points < points[i], axis=1))]


def rescore_front(objective: SearchObjective, reference: Sequence[float], seeds: int, out: Path,
                  cache: Path | None) -> None:
    """Re-score the reference front's members with other fine-tune seeds and print how much of the reference
    hypervolume they keep: the part of the reference that is the seed-0 rung's luck (its noise floor)."""
    directions = objective.directions
    known = objective.known()
    keys = front_keys(known, directions, reference)
    candidates = {k: objective.candidate(k) for k in keys}
    usable = [k for k in keys if candidates[k] is not None]
    at = directions.index("maximize")
    print(f"# re-scoring the reference front ({len(usable)} of its {len(keys)} members: the others' parameters are "
          f"not in the cache) with fine-tune seeds 1..{seeds - 1}; latency and size do not depend on the seed",
          flush=True)
    scores: dict[int, dict[str, float]] = {0: {k: known[k][at] for k in usable}}
    for seed in range(1, seeds):
        other = SearchObjective(out / f"seed{seed}", DEVICE, epochs=objective.settings.distillation.epochs,
                                cache=cache.with_suffix(f".seed{seed}.json") if cache else None, train_seed=seed)
        scores[seed] = {}
        for key in usable:
            values = other(candidates[key])
            scores[seed][key] = values[at] if values is not None else float("nan")
        other.close()

    def volume(accuracy: dict[str, float]) -> float:
        points = []
        for key in usable:
            values = list(known[key])
            values[at] = accuracy[key]
            points.append(minimized(values, directions))
        return hypervolume(np.asarray(points, dtype=float), reference)

    for key in usable:
        print(f"#   {key:34s} accuracy " + "  ".join(f"seed {s} {scores[s][key]:.3f}" for s in sorted(scores)))
    base = volume(scores[0])
    for seed in sorted(scores)[1:]:
        print(f"# the front re-scored with seed {seed} keeps {volume(scores[seed]) / base:.3f} of its hypervolume")
    mean = {k: statistics.mean(scores[s][k] for s in scores) for k in usable}
    print(f"# the front re-scored with the mean over seeds 0..{seeds - 1} keeps {volume(mean) / base:.3f} of its "
          f"hypervolume; mean accuracy of its members: seed 0 {statistics.mean(scores[0].values()):.4f}, "
          + ", ".join(f"seed {s} {statistics.mean(scores[s].values()):.4f}" for s in sorted(scores)[1:]))


def median_trials(reached: Sequence[int | None], trials: int) -> tuple[float, str]:
    value = statistics.median([r if r is not None else trials + 1 for r in reached])
    return value, (f">{trials}" if value > trials else f"{value:g}")


def render(best: float, histories: dict[str, list[list[float]]], trials: int, *, default: str) -> None:
    """Print the table (HV@k per sampler, trials to 90% and to 95%) and the RESULT line."""
    checkpoints = [k for k in (5, 10, 20, 30, 40, 60, 80, 100, 150, 200) if k <= trials]
    width = max(16, *(len(name) + len(" (default)") for name in histories))
    print(f"{'sampler':{width}s}" + "".join(f"  HV@{k:<4d}" for k in checkpoints)
          + "  to_90  trials_to_95 (per seed; median)")
    medians: dict[tuple[str, float], str] = {}
    for name, runs in histories.items():
        mean_at = [statistics.mean(h[k - 1] for h in runs) / best for k in checkpoints]
        for share in (0.90, 0.95):
            medians[name, share] = median_trials([trials_to_reach(h, share * best) for h in runs], trials)[1]
        reached = [trials_to_reach(h, 0.95 * best) for h in runs]
        per_seed = ", ".join(str(r) if r is not None else f">{trials}" for r in reached)
        label = f"{name} (default)" if name == default else name
        print(f"{label:{width}s}" + "".join(f"  {m:6.3f}" for m in mean_at)
              + f"  {medians[name, 0.90]:>5s}  {per_seed}; median {medians[name, 0.95]}")
    print(f"RESULT trials_to_95_default={medians[default, 0.95]} trials_to_95_random={medians[BASELINE, 0.95]} "
          f"default={default} trials_to_90_default={medians[default, 0.90]} trials_to_90_random={medians[BASELINE, 0.90]}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40, help="trials per run (default: 40)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per sampler (default: 3)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are FIRST..FIRST+SEEDS-1 (default: 0): other "
                        "seeds check a figure on runs it was not chosen on")
    parser.add_argument("--samplers", default="surrogate,nsga2,tpe,gp,random,random+warm",
                        help="comma-separated; nsga2:pop=N,mut=P is NSGA-II with population N and mutation probability P, "
                        "nsga3 is NSGA-III (experiments)")
    parser.add_argument("--epochs", type=int, default=None, help="accuracy rung epochs (default: the search's)")
    parser.add_argument("--json", type=Path, help="also write every run's history here")
    parser.add_argument("--cache", type=Path, help="keep every built candidate's values in this file and reuse them; "
                        "the reference front then also holds every candidate the file has seen")
    parser.add_argument("--rescore-seeds", type=int, default=1, metavar="K",
                        help="re-score the reference front with fine-tune seeds 1..K-1 (how much of it is luck)")
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
                if histories.get(name) == runs:
                    continue  # the same runs again (a cached sampler in a later invocation): printed once
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
        print(f"# objectives {objective.names}; reference point {reference} (minimized form: accuracy negated)",
              flush=True)
        runs: dict[str, list[list[list[float]]]] = {name: [] for name in samplers}
        run_keys: dict[str, list[list[str]]] = {name: [] for name in samplers}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for name in samplers:
                t0 = time.monotonic()
                run_keys[name].append([])
                points = run_search(name, seed, args.trials, evaluate=objective, space=objective.space,
                                    directions=directions, warm_start=name not in (BASELINE,),
                                    keys=run_keys[name][-1])
                runs[name].append(points)
                print(f"# {name:12s} seed {seed}: {time.monotonic() - t0:6.1f} s, "
                      f"{objective.evaluations} candidates built so far, {objective.hits} cache hits", flush=True)
        known = objective.known_points()
        best, reached, histories = summarize(runs, reference, args.trials, known)
        if args.rescore_seeds > 1:
            rescore_front(objective, reference, args.rescore_seeds, Path(tmp), args.cache)
        print(f"# latency of every candidate: {', '.join(sorted(objective.latency_sources))} "
              f"({objective.evaluations} candidates built, {objective.hits} cache hits)")
        objective.close()
    print(f"# reference hypervolume (front of all {sum(len(r) for v in runs.values() for r in v)} evaluated points"
          f"{f' and the {len(known)} candidates of the cache' if args.cache else ''}): {best:.6g}")
    print(f"# {args.trials} trials x {args.seeds} seeds per sampler; HV@k is the mean over seeds of the hypervolume "
          f"after k trials / reference; {time.monotonic() - started:.0f} s wall on this machine")
    if args.json:
        args.json.write_text(json.dumps({"reference_hypervolume": best, "histories": histories,
                                         "trials_to_95": reached, "keys": run_keys}, indent=1))
    render(best, histories, args.trials, default=default)
    return 0


if __name__ == "__main__":
    sys.exit(main())
