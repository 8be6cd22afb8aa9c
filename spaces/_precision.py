"""Bit-width: turn an exported fp32 program into the int8, fp16 or weight-only model a device runs.

- ``int8``: PaddleSlim's post-training static quantization (``quant_post_static``) of the exported program,
  calibrated on training samples with the candidate's algorithm. Every matmul is quantized: the linear
  layers' weight GEMMs (weights per output channel, activations per tensor) and the attention score and
  context products, as Paddle Lite's ARM kernels then run them (checked on the optimized program: ``fc``
  and ``matmul_v2`` marked int8). The linear layers of the blocks a candidate keeps in fp32 are left out
  (mixed precision per block; Paddle Lite then runs those ``fc`` in fp32). In Paddle the program's
  fake-quantization ops simulate the int8 numerics, which is how its accuracy is measured here.
  (Leaving the attention products out in PaddleSlim does not keep them fp32 in Paddle Lite, which takes
  their scales from the neighbouring observers; the simulation would then differ from the device.)
- ``fp16``: Paddle Lite converts the fp32 program with fp16 kernels. Paddle has no fp16 kernels on this
  CPU, so the accuracy comes from a simulation program: weights rounded to fp16 and every intermediate
  float tensor rounded to fp16 (a cast to fp16 and back after each op). Accumulation inside a kernel stays
  fp32, so the simulation is slightly optimistic.
- weight-only int8/int16: Paddle Lite's converter stores the weights of matmul and conv2d ops as integers
  (absolute maximum per output channel, C rounding, as its ``post_quant_dynamic_pass`` does; seen on the
  optimized programs: every block projection and the patch convolution, not the embeddings) and
  dequantizes them when it loads the model. The simulation program holds those dequantized weights. It
  cannot be checked against Paddle Lite on this host: its x86 kernels return NaN for such models.

Static-mode work runs inside :func:`static_mode`, which restores dynamic mode afterwards, with a private
scope: nothing leaks into the caller's Paddle state.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from devicefit.spaces._candidate import Calibration, Candidate, WeightOnlyBits
from devicefit.spaces._export import (
    MODEL_FILE,
    MODEL_PREFIX,
    PARAMS_FILE,
    Artifact,
    QuantizationInfo,
    export_inference_model,
)
from devicefit.spaces._paddle import import_paddle, import_paddleslim

#: Op types whose weight GEMMs post-training quantization turns into int8.
QUANTIZED_OP_TYPES = ("matmul_v2", "matmul", "mul")
#: Where a deployment keeps its fp32 program (int8) or its simulation program (fp16, weight-only).
FP32_DIR = "fp32"
SIMULATION_DIR = "simulated"
#: Op types (and the weight input) that Paddle Lite's weight-only quantization converts, with the channel axis.
_WEIGHT_ONLY_OPS = {"matmul_v2": ("Y", 1), "matmul": ("Y", 1), "mul": ("Y", 1), "conv2d": ("Filter", 0)}
_QUIET_LOGGERS = ("paddleslim", "paddle.static.quantization", "post_training_quantization", "quanter")


class QuantizationError(RuntimeError):
    """Post-training quantization could not quantize the program; the message says why in one line."""


@contextlib.contextmanager
def static_mode() -> Iterator[Any]:
    """Run the block in Paddle's static mode and restore the previous mode afterwards; yields ``paddle``."""
    paddle = import_paddle()
    was_dynamic = paddle.in_dynamic_mode()
    paddle.enable_static()
    try:
        yield paddle
    finally:
        if was_dynamic:
            paddle.disable_static()


@contextlib.contextmanager
def _quiet_quantization_logs() -> Iterator[None]:
    """Quieten PaddleSlim/Paddle quantization: INFO logs and the progress bars they draw on stderr."""
    saved = {}
    for name in list(logging.root.manager.loggerDict):
        if any(part in name for part in _QUIET_LOGGERS):
            logger = logging.getLogger(name)
            saved[name] = logger.level
            logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _load(paddle: Any, directory: Path, executor: Any, prefix: str = MODEL_PREFIX) -> tuple[Any, list[str], list[Any]]:
    program, feed_names, fetch_targets = paddle.static.load_inference_model(str(Path(directory) / prefix), executor)
    return program, list(feed_names), list(fetch_targets)


