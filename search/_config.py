"""``devicefit fit -c fit.yaml``: the run's options in a file, validated strictly; flags on the command line win.

The file holds the same options as ``devicefit fit``'s flags, with the same meaning and syntax (a key is the
flag's name without ``--``, with ``_`` for ``-``; ``devices`` is the list of ``--device``, ``predict`` the list
of ``--predict``)::

    model: model.py:build_teacher        # or example: digits-vit
    data: data.npz
    devices: [host-x86, sd865-cpu-4t]    # the phone's profile is reached by 'none': its latency is predicted
    trials: 24
    time: 30m
    max_latency: ["host-x86=0.4ms"]
    max_size: 2MB
    max_accuracy_drop: 1.5
    sampler: surrogate
    space: {min_depth: 2, precisions: [fp32, int8]}   # devicefit.spaces.SpaceBounds; --space flags win per key
    metric: macro_f1                     # accuracy (top-1, the default) or macro_f1
    final: true                          # rung 3 on the Pareto members after the search
    final_epochs: 30
    out: runs/my-model

Relative paths (``model``, ``data``, ``out``, device profile ``.yaml`` files) are relative to the config
file's folder. The file is checked by :mod:`devicefit.device_profiles._schema`: an unknown key, a wrong type
or an invalid value is an error that names the file, the line and the key.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

SAMPLERS = ("nsga2", "surrogate", "tpe", "gp", "random")


def _flag_check(field: str, converter: Any, text: str) -> Any:
    """Run a command-line converter; its error becomes a ValueError that starts with the field's name."""
    try:
        return converter(text)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise ValueError(f"{field} {exc}") from None


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """The content of a fit config file; every key is optional (see the module docstring).

    Attributes mirror ``devicefit fit``'s flags: ``max_accuracy_drop`` in accuracy points, ``max_size`` and
    ``time`` as the flags write them (``2MB``, ``30m``), ``max_latency`` as a list of ``[DEVICE=]MS``, ``predict``
    as the list of ``--predict``.
    """

    example: str | None = None
    model: str | None = None
    data: str | None = None
    devices: tuple[str, ...] = ()
    predict: tuple[str, ...] = ()
    trials: int | None = None
    time: str | None = None
    max_latency: tuple[str, ...] = ()
    max_size: str | None = None
    max_accuracy_drop: float | None = None
    sampler: Literal["nsga2", "surrogate", "tpe", "gp", "random"] | None = None
    latency_objective: Literal["per-device", "worst"] | None = None
    out: str | None = None
    storage: str | None = None
    study: str | None = None
    seed: int | None = None
    epochs: int | None = None
    promote_epochs: int | None = None
    no_ladder: bool | None = None
    metric: Literal["accuracy", "macro_f1"] | None = None
    final: bool | None = None
    final_epochs: int | None = None
    final_qat_epochs: int | None = None
    quiet: bool | None = None
    space: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        from devicefit.search import cli

        for name in ("trials", "final_epochs", "final_qat_epochs"):
            if getattr(self, name) is not None:
                _flag_check(name, cli._positive_int, str(getattr(self, name)))
        for name in ("seed", "epochs", "promote_epochs"):
            if getattr(self, name) is not None:
                _flag_check(name, cli._non_negative_int, str(getattr(self, name)))
        if self.time is not None:
            _flag_check("time", cli._duration, self.time)
        if self.max_size is not None:
            _flag_check("max_size", cli._size_bytes, self.max_size)
        if self.max_accuracy_drop is not None:
            _flag_check("max_accuracy_drop", cli._accuracy_points, str(self.max_accuracy_drop))
        if self.model is not None and self.example is not None:
            raise ValueError("model and example cannot both be given")
        if self.space is not None:
            try:
                space_overrides(self.space, None, source="space")
            except ValueError as exc:  # "space: key 'min_depth': ..." -> "space key 'min_depth': ..." (see _schema)
                raise ValueError("space " + str(exc).removeprefix("space: ")) from None


def load_config(path: Path) -> FitConfig:
    """Read and validate a config file.

    Raises:
        SchemaError: Unknown key, wrong type or invalid value; the message starts with ``<file>:<line>:``.
        OSError: The file cannot be read.
    """
    from devicefit.device_profiles._schema import load_yaml

    return load_yaml(Path(path), FitConfig, what="fit config")


_APPEND = object()  # marker: an ``append`` action, whose "not given" value is None


