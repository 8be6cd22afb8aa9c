"""The Optuna study of a run: storage, directions, heartbeats, and recovery of trials whose process died.

A run's study lives in Optuna's RDB storage: a SQLite file in the output folder by default, or PostgreSQL
when workers on several machines share one search. Each running trial records which process runs it and
sends heartbeats; a trial whose process is gone is marked FAILED (with ``interrupted`` set, so it does not
use up the trial budget), either at once (same host, process no longer alive) or when its heartbeat is
older than the grace period (another host).
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any

from devicefit.search._records import Objective

HEARTBEAT_INTERVAL_SECONDS = 20
GRACE_PERIOD_SECONDS = 90
WORKER_ATTR = "worker"


class StudyMismatchError(ValueError):
    """An existing study was made with different objectives than this run asks for."""


def sqlite_url(path: Path) -> str:
    """The storage URL of a SQLite file."""
    return f"sqlite:///{Path(path).resolve()}"


def make_storage(url: str) -> Any:
    """Optuna RDB storage with heartbeats, for ``url`` (``sqlite:///...`` or ``postgresql://...``)."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=HEARTBEAT_INTERVAL_SECONDS, grace_period=GRACE_PERIOD_SECONDS
        )


def open_study(url: str, name: str, objectives: list[Objective], sampler: Any, *, create: bool = True) -> Any:
    """Create, or load to resume, the study ``name`` in the storage at ``url``; fail trials of dead processes.

    Args:
        url: Storage URL.
        name: Study name.
        objectives: The run's objectives (the study records their names and units).
        sampler: The Optuna sampler this process uses.
        create: Create the study if it does not exist (a worker joining a search passes False).

    Raises:
        StudyMismatchError: The stored study has other objectives (e.g. other devices).
        KeyError: ``create`` is False and there is no such study.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(url)
    directions = [objective.direction for objective in objectives]
    if create:
        study = optuna.create_study(
            study_name=name, storage=storage, sampler=sampler, directions=directions, load_if_exists=True
        )
    else:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    names = [objective.name for objective in objectives]
    stored = study.user_attrs.get("objectives")
    if stored is None:
        study.set_user_attr("objectives", names)
        study.set_user_attr("units", {o.name: o.unit for o in objectives})
    elif stored != names:
        raise StudyMismatchError(
            f"the study '{name}' has objectives {stored}, this run asks for {names}: "
            "use another --out folder (or study name), or the same devices as before"
        )
    fail_dead_trials(study)
    return study


def this_worker() -> dict[str, Any]:
    """Who runs a trial: host name and process id."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mark_interrupted(storage: Any, trial_id: int, reason: str) -> bool:
    import optuna

    try:
        storage.set_trial_user_attr(trial_id, "error", reason)
        storage.set_trial_user_attr(trial_id, "interrupted", True)
        return bool(storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # another process got there first


def fail_dead_trials(study: Any) -> int:
    """Mark FAILED the running trials whose process is gone; returns how many.

    A trial started on this host by a process that no longer exists is failed at once; a trial whose
    heartbeat is older than the grace period (its host died, or its process hangs) is failed too.
    """
    import optuna

    storage = study._storage
    host = socket.gethostname()
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER_ATTR) or {}
        if worker.get("host") == host and worker.get("pid") != os.getpid() and not _process_alive(int(worker["pid"])):
            failed += _mark_interrupted(storage, trial._trial_id, "interrupted: its process ended mid-trial")
    # The same private call optuna.storages.fail_stale_trials makes; done here to mark the trials first.
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        failed += _mark_interrupted(storage, trial_id, "interrupted: its worker stopped sending heartbeats")
    return failed


def ask(study: Any) -> Any:
    """``study.ask()``, without Optuna's warning that heartbeats are meant for ``optimize`` (we beat ourselves)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        return study.ask()


class Heartbeat:
    """Records a running trial's heartbeat every interval in a background thread (context manager)."""

    def __init__(self, study: Any, trial: Any, interval_seconds: float = HEARTBEAT_INTERVAL_SECONDS) -> None:
        self._storage = study._storage
        self._trial_id = trial._trial_id
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial.number}", daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception:  # noqa: BLE001  (a missed beat must not kill the trial; the next one retries)
                pass
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)


def finished_trial_count(study: Any) -> int:
    """Trials that count towards the run's total: complete, rejected, or failed (interruptions excluded)."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return sum(
        1 for trial in study.get_trials(deepcopy=False, states=states) if not trial.user_attrs.get("interrupted")
    )
