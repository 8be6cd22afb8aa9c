"""The search space of an inference program without its code (``--model model.pdmodel``).

Without the code that built the model, devicefit cannot rebuild it smaller: depth, heads, FFN width and hidden
width stay closed. What needs no code stays open, as in PaddleSlim's auto-compression of programs:

- precision: among those every target device runs (``fp32``; ``fp16`` by Paddle Lite's conversion; ``int8`` by
  PaddleSlim's post-training quantization of the program), plus weight-only bits if the bounds ask for them.
  The program is deployed by the same code as a cut student (:func:`~devicefit.spaces._precision.deploy_candidate`).
- sparsity: unstructured magnitude pruning of the program's matmul weights (every 2-D weight a ``matmul_v2``,
  ``matmul`` or ``mul`` op reads), the same ratio in every matrix, with the masks of PaddleSlim's
  ``UnstructuredPruner`` (:func:`~devicefit.spaces._materialize.magnitude_masks`), as the cut students' sparsity.

A candidate is a :class:`Candidate` with ``program=True``. Its student is the program loaded by
``paddle.jit.load`` (a ``TranslatedLayer``) with the candidate's weights; its export writes the teacher's own
program with the student's weights under their original names (byte-identical whichever process writes it).

The student is not fine-tuned: Paddle 2.6.2 computes no gradient through a ``jit.load``-ed layer (its outputs
come back with ``stop_gradient=True`` and its parameters get no ``.grad``, checked on the digits ViT and on a
single ``Linear``), so the space says :attr:`ProgramSpace.finetunes` is false and the fit scores candidates as
built (rung ``no-finetune``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from devicefit.spaces._candidate import CALIBRATIONS, PRECISIONS, Calibration, Candidate, Precision
from devicefit.spaces._export import MODEL_FILE, PARAMS_FILE, Artifact, strip_op_callstacks
from devicefit.spaces._space import BoundsError, SearchSpace, SpaceBounds

if TYPE_CHECKING:
    import optuna

#: Sparsities searched on a program when the user's bounds name none.
PROGRAM_SPARSITIES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
#: Why the structural dimensions are closed.
NEEDS_CODE = "needs the model's code to rebuild it smaller (give --model file.py:factory)"
#: Bounds that only a model with code can use.
STRUCTURAL_BOUNDS = ("search_depth", "min_depth", "search_heads", "min_heads", "search_ffn", "ffn_step", "min_ffn",
                     "search_hidden", "hidden_step", "min_hidden", "max_fp32_layers")
#: Why the program's students are not fine-tuned (the rung is ``no-finetune``).
NO_FINETUNE_REASON = "Paddle 2.6 computes no gradient through a jit.load-ed program, so candidates are scored as built"


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One dimension of the search space, and whether this model leaves it open.

    Attributes:
        name: ``depth``, ``heads``, ``FFN width``, ``hidden width``, ``precision``, ``sparsity``.
        open: Whether the search varies it.
        why: Why it is closed, or what it ranges over.
    """

    name: str
    open: bool
    why: str


def program_bounds(bounds: SpaceBounds, given: Collection[str] = ()) -> SpaceBounds:
    """The bounds of a program's space: ``bounds`` with the program's default sparsities unless ``given`` names them.

    Args:
        bounds: The run's bounds (precisions: those every target device runs, plus the user's settings).
        given: The bounds the user set (``--space`` keys).

    Raises:
        BoundsError: The user set a structural bound, which a program without code cannot use.
    """
    structural = sorted(set(given) & set(STRUCTURAL_BOUNDS))
    if structural:
        raise BoundsError(f"{', '.join(structural)}: an inference program without its code keeps its structure "
                          "(depth, heads, FFN and hidden width need the model's code: give --model file.py:factory)")
    if "sparsities" not in given:
        bounds = dataclasses.replace(bounds, sparsities=PROGRAM_SPARSITIES)
    return bounds


def program_dimensions(bounds: SpaceBounds) -> list[Dimension]:
    """Which dimensions a program's space with ``bounds`` searches, and why the others are closed."""
    precisions = list(bounds.precisions)
    if bounds.weight_only_bits and "fp32" in precisions:
        precisions += [f"fp32+wo{bits}" for bits in bounds.weight_only_bits]
    if len(precisions) > 1:
        precision = Dimension("precision", True, "/".join(precisions) + (
            f" (int8: PaddleSlim post-training quantization, calibration {'/'.join(bounds.calibrations)})"
            if "int8" in bounds.precisions else ""))
    elif bounds.precisions == ("fp32",):
        precision = Dimension("precision", False, "the devices run only fp32")
    else:
        precision = Dimension("precision", False, f"fixed to {bounds.precisions[0]} by the bounds")
    ratios = "/".join(f"{s:g}" for s in bounds.sparsities)
    sparsity = (Dimension("sparsity", True, f"{ratios} of every matmul weight (magnitude)")
                if len(bounds.sparsities) > 1 else Dimension("sparsity", False, f"fixed to {ratios} by the bounds"))
    return [
        Dimension("depth", False, NEEDS_CODE),
        Dimension("heads", False, NEEDS_CODE),
        Dimension("FFN width", False, NEEDS_CODE),
        Dimension("hidden width", False, NEEDS_CODE),
        precision,
        sparsity,
    ]