def _save(paddle: Any, directory: Path, program: Any, feed_names: list[str], fetch_targets: list[Any], executor: Any) -> None:
    Path(directory).mkdir(parents=True, exist_ok=True)
    block = program.global_block()
    feeds = [block.var(name) for name in feed_names]
    paddle.static.save_inference_model(str(Path(directory) / MODEL_PREFIX), feeds, fetch_targets, executor, program=program)


def _persistable_names(program: Any) -> set[str]:
    return {var.name for var in program.list_vars() if var.persistable}


def _gemm_weights(program: Any) -> list[str]:
    persistable = _persistable_names(program)
    return sorted(
        {name for op in program.global_block().ops if op.type in QUANTIZED_OP_TYPES for name in op.input_arg_names if name in persistable}
    )


class _ArraySamples:
    """Calibration samples as a ``paddle.io.Dataset``: sample ``i`` is ``tuple(x[i] for x in inputs)``."""

    def __init__(self, inputs: tuple[np.ndarray, ...]) -> None:
        self.inputs = inputs

    def __len__(self) -> int:
        return int(len(self.inputs[0]))

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(x[index]) for x in self.inputs)


def quantize_post_static(
    fp32: Artifact,
    directory: Path,
    calibration_inputs: tuple[np.ndarray, ...],
    *,
    algo: Calibration,
    fp32_weights: Sequence[str] = (),
    batch_size: int = 32,
) -> Artifact:
    """Quantize the exported fp32 program in ``fp32.directory`` to int8 with PaddleSlim, into ``directory``.

    Args:
        fp32: The exported fp32 program.
        directory: Where ``model.pdmodel``/``model.pdiparams`` of the quantized program are written.
        calibration_inputs: One array per program input (feed order), batch first: the calibration samples.
        algo: PaddleSlim's calibration algorithm (``abs_max``, ``avg``, ``hist``, ``KL``, ``mse``).
        fp32_weights: Names of weight tensors whose linear layers stay fp32.
        batch_size: Calibration samples per batch.

    Raises:
        QuantizationError: PaddleSlim failed (the message names the algorithm and the cause).
    """
    slim = import_paddleslim()
    started = time.perf_counter()
    samples = int(len(calibration_inputs[0]))
    with static_mode() as paddle:
        scope = paddle.static.Scope()
        executor = paddle.static.Executor(paddle.CPUPlace())
        with paddle.static.scope_guard(scope):
            program, feed_names, _ = _load(paddle, fp32.directory, executor)
        if len(feed_names) != len(calibration_inputs):
            raise QuantizationError(
                f"the program takes {len(feed_names)} inputs ({feed_names}); got {len(calibration_inputs)} calibration arrays"
            )
        weights = _gemm_weights(program)
        kept_fp32 = sorted(set(fp32_weights) & set(weights))
        with paddle.static.program_guard(paddle.static.Program(), paddle.static.Program()):
            feeds = [
                paddle.static.data(name, [None, *array.shape[1:]], str(array.dtype))
                for name, array in zip(feed_names, calibration_inputs)
            ]
        loader = paddle.io.DataLoader(
            _ArraySamples(calibration_inputs),
            feed_list=feeds,
            return_list=False,
            batch_size=batch_size,
            shuffle=False,
            drop_last=False,
        )
        try:
            # PaddleSlim saves the result from the global scope (it ignores ``scope`` there), so the
            # private scope is made the global one for the call.
            with _quiet_quantization_logs(), paddle.static.scope_guard(scope):
                slim.quant.quant_post_static(
                    executor,
                    str(fp32.directory),
                    str(directory),
                    data_loader=loader,
                    model_filename=MODEL_FILE,
                    params_filename=PARAMS_FILE,
                    save_model_filename=MODEL_FILE,
                    save_params_filename=PARAMS_FILE,
                    batch_size=batch_size,
                    scope=scope,
                    algo=algo,
                    quantizable_op_type=list(QUANTIZED_OP_TYPES),
                    weight_quantize_type="channel_wise_abs_max",
                    onnx_format=True,
                    skip_tensor_list=kept_fp32 or None,
                )
        except IndexError as exc:
            raise QuantizationError(
                f"PaddleSlim's '{algo}' calibration failed ({exc}): Paddle 2.6's 'avg' reshapes every observed "
                "tensor by its first axis and fails on 0-D tensors such as paddle.shape(x)[0]; choose another "
                "algorithm or avoid 0-D tensors in forward"
            ) from None
    info = QuantizationInfo(
        algo=algo,
        calibration_samples=samples,
        quantized_weights=len(weights) - len(kept_fp32),
        fp32_weights=len(kept_fp32),
        seconds=time.perf_counter() - started,
    )
    return Artifact.from_directory(directory, precision="int8", quantization=info)


