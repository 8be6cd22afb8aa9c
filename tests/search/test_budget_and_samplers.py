from __future__ import annotations

import optuna
import pytest

from devicefit.evaluators._types import LatencyResult
from devicefit.search._budget import Budget, feasible, memory_violations, parse_duration_seconds, parse_latency_budget
from devicefit.search._samplers import SAMPLERS, make_sampler, nsga2_population, warm_start_for


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("45", 45), (" 1.5m ", 90)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0", "-5m", "5 minutes", "m"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration_seconds(text)


def test_latency_budget_for_every_device_or_one() -> None:
    devices = ["host-x86", "sd865"]
    assert parse_latency_budget("8ms", devices) == {"host-x86": 8.0, "sd865": 8.0}
    assert parse_latency_budget("sd865=2.5", devices) == {"sd865": 2.5}
    with pytest.raises(ValueError, match="not one of the run's devices"):
        parse_latency_budget("pixel=3ms", devices)
    with pytest.raises(ValueError, match="must be positive"):
        parse_latency_budget("0", devices)


def test_violations_are_relative_and_signed() -> None:
    budget = Budget(latency_ms={"a": 2.0}, size_bytes=1000, max_accuracy_drop=0.02)
    assert budget.names() == ["latency_ms:a", "size_bytes", "accuracy_drop"]
    met = budget.violations(accuracy=0.95, latency_ms={"a": 1.0}, size_bytes=500, teacher_accuracy=0.96)
    assert met == pytest.approx([-0.5, -0.5, (0.94 - 0.95) / 0.94])
    assert feasible(met)
    missed = budget.violations(accuracy=0.90, latency_ms={"a": 3.0}, size_bytes=500, teacher_accuracy=0.96)
    assert missed[0] == pytest.approx(0.5) and missed[2] > 0 and not feasible(missed)
    with pytest.raises(ValueError):
        Budget(latency_ms={"a": 0.0})


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_runs_a_constrained_multi_objective_study(name: str) -> None:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(name, seed=1, trials=12))
    for _ in range(14):
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        y = trial.suggest_int("y", 1, 4)
        trial.set_constraint("x_at_most_half", x - 0.5)
        study.tell(trial, [x * y, x + y])
    assert len(study.trials) == 14
    assert len({tuple(t.params.items()) for t in study.trials}) > 1
    assert all("constraints:x_at_most_half" in t.system_attrs for t in study.trials)


def test_same_seed_same_proposals() -> None:
    def proposals() -> list[float]:
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler("nsga2", seed=7, trials=12))
        values = []
        for _ in range(10):
            trial = study.ask()
            x = trial.suggest_float("x", 0, 1)
            study.tell(trial, [x, x * x])
            values.append(x)
        return values

    assert proposals() == proposals()
    assert nsga2_population(12) == 4 and nsga2_population(600) == 50


def test_a_device_memory_limit_becomes_a_constraint_only_where_memory_was_measured() -> None:
    def result(device: str, peak: int | None, limit: int | None) -> LatencyResult:
        return LatencyResult(device, 1.0, "measured", "min-of-runs", None, None, None, 1, 1, 0.0, 100,
                             memory_peak_bytes=peak, memory_limit_bytes=limit)

    latencies = {
        "phone": result("phone", 300, 200),   # over its limit by half
        "board": result("board", 100, 400),   # well inside
        "host": result("host", 100, None),    # no limit
        "npu": result("npu", None, 400),      # no memory figure (e.g. predicted)
    }
    assert memory_violations(latencies) == {"memory_bytes:phone": 0.5, "memory_bytes:board": -0.75}


def test_the_surrogate_starts_from_the_first_half_of_the_warm_start_and_the_others_from_all_of_it() -> None:
    starts = [f"point{i}" for i in range(15)]  # the teacher first, then the grid, shallowest first
    assert warm_start_for("surrogate", starts) == starts[:7]
    assert warm_start_for("surrogate", starts[:10]) == starts[:6]  # never fewer than its start-up trials
    assert warm_start_for("surrogate", starts[:4]) == starts[:4]
    assert warm_start_for("nsga2", starts) == warm_start_for("random", starts) == starts
