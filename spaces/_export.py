"""Export a student to a Paddle inference program: the Artifact every evaluator starts from.

An :class:`Artifact` is a ``.pdmodel``/``.pdiparams`` pair plus how it is deployed: its precision, and
for the precisions that cannot run on this machine, the program that reproduces the deployed numerics in
Paddle (:attr:`Artifact.simulation_dir`). :func:`program_logits` runs any of these programs in Paddle.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from devicefit.spaces._candidate import Calibration, Precision, WeightOnlyBits
from devicefit.spaces._paddle import import_paddle

MODEL_FILE = "model.pdmodel"
PARAMS_FILE = "model.pdiparams"
MODEL_PREFIX = "model"


@dataclasses.dataclass(frozen=True)
class QuantizationInfo:
    """How an int8 artifact was made by post-training quantization.

    Attributes:
        algo: PaddleSlim's calibration algorithm.
        calibration_samples: Samples the scales were calibrated on.
        quantized_weights: Weight tensors quantized to int8 (their linear layers run int8 kernels).
        fp32_weights: Weight tensors of linear layers left in fp32 (mixed precision).
        seconds: Wall time of the quantization, in seconds.
    """

    algo: Calibration
    calibration_samples: int
    quantized_weights: int
    fp32_weights: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Artifact:
    """An exported inference model (``.pdmodel`` + ``.pdiparams``) on disk, and how it is deployed.

    Attributes:
        model_file: The program.
        params_file: The weights.
        content_hash: SHA-256 of both files (program first) and, when it is not plain fp32, of the
            deployment settings, hex.
        size_bytes: Both files together, in bytes.
        precision: Kernel precision on the device: ``fp32``; ``fp16`` (Paddle Lite converts with fp16
            kernels); ``int8`` (the program is a post-training-quantized program).
        weight_only_bits: Weight-only quantization that Paddle Lite applies when converting (8 or 16), or None.
        quantization: For ``int8``, how the program was quantized.
        simulation_dir: A folder with a program that reproduces the deployed numerics in Paddle, when the
            artifact's own program does not (fp16, weight-only); ``None`` otherwise.
    """

    model_file: Path
    params_file: Path
    content_hash: str
    size_bytes: int
    precision: Precision = "fp32"
    weight_only_bits: WeightOnlyBits | None = None
    quantization: QuantizationInfo | None = None
    simulation_dir: Path | None = None

    @property
    def directory(self) -> Path:
        """The folder that holds both files."""
        return self.model_file.parent

    @property
    def enable_fp16(self) -> bool:
        """Whether Paddle Lite's converter must be asked for fp16 kernels."""
        return self.precision == "fp16"

    @property
    def lite_quant_type(self) -> str | None:
        """Paddle Lite's weight-only quantization type (``QUANT_INT8``/``QUANT_INT16``), or None."""
        return None if self.weight_only_bits is None else f"QUANT_INT{self.weight_only_bits}"

    @property
    def scoring_dir(self) -> Path:
        """The folder of the program whose outputs stand for the deployed model's (run it in Paddle)."""
        return self.simulation_dir or self.directory

    @property
    def fidelity_tag(self) -> str:
        """What the deployed numerics add to an accuracy rung (``ptq-avg``, ``fp16-sim``, ``wo8-sim``), or ``''``."""
        if self.quantization is not None:
            return f"ptq-{self.quantization.algo}"
        if self.precision == "fp16":
            return "fp16-sim"
        if self.weight_only_bits is not None:
            return f"wo{self.weight_only_bits}-sim"
        return ""

    @classmethod
    def from_directory(
        cls,
        directory: Path,
        *,
        precision: Precision = "fp32",
        weight_only_bits: WeightOnlyBits | None = None,
        quantization: QuantizationInfo | None = None,
        simulation_dir: Path | None = None,
    ) -> Artifact:
        """Describe an export that already exists in ``directory``."""
        model_file, params_file = Path(directory) / MODEL_FILE, Path(directory) / PARAMS_FILE
        digest = hashlib.sha256()
        size = 0
        for path in (model_file, params_file):
            data = path.read_bytes()
            digest.update(data)
            size += len(data)
        if precision != "fp32" or weight_only_bits is not None:
            deployment = {"precision": precision, "weight_only_bits": weight_only_bits}
            digest.update(json.dumps(deployment, sort_keys=True).encode())
        return cls(model_file, params_file, digest.hexdigest(), size, precision, weight_only_bits, quantization, simulation_dir)


