"""A user's own model and data: where a fit's Task comes from when it is not a shipped example.

A model comes in one of two ways:

- ``--model path/to/file.py:factory``: a function (no arguments) in that file returns the trained
  ``paddle.nn.Layer`` and its input spec, ``(model, [paddle.static.InputSpec(...), ...])``. With the code,
  every dimension of the search space is open (depth, heads, FFN width, precision ...).
- ``--model path/to/model.pdmodel``: an exported inference program (``paddle.jit.save``; the
  ``.pdiparams`` beside it), without its code, as PaddleSlim's auto-compression accepts. Only dimensions
  that need no code are searched (precision, sparsity: :class:`~devicefit.spaces._program_space.ProgramSpace`);
  :func:`program_dimensions` says which are open and which closed.

Data comes from ``--data`` (an ``.npz`` or ``.csv`` file: :func:`devicefit.evaluators.load_task_data`,
layouts in :mod:`devicefit.evaluators._sources`; an unsplit file is split by the run's seed) or, through
the Python API, as a :class:`~devicefit.evaluators.TaskData`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from devicefit.evaluators._data import TaskData
from devicefit.search._task import Task
from devicefit.spaces._program_space import NEEDS_CODE, Dimension, describe_dimensions, program_bounds  # noqa: F401
from devicefit.spaces._program_space import program_dimensions as _program_dimensions

SourceKind = Literal["example", "factory", "program"]


class ModelSourceError(ValueError):
    """The model or data cannot be used; the message (one line) says which and why."""


@dataclasses.dataclass(frozen=True)
class TaskSource:
    """Where a fit's teacher and data come from.

    Attributes:
        kind: ``example`` (a shipped example), ``factory`` (a Python file's function) or ``program`` (an
            exported ``.pdmodel`` without code).
        reference: The example's name, ``/abs/file.py:factory``, or ``/abs/model.pdmodel``.
        data: The ``.npz`` with the user's data (None for an example, which ships its own).
    """

    kind: SourceKind
    reference: str
    data: Path | None = None

    def to_spec(self) -> dict[str, Any]:
        """The run-spec entries a joining worker needs to load the same task."""
        if self.kind == "example":
            return {"example": self.reference}
        return {"example": None, "model": self.reference, "data": None if self.data is None else str(self.data)}

    def describe(self) -> str:
        """One line for banners and reports."""
        if self.kind == "example":
            return f"example {self.reference}"
        what = "factory" if self.kind == "factory" else "inference program (no code)"
        return f"{what} {self.reference}, data {self.data}"


def parse_task_source(
    example: str | None, model: str | None, data: str | Path | None, *, data_given_apart: bool = False
) -> TaskSource:
    """Check the model and data arguments (files exist, names are well formed) without loading anything.

    Args:
        example: A shipped example's name.
        model: ``file.py:factory`` or ``model.pdmodel``.
        data: An ``.npz`` file (needed with ``model``).
        data_given_apart: The data comes as a TaskData (Python API), so ``data`` may be None.

    Raises:
        ModelSourceError: Both or neither of ``example`` and ``model``; a missing file; a malformed reference.
    """
    if model is not None and example is not None:
        raise ModelSourceError("give --model or --example, not both")
    if model is None:
        if data is not None:
            raise ModelSourceError("--data goes with --model (an example ships its own data)")
        if example is None:
            raise ModelSourceError("give --model file.py:factory, --model model.pdmodel or --example NAME")
        from devicefit.examples import UnknownExampleError, example_info

        try:
            example_info(example)
        except UnknownExampleError as exc:
            raise ModelSourceError(str(exc).strip("'\"")) from None
        return TaskSource("example", example)
    data_path: Path | None = None
    if data is None and not data_given_apart:
        raise ModelSourceError(f"--model {model} needs --data file.npz (the arrays to fine-tune and score it on)")
    if data is not None:
        data_path = Path(data)
        if data_path.suffix.lower() not in (".npz", ".csv"):
            raise ModelSourceError(f"--data {data}: expected a .npz or .csv file")
        if not data_path.is_file():
            raise ModelSourceError(f"--data {data}: no such file")
        data_path = data_path.resolve()
    if model.endswith(".pdmodel"):
        program = Path(model)
        if not program.is_file():
            raise ModelSourceError(f"--model {model}: no such file")
        if not program.with_suffix(".pdiparams").is_file():
            raise ModelSourceError(f"--model {model}: its weights {program.with_suffix('.pdiparams').name} are not beside it")
        return TaskSource("program", str(program.resolve()), data_path)
    file_part, sep, factory = model.rpartition(":")
    if not sep or not file_part.endswith(".py") or not factory.isidentifier():
        raise ModelSourceError(f"--model {model}: expected path/to/file.py:factory or path/to/model.pdmodel")
    if not Path(file_part).is_file():
        raise ModelSourceError(f"--model {model}: no such file {file_part}")
    return TaskSource("factory", f"{Path(file_part).resolve()}:{factory}", data_path)


def task_source_from_spec(spec: Mapping[str, Any]) -> TaskSource:
    """The source a run spec (stored in the study by ``devicefit fit``) names."""
    if spec.get("model"):
        reference = str(spec["model"])
        kind: SourceKind = "program" if reference.endswith(".pdmodel") else "factory"
        return TaskSource(kind, reference, Path(spec["data"]) if spec.get("data") else None)
    return TaskSource("example", str(spec["example"]))


# --------------------------------------------------------------------------------------------------
# data


def load_npz(path: Path, *, num_classes: int | None = None, seed: int = 0) -> TaskData:
    """Read a task's splits from an ``.npz`` file (``numpy.savez``).

    Layout: ``train_labels``, ``val_labels``, ``test_labels`` (integer class ids ``[N]``), and for each split
    the model's inputs as ``<split>_inputs`` (one input) or ``<split>_inputs_0``, ``<split>_inputs_1``, ...
    (one array per ``forward`` argument, in order, each ``[N, ...]``); or, unsplit, ``labels`` and
    ``inputs`` / ``inputs_0``, ... split by ``seed``. An optional scalar ``num_classes`` overrides the number
    of classes (by default: the caller's, else the largest label + 1). The reader is
    :func:`devicefit.evaluators._sources.load_npz`.

    Raises:
        DataError: An array is missing (named) or the splits fail :class:`TaskData`'s checks.
    """
    from devicefit.evaluators._sources import load_npz as read

    return read(path, num_classes=num_classes, seed=seed)


# --------------------------------------------------------------------------------------------------
# models


def _load_factory(reference: str) -> tuple[Any, list[Any]]:
    from devicefit.spaces._paddle import import_paddle

    paddle = import_paddle()
    file_part, _, factory_name = reference.rpartition(":")
    path = Path(file_part)
    module_name = "devicefit_user_model_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelSourceError(f"--model {reference}: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # so that the file can import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001  (the user's code: report its error in one line)
        raise ModelSourceError(f"--model {reference}: importing {path.name} failed: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ModelSourceError(f"--model {reference}: {path.name} has no function '{factory_name}'")
    try:
        made = factory()
    except Exception as exc:  # noqa: BLE001
        raise ModelSourceError(f"--model {reference}: {factory_name}() failed: {type(exc).__name__}: {exc}") from None
    if not (isinstance(made, tuple) and len(made) == 2):
        raise ModelSourceError(f"--model {reference}: {factory_name}() must return (model, input_spec), "
                               f"got {type(made).__name__}")
    model, input_spec = made
    if not isinstance(model, paddle.nn.Layer):
        raise ModelSourceError(f"--model {reference}: {factory_name}() returned {type(model).__name__}, not a paddle.nn.Layer")
    if not isinstance(input_spec, (list, tuple)) or not all(isinstance(s, paddle.static.InputSpec) for s in input_spec):
        raise ModelSourceError(f"--model {reference}: the input spec must be a list of paddle.static.InputSpec")
    model.eval()
    return model, list(input_spec)


def _load_program(reference: str) -> tuple[Any, list[Any]]:
    from devicefit.spaces._paddle import import_paddle
    from devicefit.spaces._program import ProgramError, read_program_info

    paddle = import_paddle()
    try:
        info = read_program_info(Path(reference))
    except ProgramError as exc:
        raise ModelSourceError(f"--model {exc}") from None
    try:
        model = paddle.jit.load(str(Path(reference).with_suffix("")))
    except Exception as exc:  # noqa: BLE001  (Paddle's loader: report in one line)
        raise ModelSourceError(f"--model {reference}: Paddle cannot load it: {type(exc).__name__}: "
                               f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
    model.eval()
    spec = [paddle.static.InputSpec([None if d < 0 else d for d in i.shape], i.dtype, i.name) for i in info.inputs]
    return model, spec


def _check_model_on_data(model: Any, data: TaskData, reference: str) -> int:
    """Run the model on two training samples; return the width of its logits."""
    from devicefit.spaces._paddle import import_paddle

    paddle = import_paddle()
    sample = data.train.take(slice(0, 2))
    try:
        with paddle.no_grad():
            logits = model(*[paddle.to_tensor(x) for x in sample.inputs])
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        shapes = ", ".join(f"{x.dtype} {list(x.shape[1:])}" for x in sample.inputs)
        raise ModelSourceError(f"--model {reference} does not run on the data (inputs per sample: {shapes}): "
                               f"{type(exc).__name__}: {first}") from None
    shape = list(logits.shape)
    if len(shape) != 2:
        raise ModelSourceError(f"--model {reference}: its output has shape {shape}; a classifier's logits are [batch, classes]")
    return int(shape[1])


def load_model(source: TaskSource) -> tuple[Any, list[Any]]:
    """The teacher and its input spec of a ``factory`` or ``program`` source (imports Paddle; runs the factory).

    Raises:
        ModelSourceError: The factory or program cannot be loaded.
    """
    if source.kind == "factory":
        return _load_factory(source.reference)
    if source.kind == "program":
        return _load_program(source.reference)
    raise ValueError(f"an {source.kind} source has no model of its own to load")


def make_task(source: TaskSource, model: Any, input_spec: list[Any], data: TaskData) -> Task:
    """A Task of a user's model and data, checked: the model runs on the data and covers its labels.

    Raises:
        ModelSourceError: The number of inputs differs, the model fails on the data, or labels exceed its classes.
    """
    from devicefit.evaluators._sources import reshape_to_input_spec

    data = reshape_to_input_spec(data, input_spec)  # a CSV's flat rows, to the model's per-sample shape
    if len(input_spec) != len(data.train.inputs):
        raise ModelSourceError(f"--model {source.reference} takes {len(input_spec)} inputs; the data has "
                               f"{len(data.train.inputs)} input arrays per split")
    classes = _check_model_on_data(model, data, source.reference)
    largest = max(int(split.labels.max()) for split in (data.train, data.val, data.test))
    if largest >= classes:
        raise ModelSourceError(f"the data's labels go up to {largest} but --model {source.reference} has {classes} outputs")
    if classes != data.num_classes:
        data = dataclasses.replace(data, num_classes=classes)
    file_part, _, factory = source.reference.rpartition(":")
    name = f"{Path(file_part).stem}:{factory}" if source.kind == "factory" else Path(source.reference).stem
    program = Path(source.reference) if source.kind == "program" else None
    return Task(name=name, teacher=model, input_spec=input_spec, data=data, description=source.describe(),
                program=program)


def load_task(source: TaskSource, *, seed: int = 0, data: TaskData | None = None) -> Task:
    """Build the Task of ``source`` (imports Paddle; runs the user's factory).

    Args:
        source: Where the model (and data) come from.
        seed: The split seed of an example, or of a data file that is not split.
        data: The user's data, when it is not read from ``source.data`` (the Python API).

    Raises:
        ModelSourceError: The factory or program cannot be loaded, or does not run on the data.
        DataError: The data file does not hold the documented layout.
    """
    if source.kind == "example":
        from devicefit.examples import load_example

        return load_example(source.reference, seed=seed)
    if data is None:
        if source.data is None:
            raise ModelSourceError(f"--model {source.reference} needs data")
        from devicefit.evaluators._sources import load_task_data

        data = load_task_data(source.data, seed=seed)
    model, input_spec = load_model(source)
    return make_task(source, model, input_spec, data)


# --------------------------------------------------------------------------------------------------
# what can be searched


def program_dimensions(
    devices_precisions: Sequence[Sequence[str]], space: Mapping[str, Any] | None = None
) -> list[Dimension]:
    """The dimensions a code-less inference program leaves open, and why the others are closed.

    Structural dimensions (depth, heads, FFN and hidden width) need the code. Precision is open when the
    devices share more than fp32 (int8 by PaddleSlim's post-training quantization of the program, fp16 by
    Paddle Lite's conversion); sparsity (magnitude pruning of the program's matmul weights) is open unless
    ``space`` fixes it. The fit's banner says the same (``ProgramSpace.describe``).

    Args:
        devices_precisions: The precisions each target device runs.
        space: The user's space bounds (``--space``), as plain values.

    Raises:
        BoundsError: ``space`` sets a structural bound or is not a valid set of bounds.
    """
    from devicefit.device_profiles._schema import SchemaError, from_mapping
    from devicefit.spaces._space import BoundsError, SpaceBounds

    shared = set(devices_precisions[0]) if devices_precisions else {"fp32"}
    for precisions in devices_precisions[1:]:
        shared &= set(precisions)
    runnable = [p for p in ("fp32", "fp16", "int8") if p in shared | {"fp32"}]
    user = dict(space or {})
    try:
        bounds = from_mapping({"precisions": runnable, **user}, SpaceBounds, source="space", what="space bounds")
    except (SchemaError, ValueError) as exc:
        raise BoundsError(str(exc)) from None
    return _program_dimensions(program_bounds(bounds, set(user)))