def describe_dimensions(dimensions: Sequence[Dimension]) -> str:
    """``open: ...; closed: depth, heads (why); precision (why)`` in one line, dimensions grouped by reason."""

    def grouped(items: list[Dimension]) -> str:
        reasons: dict[str, list[str]] = {}
        for item in items:
            reasons.setdefault(item.why, []).append(item.name)
        return "; ".join(f"{', '.join(names)} ({why})" for why, names in reasons.items()) or "none"

    return (f"open: {grouped([d for d in dimensions if d.open])}; "
            f"closed: {grouped([d for d in dimensions if not d.open])}")


def load_program_layer(model_file: Path) -> Any:
    """The program of ``model_file`` (``.pdiparams`` beside it) as a ``TranslatedLayer``, in eval mode."""
    from devicefit.spaces._paddle import import_paddle

    paddle = import_paddle()
    layer = paddle.jit.load(str(Path(model_file).with_suffix("")))
    layer.eval()
    return layer


def original_names(layer: Any) -> dict[str, str]:
    """``TranslatedLayer`` tensor name -> the name in the saved program (``jit.load`` appends ``_0``, ``_1``, ...)."""
    renamed: dict[str, str] = {}
    for holder in layer._program_holder_dict.values():  # noqa: SLF001  (the only record of the renaming)
        renamed.update(holder._suffix_varname_dict or {})  # noqa: SLF001
    return renamed


def matmul_weights(model_file: Path) -> list[str]:
    """Names of the program's 2-D weights that a ``matmul_v2``/``matmul``/``mul`` op reads, sorted."""
    from devicefit.spaces._paddle import import_paddle
    from devicefit.spaces._precision import QUANTIZED_OP_TYPES

    import_paddle()
    from paddle.base.proto import framework_pb2

    program = framework_pb2.ProgramDesc.FromString(Path(model_file).read_bytes())
    block = program.blocks[0]
    shapes = {var.name: list(var.type.lod_tensor.tensor.dims) for var in block.vars if var.persistable}
    names = set()
    for op in block.ops:
        if op.type in QUANTIZED_OP_TYPES:
            for slot in op.inputs:
                names.update(name for name in slot.arguments if len(shapes.get(name, ())) == 2)
    return sorted(names)


def remove_identity_dropouts(program: Any) -> int:
    """Remove the dropout ops that pass their input through at inference from a ``ProgramDesc``; returns how many.

    An ``upscale_in_train`` dropout (or one of probability 0) is the identity at inference, yet a program
    saved by ``paddle.jit.save`` keeps it, Paddle Lite keeps a kernel for it on ARM, and device profiles have
    no latency for it. devicefit's own exports leave such dropouts out (``without_inference_dropout``); this
    does the same to a program: later ops (and the fetch) read the dropout's input instead of its output.
    """
    block = program.blocks[0]
    renamed: dict[str, str] = {}
    removed: set[str] = set()
    kept = []
    for op in block.ops:
        for slot in op.inputs:
            slot.arguments[:] = [renamed.get(name, name) for name in slot.arguments]
        attrs = {attr.name: attr for attr in op.attrs}
        identity = op.type == "dropout" and (
            ("dropout_implementation" in attrs and attrs["dropout_implementation"].s == "upscale_in_train")
            or ("dropout_prob" in attrs and attrs["dropout_prob"].f == 0.0)
        )
        inputs = {slot.parameter: list(slot.arguments) for slot in op.inputs}
        outputs = {slot.parameter: list(slot.arguments) for slot in op.outputs}
        if identity and len(inputs.get("X", [])) == 1 and len(outputs.get("Out", [])) == 1:
            renamed[outputs["Out"][0]] = inputs["X"][0]
            removed.update(name for names in outputs.values() for name in names)
            continue
        kept.append(op)
    if not renamed:
        return 0
    used = {name for op in kept for slots in (op.inputs, op.outputs) for slot in slots for name in slot.arguments}
    variables = [var for var in block.vars if var.name not in removed or var.name in used]
    del block.ops[:]
    block.ops.extend(kept)
    del block.vars[:]
    block.vars.extend(variables)
    return len(renamed)