def without_inference_dropout(layer: Any) -> Any:
    """A copy of ``layer`` whose dropouts are not in its inference program.

    In eval mode an ``upscale_in_train`` dropout is the identity, yet ``paddle.jit.save`` still writes a
    ``dropout`` op for it, and Paddle Lite keeps it as a kernel on ARM (9 of the 72 ops of a 2-layer digits ViT student).
    Paddle skips dropout entirely when its probability is 0, so the copy gets probability 0. A
    ``downscale_in_infer`` dropout scales its input at inference and is left alone. The copy keeps the
    parameter names (``deepcopy`` would append ``_deepcopy_N``), so the program names its weights as the
    model does: quantization skip lists and kernel lists refer to them.
    """
    paddle = import_paddle()
    copy_ = copy.deepcopy(layer)
    for sublayer in copy_.sublayers(include_self=True):
        if isinstance(sublayer, paddle.nn.Dropout) and sublayer.mode == "upscale_in_train":
            sublayer.p = 0.0
        elif isinstance(sublayer, paddle.nn.MultiHeadAttention):
            sublayer.dropout = 0.0  # always upscale_in_train
    for original, copied in zip(layer.parameters(), copy_.parameters()):
        copied.name = original.name
    return copy_


def export_inference_model(layer: Any, input_spec: list[Any], directory: Path) -> Artifact:
    """Save ``layer`` as ``directory/model.pdmodel`` and ``directory/model.pdiparams``, for inference, in fp32.

    The saved program is the eval-mode function of ``layer`` without identity dropouts
    (:func:`without_inference_dropout`); ``layer`` itself is not changed.

    The files are byte-identical for the same program and weights, whichever process exports them, however
    many models it built before, and from wherever it is called: the latency cache keys measurements by
    :attr:`Artifact.content_hash`. Paddle names tensors from process-wide counters (``linear_57.w_0``) and
    records each op's Python call stack (``op_callstack``), so the export names parameters and buffers
    after their place in the layer (``encoder.layers.0.linear1.weight``), restarts the name counters for
    tracing (``unique_name.guard``), and empties the recorded call stacks.

    Args:
        layer: The model, in eval mode. Its ``forward`` must name its first parameter ``self``.
        input_spec: ``paddle.static.InputSpec`` list describing ``forward``'s inputs.
        directory: Created if missing.
    """
    paddle = import_paddle()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    inference_layer = without_inference_dropout(layer)
    inference_layer.eval()
    with _structured_tensor_names(inference_layer), paddle.utils.unique_name.guard():
        static_layer = paddle.jit.to_static(inference_layer, input_spec=input_spec, full_graph=True)
        paddle.jit.save(static_layer, str(directory / MODEL_PREFIX))
    strip_op_callstacks(directory / MODEL_FILE)
    return Artifact.from_directory(directory)


@contextlib.contextmanager
def _structured_tensor_names(layer: Any) -> Iterator[None]:
    """Name every parameter and buffer after its path in ``layer`` for the duration; restore the names after."""
    tensors = [*layer.named_parameters(), *layer.named_buffers()]
    original = [tensor.name for _, tensor in tensors]
    try:
        for path, tensor in tensors:
            tensor.name = path
        yield
    finally:
        for (_, tensor), name in zip(tensors, original):
            tensor.name = name


def strip_op_callstacks(model_file: Path) -> None:
    """Empty the ``op_callstack`` attribute of every op of a saved program: it holds the exporting process's
    file paths and line numbers, which would make the same model's bytes differ between call sites and hosts."""
    import_paddle()
    from paddle.base.proto import framework_pb2

    program = framework_pb2.ProgramDesc.FromString(model_file.read_bytes())
    for block in program.blocks:
        for op in block.ops:
            for attr in op.attrs:
                if attr.name == "op_callstack":
                    del attr.strings[:]
    model_file.write_bytes(program.SerializeToString(deterministic=True))


def program_logits(directory: Path, inputs: tuple[np.ndarray, ...], *, batch_size: int = 256) -> np.ndarray:
    """Run the inference program in ``directory`` on ``inputs`` with Paddle Inference; returns its first output.

    The program runs as saved (graph optimization off), so the fake-quantization ops of a quantized program
    simulate its int8 numerics exactly as they were calibrated.

    Args:
        directory: Holds ``model.pdmodel`` and ``model.pdiparams``.
        inputs: One array per program input, in the program's feed order, batch first.
        batch_size: Samples per run.
    """
    import_paddle()
    import paddle.inference as inference

    config = inference.Config(str(Path(directory) / MODEL_FILE), str(Path(directory) / PARAMS_FILE))
    config.disable_gpu()
    config.switch_ir_optim(False)
    config.disable_glog_info()
    predictor = inference.create_predictor(config)
    names = predictor.get_input_names()
    if len(names) != len(inputs):
        raise ValueError(f"the program in {directory} takes {len(names)} inputs ({names}), got {len(inputs)} arrays")
    outputs = []
    for start in range(0, len(inputs[0]), batch_size):
        for name, array in zip(names, inputs):
            handle = predictor.get_input_handle(name)
            batch = np.ascontiguousarray(array[start : start + batch_size])
            handle.reshape(list(batch.shape))
            handle.copy_from_cpu(batch)
        predictor.run()
        outputs.append(predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu())
    return np.concatenate(outputs)