def _round_half_away(values: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, halves away from zero (C's ``round``, which Paddle Lite uses)."""
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def fake_quantize_per_channel(weight: np.ndarray, bits: int, axis: int) -> np.ndarray:
    """``weight`` quantized to ``bits``-bit integers with one absolute-maximum scale per index of ``axis``, and back."""
    levels = float((1 << (bits - 1)) - 1)
    other = tuple(a for a in range(weight.ndim) if a != axis)
    scale = np.max(np.abs(weight), axis=other, keepdims=True) / levels
    safe = np.where(scale > 0, scale, 1.0)
    return (_round_half_away(weight / safe) * scale).astype(weight.dtype)


def _rewrite_program(source: Path, target: Path, rewrite: Any) -> None:
    """Load the program in ``source``, let ``rewrite(paddle, program, scope)`` change it, save it in ``target``."""
    with static_mode() as paddle:
        scope = paddle.static.Scope()
        executor = paddle.static.Executor(paddle.CPUPlace())
        with paddle.static.scope_guard(scope):
            program, feed_names, fetch_targets = _load(paddle, source, executor)
            rewrite(paddle, program, scope)
            _save(paddle, target, program, feed_names, fetch_targets, executor)


def _set_weight(paddle: Any, scope: Any, name: str, values: np.ndarray) -> None:
    scope.find_var(name).get_tensor().set(np.ascontiguousarray(values), paddle.CPUPlace())


def _get_weight(scope: Any, name: str) -> np.ndarray:
    return np.array(scope.find_var(name).get_tensor())


def simulate_weight_only(fp32: Artifact, directory: Path, bits: WeightOnlyBits) -> Artifact:
    """The fp32 artifact deployed with Paddle Lite's weight-only quantization, and its simulation program.

    The program written to ``directory`` holds the weights that Paddle Lite dequantizes at load time.
    """

    def rewrite(paddle: Any, program: Any, scope: Any) -> None:
        persistable = _persistable_names(program)
        done = set()
        for op in program.global_block().ops:
            if op.type not in _WEIGHT_ONLY_OPS:
                continue
            slot, axis = _WEIGHT_ONLY_OPS[op.type]
            for name in op.input(slot):
                if name in persistable and name not in done:
                    weight = _get_weight(scope, name)
                    if weight.ndim in (2, 4) and weight.dtype == np.float32:
                        _set_weight(paddle, scope, name, fake_quantize_per_channel(weight, bits, axis))
                    done.add(name)

    _rewrite_program(fp32.directory, directory, rewrite)
    return Artifact.from_directory(fp32.directory, weight_only_bits=bits, simulation_dir=Path(directory))


def simulate_fp16(fp32: Artifact, directory: Path) -> Artifact:
    """The fp32 artifact deployed with Paddle Lite's fp16 kernels, and its simulation program (see the module)."""

    def rewrite(paddle: Any, program: Any, scope: Any) -> None:
        var_type = paddle.base.core.VarDesc.VarType
        fp32_type, fp16_type = var_type.FP32, var_type.FP16

        def is_fp32_tensor(var: Any) -> bool:
            return var.type == var_type.LOD_TENSOR and var.dtype == fp32_type

        for var in program.list_vars():
            if var.persistable and is_fp32_tensor(var) and scope.find_var(var.name) is not None:
                weight = _get_weight(scope, var.name)
                _set_weight(paddle, scope, var.name, weight.astype(np.float16).astype(np.float32))
        block = program.global_block()
        index = 0
        while index < len(block.ops):
            op = block.ops[index]
            index += 1
            if op.type in ("feed", "fetch"):
                continue
            for name in op.output_arg_names:
                var = block.var(name)
                if var.persistable or not is_fp32_tensor(var):
                    continue
                half = block.create_var(name=f"{name}.fp16", dtype=fp16_type, shape=var.shape)
                back = block.create_var(name=f"{name}.fp16.fp32", dtype=fp32_type, shape=var.shape)
                block._insert_op(index, type="cast", inputs={"X": var}, outputs={"Out": half}, attrs={"in_dtype": fp32_type, "out_dtype": fp16_type})  # noqa: SLF001
                block._insert_op(index + 1, type="cast", inputs={"X": half}, outputs={"Out": back}, attrs={"in_dtype": fp16_type, "out_dtype": fp32_type})  # noqa: SLF001
                index += 2
                for later in block.ops[index:]:
                    later._rename_input(name, back.name)  # noqa: SLF001

    _rewrite_program(fp32.directory, directory, rewrite)
    return Artifact.from_directory(fp32.directory, precision="fp16", simulation_dir=Path(directory))


def deploy_candidate(
    student: Any,
    candidate: Candidate,
    input_spec: list[Any],
    directory: Path,
    *,
    calibration_inputs: tuple[np.ndarray, ...],
    fp32_weights: Sequence[str] = (),
    export: Callable[[Any, list[Any], Path], Artifact] = export_inference_model,
) -> Artifact:
    """Export ``student`` as ``candidate`` deploys it, into ``directory``.

    ``directory`` then holds the deployed program (``model.pdmodel``/``model.pdiparams``: the quantized
    program for int8, the fp32 program otherwise); ``fp32/`` the fp32 program of an int8 candidate;
    ``simulated/`` the simulation program of an fp16 or weight-only candidate.

    Args:
        student: The (fine-tuned) student, in fp32.
        candidate: Its candidate: precision, calibration, weight-only bits.
        input_spec: ``paddle.static.InputSpec`` list of the model's inputs.
        directory: The candidate's folder (created).
        calibration_inputs: Calibration samples for int8 (one array per input).
        fp32_weights: Names of the student's linear weights that stay fp32 in an int8 candidate.
        export: Writes the student's fp32 program, ``export(student, input_spec, directory) -> Artifact``
            (a program's space writes the teacher's program with the student's weights).
    """
    directory = Path(directory)
    if candidate.precision == "int8":
        assert candidate.calibration is not None  # guaranteed by Candidate
        fp32 = export(student, input_spec, directory / FP32_DIR)
        return quantize_post_static(fp32, directory, calibration_inputs, algo=candidate.calibration, fp32_weights=fp32_weights)
    artifact = export(student, input_spec, directory)
    if candidate.precision == "fp16":
        return simulate_fp16(artifact, directory / SIMULATION_DIR)
    if candidate.weight_only_bits is not None:
        return simulate_weight_only(artifact, directory / SIMULATION_DIR, candidate.weight_only_bits)
    return artifact


def lite_deployment_problem(candidate: Candidate, places: str) -> str | None:
    """Why Paddle Lite cannot deploy ``candidate`` for the valid places ``places``, or ``None``.

    What a device profile cannot say: facts about Paddle Lite 2.13's kernels, seen on this project's
    machine. Its x86 kernels returned NaN for a post-training-quantized int8 program and for weight-only
    int8/int16 models (both widths, every output), and it has no fp16 x86 kernels.
    """
    targets = {place.strip() for place in places.split(",")}
    if "x86" not in targets:
        return None
    if candidate.precision == "int8":
        return "Paddle Lite's x86 kernels return NaN for int8 (post-training quantized) programs"
    if candidate.precision == "fp16":
        return "Paddle Lite has no fp16 kernels for x86"
    if candidate.weight_only_bits is not None:
        return f"Paddle Lite's x86 kernels return NaN for weight-only int{candidate.weight_only_bits} models"
    return None
