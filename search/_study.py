"""Opening the Optuna study of a run: storage, sampler, directions, and recovery of stale trials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devicefit.search._records import Objective


class StudyMismatchError(ValueError):
    """An existing study was made with different objectives than this run asks for."""


def open_study(path: Path, name: str, objectives: list[Objective], seed: int, population_size: int) -> Any:
    """Create, or load to resume, the study in the SQLite file ``path``.

    Trials left RUNNING by a process that died (a local SQLite study has one process) are marked FAILED,
    with the user attribute ``error`` saying so, so that they neither linger nor count as done.

    Raises:
        StudyMismatchError: The stored study has other objectives (e.g. other devices).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size)
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        directions=[objective.direction for objective in objectives],
        load_if_exists=True,
    )
    names = [objective.name for objective in objectives]
    stored = study.user_attrs.get("objectives")
    if stored is None:
        study.set_user_attr("objectives", names)
        study.set_user_attr("units", {o.name: o.unit for o in objectives})
    elif stored != names:
        raise StudyMismatchError(
            f"the study in {path} has objectives {stored}, this run asks for {names}: "
            "use another --out folder, or the same devices as before"
        )
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_user_attr(trial._trial_id, "error", "interrupted: its process ended mid-trial")
        storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    return study


def finished_trial_count(study: Any) -> int:
    """Trials that count towards the run's total: complete, rejected, or failed (interruptions excluded)."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return sum(
        1 for trial in study.get_trials(deepcopy=False, states=states) if not trial.user_attrs.get("interrupted")
    )
