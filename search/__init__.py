"""The engine: studies, budgets, Pareto fronts, outputs, reports, exports and the command line.

The Python API has the command line's verbs: :func:`fit`, :func:`search`, :func:`report`, :func:`export`,
plus :func:`trials_dataframe` (pandas, one row per trial) and :func:`report_data` (the report as data).
Importing this package stays light (no Paddle, no Optuna); the submodules load them when they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devicefit.search._api import export, fit, report, report_data, search, trials_dataframe
    from devicefit.search._fit import Fit, FitResult, FitSettings
    from devicefit.search._task import Task

__all__ = [
    "Fit",
    "FitResult",
    "FitSettings",
    "Task",
    "export",
    "fit",
    "report",
    "report_data",
    "search",
    "trials_dataframe",
]

_API = ("export", "fit", "report", "report_data", "search", "trials_dataframe")


def __getattr__(name: str) -> Any:
    if name in ("Fit", "FitResult", "FitSettings"):
        from devicefit.search import _fit

        return getattr(_fit, name)
    if name == "Task":
        from devicefit.search._task import Task

        return Task
    if name in _API:
        from devicefit.search import _api

        return getattr(_api, name)
    raise AttributeError(f"module 'devicefit.search' has no attribute {name!r}")
