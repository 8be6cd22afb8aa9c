"""Finding a finished (or running) search again: from its output folder, or from its storage URL.

``devicefit report``, ``export``, ``dashboard`` and the Python API all start from "a run": either the
output folder that ``devicefit fit`` wrote (its ``run.json`` names the study and where it is stored), or an
Optuna storage URL (``sqlite:///...``, ``postgresql://...``) plus, when the storage holds several studies,
the study's name. Everything else they need is read from the study itself.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"
STUDY_FILE = "study.db"
URL_SCHEMES = ("sqlite:///", "postgresql://", "postgresql+psycopg2://", "mysql://", "mysql+pymysql://")


class RunNotFoundError(LookupError):
    """The folder or URL does not lead to a devicefit study; the message says what was found instead."""


@dataclasses.dataclass(frozen=True)
class RunLocation:
    """Where a run's study is, and its output folder when that is known.

    Attributes:
        storage_url: Optuna storage URL of the study.
        study_name: The study's name in that storage.
        out: The run's output folder (candidate files, ``models/``), or ``None`` when it is not on this
            machine.
    """

    storage_url: str
    study_name: str
    out: Path | None


def is_storage_url(target: str | Path) -> bool:
    """Whether ``target`` names a database rather than a folder."""
    return isinstance(target, str) and target.startswith(URL_SCHEMES)


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def _study_names(url: str) -> list[str]:
    import optuna

    if url.startswith("sqlite:///"):
        database = Path(url[len("sqlite:///"):])
        if not database.is_file():  # Optuna would create an empty database there
            raise RunNotFoundError(f"{url}: no such database file")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return [summary.study_name for summary in optuna.get_all_study_summaries(storage=url, include_best_trial=False)]
    except Exception as exc:  # noqa: BLE001  (a bad URL or an unreachable server: say which, in one line)
        first = (str(exc).strip().splitlines() or [""])[0]
        raise RunNotFoundError(f"cannot read studies from {url}: {type(exc).__name__}: {first}") from None


def _pick_study(url: str, wanted: str | None) -> str:
    names = _study_names(url)
    if wanted is not None:
        if wanted not in names:
            raise RunNotFoundError(f"no study '{wanted}' in {url} (studies there: {', '.join(names) or 'none'})")
        return wanted
    if len(names) == 1:
        return names[0]
    if not names:
        raise RunNotFoundError(f"{url} holds no study")
    raise RunNotFoundError(f"{url} holds several studies ({', '.join(names)}): name one with --study")


def _spec_out(url: str, study_name: str) -> Path | None:
    """The output folder that ``devicefit fit`` stored in the study's run spec, if it exists here."""
    import optuna

    for summary in optuna.get_all_study_summaries(storage=url, include_best_trial=False):
        if summary.study_name == study_name:
            out = (summary.user_attrs.get("spec") or {}).get("out")
            if out and Path(out).is_dir():
                return Path(out)
    return None


def locate_run(target: str | Path, study_name: str | None = None) -> RunLocation:
    """Find the study of a run.

    Args:
        target: The run's output folder, or an Optuna storage URL.
        study_name: The study's name; needed only when the storage holds several studies (for a folder, the
            name in its ``run.json`` is used unless this is given).

    Raises:
        RunNotFoundError: No such folder, not a devicefit run, no such study, or the storage cannot be read.
    """
    if is_storage_url(target):
        url = str(target)
        name = _pick_study(url, study_name)
        return RunLocation(url, name, _spec_out(url, name))
    folder = Path(target)
    if not folder.exists():
        raise RunNotFoundError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise RunNotFoundError(f"{folder} is not a folder (give a run's output folder or a storage URL)")
    run_file = folder / RUN_FILE
    stored: dict[str, Any] = {}
    if run_file.is_file():
        try:
            stored = dict(json.loads(run_file.read_text(encoding="utf-8")).get("study") or {})
        except (ValueError, AttributeError):
            raise RunNotFoundError(f"{run_file} is not valid JSON") from None
    storage = str(stored.get("storage") or STUDY_FILE)
    if is_storage_url(storage):
        url = storage
    else:
        database = folder / storage
        if not database.is_file():
            raise RunNotFoundError(f"{folder} is not a devicefit run (no {RUN_FILE} naming a study, no {STUDY_FILE})")
        url = _sqlite_url(database)
    name = _pick_study(url, study_name or stored.get("name"))
    return RunLocation(url, name, folder)


def load_run_study(location: RunLocation) -> Any:
    """The run's Optuna study, loaded to be read (no heartbeats, no sampler state)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=location.study_name, storage=location.storage_url)