def write_program(model_file: Path, weights: Mapping[str, np.ndarray], directory: Path) -> Artifact:
    """The program of ``model_file`` with ``weights`` (program name -> values) in place of its own, in ``directory``.

    The ``.pdmodel`` is the user's program without its identity dropouts (:func:`remove_identity_dropouts`) and
    with its op call stacks emptied (as every export's are); the ``.pdiparams`` is serialized by Paddle from the
    program's persistable tensors (sorted by name, the order every reader expects). Re-saving the program
    through Paddle instead would append a ``scale`` op per output, named from Paddle's process-wide counters:
    the bytes would depend on what the process did before. Every weight of the program must be given.
    """
    from devicefit.spaces._precision import _load, _set_weight, static_mode

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with static_mode() as paddle:
        scope = paddle.static.Scope()
        executor = paddle.static.Executor(paddle.CPUPlace())
        with paddle.static.scope_guard(scope):
            program, feed_names, fetch_targets = _load(paddle, Path(model_file).parent, executor, Path(model_file).stem)
            persistable = sorted(var.name for var in program.list_vars()
                                 if var.persistable and var.name not in ("feed", "fetch"))
            missing = [name for name in persistable if name not in weights]
            if missing:
                raise ValueError(f"no values for the program's weights {missing[:3]}")
            for name in persistable:
                _set_weight(paddle, scope, name, np.asarray(weights[name]))
            feeds = [program.global_block().var(name) for name in feed_names]
            params = paddle.static.serialize_persistables(feeds, fetch_targets, executor, program=program)
    from paddle.base.proto import framework_pb2

    program_desc = framework_pb2.ProgramDesc.FromString(Path(model_file).read_bytes())
    remove_identity_dropouts(program_desc)
    (directory / MODEL_FILE).write_bytes(program_desc.SerializeToString(deterministic=True))
    (directory / PARAMS_FILE).write_bytes(params)
    strip_op_callstacks(directory / MODEL_FILE)
    return Artifact.from_directory(directory)


def export_program_layer(model_file: Path, layer: Any, directory: Path) -> Artifact:
    """Write the program of ``model_file`` with the weights of ``layer`` (its ``TranslatedLayer``) into ``directory``."""
    names = original_names(layer)
    weights = {names.get(t.name, t.name): t.numpy() for t in [*layer.parameters(), *layer.buffers()]}
    return write_program(model_file, weights, directory)


