"""Simulated int8 quantization of a student: insert fake quantizers, calibrate them, export, run the export.

Built on Paddle's dygraph quantization (``paddle.quantization.ImperativeQuantAware``, which PaddleSlim's
dygraph QAT also wraps): weights are quantized per output channel by abs-max, activations by a moving
average of their abs-max, on every ``Linear`` and ``Conv2D``. The same quantizers serve two purposes:
  - post-training quantization (PTQ), the baseline: quantizers inserted, scales calibrated on training
    batches, no weight changes (:func:`post_training_quantize`);
  - quantization-aware training (QAT): the quantized student is fine-tuned (by distillation, in
    :class:`~devicefit.evaluators._final.QuantAwareEvaluator`), so the scales and weights adapt together.
The export (:func:`export_quantized`) writes the trained model in the ``quantize_linear`` /
``dequantize_linear`` format (PaddleSlim 2.6's default), which Paddle Lite's ``opt`` turns into int8
kernels for ARM. Paddle Lite cannot run int8 on x86 (see STACK-NOTES.md), so exported programs are scored
in Paddle Inference, which simulates the quantization (:func:`predict_exported_logits`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from devicefit.evaluators._data import Split
from devicefit.spaces._export import MODEL_FILE, Artifact, strip_op_callstacks, without_inference_dropout
from devicefit.spaces._paddle import import_paddle

WEIGHT_QUANTIZERS = ("channel_wise_abs_max", "abs_max")
ACTIVATION_QUANTIZERS = ("moving_average_abs_max",)


@dataclasses.dataclass(frozen=True)
class QuantizationSettings:
    """How a student is quantized to int8.

    Attributes:
        weight: Weight quantizer: ``channel_wise_abs_max`` (per output channel) or ``abs_max``.
        activation: Activation quantizer (``moving_average_abs_max``: a moving average of the batch abs-max).
        moving_rate: Decay of the activation moving average.
        calibration_batches: Training batches that calibrate the scales of the PTQ baseline.
        batch_size: Samples per calibration batch.
        seed: Seeds the choice of calibration samples.
    """

    weight: str = "channel_wise_abs_max"
    activation: str = "moving_average_abs_max"
    moving_rate: float = 0.9
    calibration_batches: int = 8
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.weight not in WEIGHT_QUANTIZERS:
            raise ValueError(f"weight quantizer must be one of {WEIGHT_QUANTIZERS}, got {self.weight!r}")
        if self.activation not in ACTIVATION_QUANTIZERS:
            raise ValueError(f"activation quantizer must be one of {ACTIVATION_QUANTIZERS}, got {self.activation!r}")
        if not 0 < self.moving_rate < 1 or self.calibration_batches < 1 or self.batch_size < 1:
            raise ValueError(f"invalid quantization settings: {self}")


def _quanter(settings: QuantizationSettings) -> Any:
    import_paddle()
    from paddle.quantization import ImperativeQuantAware

    return ImperativeQuantAware(
        quantizable_layer_type=["Conv2D", "Linear"],
        weight_quantize_type=settings.weight,
        activation_quantize_type=settings.activation,
        moving_rate=settings.moving_rate,
        onnx_format=True,
    )


def quantize_in_place(model: Any, settings: QuantizationSettings) -> Any:
    """Insert fake quantizers into ``model`` (its ``Linear`` and ``Conv2D`` layers are wrapped); returns it.

    The model keeps its attribute names (``self_attn.q_proj`` is still there, wrapped), so the encoder
    taps keep working. Its scales are uncalibrated until it runs in train mode.
    """
    _quanter(settings).quantize(model)
    return model


def is_quantized(model: Any) -> bool:
    """Whether fake quantizers were inserted into ``model``."""
    import_paddle()
    from paddle.nn.quant import quant_layers

    return any(isinstance(layer, quant_layers.MAOutputScaleLayer) for layer in model.sublayers())


@contextlib.contextmanager
def _observing(model: Any) -> Iterator[None]:
    """Train mode for the quantizers' observers, with dropout off, and no gradients; eval mode afterwards.

    Dropout in train mode would scale activations by ``1 / (1 - p)`` and bias the calibrated scales.
    ``paddle.nn.MultiHeadAttention`` applies its attention dropout functionally when its own ``training``
    flag is set, so that flag is cleared on the attention layers alone (their children stay in train mode).
    """
    paddle = import_paddle()
    model.train()
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.Dropout):
            layer.eval()
        elif isinstance(layer, paddle.nn.MultiHeadAttention):
            layer.training = False
    try:
        with paddle.no_grad():
            yield
    finally:
        model.eval()


def calibrate(model: Any, split: Split, settings: QuantizationSettings) -> None:
    """Calibrate the scales of a quantized ``model`` on ``settings.calibration_batches`` batches of ``split``.

    No weight changes. The samples are drawn without replacement by ``settings.seed``.
    """
    paddle = import_paddle()
    rng = np.random.default_rng(settings.seed)
    wanted = min(len(split), settings.calibration_batches * settings.batch_size)
    order = rng.choice(len(split), size=wanted, replace=False)
    with _observing(model):
        for start in range(0, wanted, settings.batch_size):
            batch = split.take(np.sort(order[start : start + settings.batch_size]))
            model(*[paddle.to_tensor(x) for x in batch.inputs])


def post_training_quantize(model: Any, split: Split, settings: QuantizationSettings) -> Any:
    """PTQ: a quantized copy of ``model`` with scales calibrated on ``split`` (``model`` is not changed)."""
    quantized = quantize_in_place(copy.deepcopy(model), settings)
    calibrate(quantized, split, settings)
    return quantized


def export_quantized(model: Any, settings: QuantizationSettings, input_spec: list[Any], directory: Path) -> Artifact:
    """Write a quantized model as ``directory/model.pdmodel`` + ``.pdiparams`` with int8 weights.

    A copy is exported, so ``model`` stays an ordinary dygraph layer. The export briefly switches Paddle to
    static mode (Paddle's quantized save does) and back. As in ``spaces._export.export_inference_model``, the
    program has no identity dropouts (Paddle Lite would keep them as ARM kernels, which device profiles do not
    price) and no recorded call stacks (the same weights give the same bytes).

    Args:
        model: A model from :func:`quantize_in_place` (trained or calibrated), in eval mode.
        settings: The settings it was quantized with.
        input_spec: ``paddle.static.InputSpec`` list of its ``forward``.
        directory: Created if missing.
    """
    import_paddle()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    clone = without_inference_dropout(model)
    clone.eval()
    # Paddle's quantized save warns that input_spec is ignored without full_graph (it is not) and that it
    # reloads the program the old way: nothing the user can act on.
    loader_log = logging.getLogger("paddle.static.io")
    level = loader_log.level
    loader_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            _quanter(settings).save_quantized_model(clone, str(directory / Path(MODEL_FILE).stem), input_spec=input_spec)
    finally:
        loader_log.setLevel(level)
    strip_op_callstacks(directory / MODEL_FILE)
    return Artifact.from_directory(directory)


def predict_exported_logits(artifact: Artifact, split: Split, *, batch_size: int = 256) -> np.ndarray:
    """Run an exported program on ``split`` with Paddle Inference (no graph rewrites), ``[N, classes]``.

    For a quantized program this simulates int8 exactly as exported (quantize/dequantize ops included).
    """
    import_paddle()
    from paddle import inference

    config = inference.Config(str(artifact.model_file), str(artifact.params_file))
    config.disable_gpu()
    config.switch_ir_optim(False)
    config.disable_glog_info()
    predictor = inference.create_predictor(config)
    input_names = predictor.get_input_names()
    if len(input_names) != len(split.inputs):
        raise ValueError(f"{artifact.model_file} takes {len(input_names)} inputs; the split has {len(split.inputs)}")
    outputs = []
    for start in range(0, len(split), batch_size):
        batch = split.take(slice(start, start + batch_size))
        for name, array in zip(input_names, batch.inputs):
            handle = predictor.get_input_handle(name)
            handle.reshape(list(array.shape))
            handle.copy_from_cpu(np.ascontiguousarray(array))
        predictor.run()
        outputs.append(predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu())
    return np.concatenate(outputs)


__all__ = [
    "QuantizationSettings",
    "calibrate",
    "export_quantized",
    "is_quantized",
    "post_training_quantize",
    "predict_exported_logits",
    "quantize_in_place",
]
