"""The engine: studies, budgets, Pareto fronts, outputs and the command line.

Importing this package stays light (no Paddle, no Optuna); the submodules load them when they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devicefit.search._fit import Fit, FitResult, FitSettings
    from devicefit.search._task import Task

__all__ = ["Fit", "FitResult", "FitSettings", "Task"]


def __getattr__(name: str) -> Any:
    if name in ("Fit", "FitResult", "FitSettings"):
        from devicefit.search import _fit

        return getattr(_fit, name)
    if name == "Task":
        from devicefit.search._task import Task

        return Task
    raise AttributeError(f"module 'devicefit.search' has no attribute {name!r}")
