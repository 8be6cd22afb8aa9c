"""What a fit works on: the teacher, how to call it, and its data."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from devicefit.evaluators._data import TaskData


@dataclasses.dataclass(frozen=True)
class Task:
    """A trained model and the data to fit it with.

    Attributes:
        name: Short name, used in the run's records (``digits-vit``).
        teacher: The trained ``paddle.nn.Layer`` (eval mode); never modified.
        input_spec: ``paddle.static.InputSpec`` list for exporting ``teacher`` and its students.
        data: Train/validation/test splits.
        description: One line for the banner and the report.
        program: The ``.pdmodel`` the teacher was loaded from when there is no code (``--model model.pdmodel``);
            the fit then searches the program's precision and sparsity only. ``None`` for a model with code.
    """

    name: str
    teacher: Any
    input_spec: list[Any]
    data: TaskData
    description: str = ""
    program: Path | None = None