class ProgramSpace(SearchSpace):
    """Precision and sparsity of an inference program, searched without its code (see the module).

    Args:
        model_file: The ``.pdmodel`` (its ``.pdiparams`` beside it).
        calibration_inputs: Calibration samples for int8 (one array per program input, feed order).
        bounds: The space's bounds (:func:`program_bounds`); structural fields are ignored.
    """

    finetunes = False
    no_finetune_reason = NO_FINETUNE_REASON

    def __init__(self, model_file: Path, calibration_inputs: tuple[np.ndarray, ...], *, bounds: SpaceBounds) -> None:
        self.model_file = Path(model_file)
        self.calibration_inputs = calibration_inputs
        self.bounds = bounds
        self.weights = matmul_weights(self.model_file)
        self.dimensions = program_dimensions(bounds)
        if not self.weights:
            raise BoundsError(f"{self.model_file.name} has no matmul weight: there is nothing to sparsify or quantize")
        if not any(d.open for d in self.dimensions):
            raise BoundsError(f"nothing is left to search in an inference program without its code: "
                              f"{describe_dimensions(self.dimensions)}")

    # -- dimensions -----------------------------------------------------------------------------------

    def _int8_searched(self) -> bool:
        return "int8" in self.bounds.precisions

    def _weight_only_searched(self) -> bool:
        return bool(self.bounds.weight_only_bits) and "fp32" in self.bounds.precisions

    def _candidate(self, sparsity: float, precision: Precision, calibration: Calibration, weight_only: int) -> Candidate:
        """The canonical candidate for drawn values: settings that do not apply to the precision are dropped."""
        return Candidate(
            layers=(), heads=(), ffn=(), precision=precision, sparsity=sparsity, program=True,
            calibration=calibration if precision == "int8" else None,
            weight_only_bits=weight_only if (weight_only and precision == "fp32") else None,  # type: ignore[arg-type]
        )

    # -- the contract ---------------------------------------------------------------------------------

    def suggest(self, trial: optuna.Trial) -> Candidate:
        b = self.bounds
        sparsity = float(trial.suggest_categorical("sparsity", list(b.sparsities))) if len(b.sparsities) > 1 else b.sparsities[0]
        precision: Precision = trial.suggest_categorical("precision", list(b.precisions)) if len(b.precisions) > 1 else b.precisions[0]
        calibration: Calibration = b.calibrations[0]
        if self._int8_searched() and len(b.calibrations) > 1:  # drawn on every trial, used by int8 ones
            calibration = trial.suggest_categorical("calibration", list(b.calibrations))
        weight_only = 0
        if self._weight_only_searched():
            weight_only = int(trial.suggest_categorical("weight_only_bits", [0, *b.weight_only_bits]))
        return self._candidate(sparsity, precision, calibration, weight_only)

    def params_for(self, candidate: Candidate) -> dict[str, Any]:
        b = self.bounds
        params: dict[str, Any] = {}
        if len(b.sparsities) > 1:
            params["sparsity"] = candidate.sparsity
        if len(b.precisions) > 1:
            params["precision"] = candidate.precision
        calibration = b.calibrations[0]
        if self._int8_searched() and len(b.calibrations) > 1:
            calibration = candidate.calibration or b.calibrations[0]
            params["calibration"] = calibration
        weight_only = 0
        if self._weight_only_searched():
            weight_only = candidate.weight_only_bits or 0
            params["weight_only_bits"] = weight_only
        sparsity = candidate.sparsity if len(b.sparsities) > 1 else b.sparsities[0]
        precision = candidate.precision if len(b.precisions) > 1 else b.precisions[0]
        expected = self._candidate(sparsity, precision, calibration, weight_only)
        if expected != candidate:
            raise ValueError(f"this space cannot suggest {candidate.describe()} (the closest is {expected.describe()})")
        return params

    def materialize(self, candidate: Candidate) -> Any:
        """The program as a ``TranslatedLayer`` whose matmul weights have the candidate's sparsity (fp32)."""
        if not candidate.program:
            raise ValueError(f"a program's space builds program candidates only, not {candidate.describe()}")
        student = load_program_layer(self.model_file)
        if candidate.sparsity > 0:
            from devicefit.spaces._materialize import magnitude_masks

            names = original_names(student)
            targets = {p.name: p for p in student.parameters() if names.get(p.name) in self.weights}
            shadow = load_program_layer(self.model_file)  # the pruner hooks into the model it is given
            shadow_names = original_names(shadow)
            by_original = {names[name]: name for name in targets}
            masks = magnitude_masks(
                shadow, [p.name for p in shadow.parameters() if shadow_names.get(p.name) in self.weights],
                candidate.sparsity,
            )
            for shadow_name, mask in masks.items():
                parameter = targets[by_original[shadow_names[shadow_name]]]
                parameter.set_value(parameter.numpy() * mask)
        return student

    def export(self, student: Any, input_spec: list[Any], directory: Path) -> Artifact:
        """Write the program with ``student``'s weights (fp32) as ``directory/model.pdmodel`` + ``.pdiparams``."""
        del input_spec  # the program's own inputs
        return export_program_layer(self.model_file, student, directory)

    def deploy(self, student: Any, candidate: Candidate, input_spec: list[Any], directory: Path) -> Artifact:
        from devicefit.spaces._precision import deploy_candidate

        return deploy_candidate(student, candidate, input_spec, directory, calibration_inputs=self.calibration_inputs,
                                export=self.export)

    def full_candidate(self) -> Candidate:
        return Candidate(layers=(), heads=(), ffn=(), program=True)

    def encode(self, candidate: Candidate) -> np.ndarray:
        """Sparsity, precision one-hot, calibration one-hot, weight-only bits / 32."""
        vector = np.zeros(1 + len(PRECISIONS) + len(CALIBRATIONS) + 1)
        vector[0] = candidate.sparsity
        vector[1 + PRECISIONS.index(candidate.precision)] = 1.0
        if candidate.calibration is not None:
            vector[1 + len(PRECISIONS) + CALIBRATIONS.index(candidate.calibration)] = 1.0
        vector[-1] = (candidate.weight_only_bits or 0) / 32.0
        return vector

    def warm_start(self) -> list[Candidate]:
        """The teacher as it is; then each other precision dense; then the sparsest at the cheapest precision,
        then the middle sparsity (only what the bounds allow)."""
        b = self.bounds
        base: Precision = "fp32" if "fp32" in b.precisions else b.precisions[0]
        dense = min(b.sparsities)
        starts = [self._candidate(dense, base, b.calibrations[0], 0)]
        for precision in b.precisions:
            starts.append(self._candidate(dense, precision, b.calibrations[0], 0))
        cheapest: Precision = "int8" if self._int8_searched() else "fp16" if "fp16" in b.precisions else base
        ordered = sorted(b.sparsities)
        starts.append(self._candidate(ordered[-1], cheapest, b.calibrations[0], 0))
        starts.append(self._candidate(ordered[len(ordered) // 2], base, b.calibrations[0], 0))
        unique: dict[str, Candidate] = {}
        for candidate in starts:
            unique.setdefault(candidate.key(), candidate)
        return list(unique.values())

    def describe(self) -> str:
        return (f"inference program {self.model_file.name} without its code ({len(self.weights)} matmul weights): "
                f"{describe_dimensions(self.dimensions)}")