def explicit_options(parser: argparse.ArgumentParser, argv: Sequence[str], command: str) -> set[str]:
    """The destinations of the options that ``argv`` gives explicitly to ``command``'s sub-parser.

    Parses ``argv`` again with every default of that sub-parser replaced by a marker, so an option given
    with its default value still counts as given.
    """
    marker = object()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    sub = subparsers.choices[command]
    defaults = {}
    for action in sub._actions:  # noqa: SLF001
        if action.dest in ("help", argparse.SUPPRESS):
            continue
        defaults[action.dest] = None if isinstance(action, argparse._AppendAction) else marker  # noqa: SLF001
    sub.set_defaults(**defaults)
    namespace = parser.parse_args(list(argv))
    return {dest for dest, default in defaults.items() if getattr(namespace, dest, default) is not default}


def apply_config(args: argparse.Namespace, config: FitConfig, folder: Path, explicit: set[str]) -> argparse.Namespace:
    """``args`` with each option the file sets and the command line does not.

    Args:
        args: The parsed command line.
        config: The file's content.
        folder: The config file's folder (relative paths in it are relative to it).
        explicit: Destinations given on the command line (:func:`explicit_options`); they win.
    """
    from devicefit.search import cli

    def relative(text: str) -> str:
        path = Path(text).expanduser()
        return str(path if path.is_absolute() else folder / path)

    values: dict[str, Any] = {}
    if config.example is not None:
        values["example"] = config.example
    if config.model is not None:
        file_part, sep, factory = config.model.rpartition(":")
        values["model"] = f"{relative(file_part)}:{factory}" if sep and file_part.endswith(".py") else relative(config.model)
    if config.data is not None:
        values["data"] = relative(config.data)
    if config.devices:
        values["devices"] = [relative(d) if d.endswith((".yaml", ".yml")) else d for d in config.devices]
    if config.predict:
        values["predict"] = [relative(d) if d.endswith((".yaml", ".yml")) else d for d in config.predict]
    if config.trials is not None:
        values["trials"] = config.trials
    if config.time is not None:
        values["time_seconds"] = cli._duration(config.time)
    if config.max_latency:
        values["max_latency"] = list(config.max_latency)
    if config.max_size is not None:
        values["max_size"] = cli._size_bytes(config.max_size)
    if config.max_accuracy_drop is not None:
        values["max_accuracy_drop"] = cli._accuracy_points(str(config.max_accuracy_drop))
    if config.out is not None:
        values["out"] = Path(relative(config.out))
    if config.space is not None:
        values["space_file"] = config.space
    for name in ("sampler", "latency_objective", "storage", "study", "seed", "epochs", "promote_epochs", "no_ladder",
                 "metric", "final", "final_epochs", "final_qat_epochs", "quiet"):
        if getattr(config, name) is not None:
            values[name] = getattr(config, name)
    merged = vars(args).copy()
    for dest, value in values.items():
        if dest not in explicit:
            merged[dest] = value
    if "model" in explicit and "example" not in explicit:
        merged["example"] = None  # --model on the command line replaces the file's example
    if "example" in explicit and "model" not in explicit:
        merged["model"], merged["data"] = None, None
    return argparse.Namespace(**merged)


def space_overrides(
    from_file: dict[str, Any] | None, flags: Sequence[str] | None, *, source: str = "--space"
) -> dict[str, Any]:
    """The search space's bounds the user set: the config file's ``space:`` mapping, then each ``--space
    KEY=VALUE`` flag on top. Returns plain values (they go into the study's run spec for workers), checked
    against :class:`devicefit.spaces.SpaceBounds`.

    A flag's value is read as YAML (``2``, ``false``, ``[fp32, int8]``); for a list key, a comma-separated
    value is a list (``precisions=fp32,int8``, ``sparsities=0,0.5``).

    Raises:
        ValueError: A flag is not ``KEY=VALUE``, or a key or value does not fit ``SpaceBounds``.
    """
    import typing

    import yaml

    from devicefit.device_profiles._schema import from_mapping
    from devicefit.spaces._space import SpaceBounds

    hints = typing.get_type_hints(SpaceBounds)
    merged: dict[str, Any] = dict(from_file or {})
    for text in flags or ():
        key, sep, raw = text.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--space {text}: expected KEY=VALUE, e.g. min_depth=2 or precisions=fp32,int8")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise ValueError(f"--space {text}: the value is not readable") from None
        if typing.get_origin(hints.get(key)) is tuple and not isinstance(value, list):
            value = [] if value is None else [yaml.safe_load(part) for part in str(raw).split(",") if part.strip()]
        merged[key] = value
    from_mapping(merged, SpaceBounds, source=source, what="space bounds")
    return merged
