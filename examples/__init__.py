"""Small real tasks that ship their data, usable as ``devicefit fit --example <name>``.

Importing this package imports neither Paddle nor the examples' modules: the registry is plain data.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devicefit.search._task import Task


class UnknownExampleError(LookupError):
    """No example has that name."""


@dataclasses.dataclass(frozen=True)
class ExampleInfo:
    """An example: its name, the module whose ``build_task(seed)`` returns the Task, and one line about it."""

    name: str
    module: str
    description: str


EXAMPLES: dict[str, ExampleInfo] = {
    info.name: info
    for info in (
        ExampleInfo(
            "digits-vit",
            "devicefit.examples.digits_vit.task",
            "4-layer ViT (d=64, 4 heads, FFN 128) trained on scikit-learn's bundled 8x8 digits",
        ),
        ExampleInfo(
            "digits-bert",
            "devicefit.examples.digits_bert.task",
            "4-layer BERT-style encoder (d=64, 4 heads, FFN 128) on the same digits as 65 intensity tokens",
        ),
    )
}


def example_info(name: str) -> ExampleInfo:
    """The registry entry for ``name``.

    Raises:
        UnknownExampleError: With the known names in the message.
    """
    try:
        return EXAMPLES[name]
    except KeyError:
        known = ", ".join(sorted(EXAMPLES))
        raise UnknownExampleError(f"unknown example '{name}' (known: {known})") from None


def load_example(name: str, *, seed: int = 0) -> Task:
    """Build the example's Task (this trains nothing: the teacher's weights ship with the example)."""
    module = importlib.import_module(example_info(name).module)
    return module.build_task(seed=seed)


__all__ = ["EXAMPLES", "ExampleInfo", "UnknownExampleError", "example_info", "load_example"]
