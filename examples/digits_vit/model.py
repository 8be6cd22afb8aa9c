"""A small Vision Transformer for the 8x8 digits, built from Paddle's own Transformer layers.

The model is deliberately plain so that devicefit's search spaces can find and shrink its parts by name:
``model.encoder.layers[i].self_attn.q_proj`` (and ``k_proj``, ``v_proj``, ``out_proj``),
``model.encoder.layers[i].linear1`` / ``linear2`` (the FFN), ``model.patch_embed``, ``model.cls_token``,
``model.pos_embed`` and ``model.head``.

A few details keep the exported program convertible by Paddle Lite and the model searchable:

* The patch embedding is flattened with ``reshape([0, 0, -1])``, not ``flatten(2)``: Paddle Lite's
  ``opt`` crashes (segmentation fault) on ``conv2d`` followed by ``flatten(start_axis=2)``. The ``0`` keeps
  the channel count of the input, so a student with a narrower hidden width runs unchanged.
* The class token reaches every sample of the batch by broadcasting (``zeros_like(tokens[:, :1]) +
  cls_token``), so the program accepts any batch size (``InputSpec([None, 1, 8, 8])``) without a 0-D
  batch-size tensor (``paddle.shape(x)[0]``), on which PaddleSlim's ``avg`` int8 calibration fails.
* ``pooling="mean"`` replaces the class token by the mean of the encoded patch tokens.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from devicefit.spaces._paddle import import_paddle

paddle = import_paddle()

TEACHER_DIR = Path(__file__).resolve().parent
TEACHER_WEIGHTS_NAME = "teacher.pdparams"
TEACHER_METADATA_NAME = "teacher.json"
INPUT_NAME = "images"
TRAIN_COMMAND = "python -m devicefit.examples.digits_vit.train_teacher"


@dataclass(frozen=True)
class ViTConfig:
    """Shape of a :class:`DigitsViT`.

    Attributes:
        image_size: Side of the square input image, in pixels.
        patch_size: Side of a square patch; ``image_size`` must be a multiple of it.
        in_channels: Channels of the input image.
        hidden_size: Width of the token embeddings (``d_model``).
        num_layers: Number of Transformer encoder layers.
        num_heads: Attention heads per layer; must divide ``hidden_size``.
        ffn_size: Inner width of each layer's feed-forward network.
        num_classes: Number of output classes.
        dropout: Dropout rate used in training (attention, FFN, residuals and embeddings).
        normalize_before: Pre-LayerNorm encoder layers when True.
        pooling: ``cls`` (a class token, classified after the encoder) or ``mean`` (the mean of the tokens).
    """

    image_size: int = 8
    patch_size: int = 2
    in_channels: int = 1
    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    ffn_size: int = 128
    num_classes: int = 10
    dropout: float = 0.0
    normalize_before: bool = True
    pooling: str = "cls"

    def __post_init__(self) -> None:
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {self.pooling!r}")
        if self.image_size % self.patch_size != 0:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def num_patches(self) -> int:
        """Number of patch tokens (without the class token)."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        """Tokens entering the encoder: the patches, and the class token with ``cls`` pooling."""
        return self.num_patches + (1 if self.pooling == "cls" else 0)

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as a JSON-ready dictionary."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ViTConfig:
        """Build a configuration from a dictionary such as :meth:`to_dict` returns.

        Args:
            values: Field names to values; missing fields take their defaults.

        Raises:
            ValueError: If ``values`` has a key that is not a field of :class:`ViTConfig`.
        """
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown ViTConfig fields: {unknown}")
        return cls(**values)


class DigitsViT(paddle.nn.Layer):
    """Vision Transformer classifier: patch embedding, class token, pre-LN encoder, linear head.

    Args:
        config: Shape of the model; defaults to :class:`ViTConfig`'s defaults.
    """

    def __init__(self, config: ViTConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ViTConfig()
        cfg = self.config
        self.patch_embed = paddle.nn.Conv2D(
            cfg.in_channels, cfg.hidden_size, kernel_size=cfg.patch_size, stride=cfg.patch_size
        )
        if cfg.pooling == "cls":
            self.cls_token = self.create_parameter(
                shape=[1, 1, cfg.hidden_size],
                default_initializer=paddle.nn.initializer.TruncatedNormal(std=0.02),
            )
        self.pos_embed = self.create_parameter(
            shape=[1, cfg.num_tokens, cfg.hidden_size],
            default_initializer=paddle.nn.initializer.TruncatedNormal(std=0.02),
        )
        self.embed_dropout = paddle.nn.Dropout(cfg.dropout)
        encoder_layer = paddle.nn.TransformerEncoderLayer(
            cfg.hidden_size,
            cfg.num_heads,
            cfg.ffn_size,
            dropout=cfg.dropout,
            activation="gelu",
            normalize_before=cfg.normalize_before,
        )
        self.encoder = paddle.nn.TransformerEncoder(
            encoder_layer, cfg.num_layers, norm=paddle.nn.LayerNorm(cfg.hidden_size)
        )
        self.head = paddle.nn.Linear(cfg.hidden_size, cfg.num_classes)

    def forward(self, images):  # type: ignore[no-untyped-def]
        """Classify a batch of images.

        Args:
            images: Float32 tensor ``[batch, in_channels, image_size, image_size]``.

        Returns:
            Logits, float32 tensor ``[batch, num_classes]``.
        """
        patches = self.patch_embed(images)
        tokens = patches.reshape([0, 0, -1]).transpose([0, 2, 1])
        if self.config.pooling == "cls":
            cls_tokens = paddle.zeros_like(tokens[:, :1]) + self.cls_token
            tokens = paddle.concat([cls_tokens, tokens], axis=1)
        encoded = self.encoder(self.embed_dropout(tokens + self.pos_embed))
        pooled = encoded[:, 0] if self.config.pooling == "cls" else encoded.mean(axis=1)
        return self.head(pooled)


def predict_logits(model: paddle.nn.Layer, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Run ``model`` on ``images`` without gradients, in batches, and return the logits.

    The caller chooses the mode: call ``model.eval()`` first for inference (no dropout).

    Args:
        model: A classifier taking ``[N, 1, 8, 8]`` float32 images.
        images: Float32 array ``[N, 1, 8, 8]``.
        batch_size: Images per forward pass.

    Returns:
        Float32 array ``[N, num_classes]``.
    """
    outputs = []
    with paddle.no_grad():
        for start in range(0, len(images), batch_size):
            batch = paddle.to_tensor(np.ascontiguousarray(images[start : start + batch_size]))
            outputs.append(model(batch).numpy())
    return np.concatenate(outputs, axis=0)


def accuracy(model: paddle.nn.Layer, images: np.ndarray, labels: np.ndarray) -> float:
    """Return the fraction of ``images`` that ``model`` classifies as ``labels`` (eval mode is kept as set)."""
    predictions = predict_logits(model, images).argmax(axis=1)
    return float((predictions == labels).mean())


def input_spec() -> list[Any]:
    """Return the input signature for ``paddle.jit.to_static``: one batch of images, any batch size."""
    cfg = ViTConfig()
    shape = [None, cfg.in_channels, cfg.image_size, cfg.image_size]
    return [paddle.static.InputSpec(shape, "float32", INPUT_NAME)]


def read_teacher_metadata(directory: str | Path | None = None) -> dict[str, Any]:
    """Read ``teacher.json`` (configuration, seed, accuracies, ...).

    Args:
        directory: Folder holding the teacher files; defaults to this package's folder.

    Raises:
        FileNotFoundError: If ``teacher.json`` is missing, with the command that creates it.
    """
    path = Path(directory or TEACHER_DIR) / TEACHER_METADATA_NAME
    if not path.is_file():
        raise FileNotFoundError(_missing_teacher_message(path))
    return json.loads(path.read_text(encoding="utf-8"))


def load_teacher(directory: str | Path | None = None) -> DigitsViT:
    """Build the trained teacher from ``teacher.json`` and ``teacher.pdparams``, in eval mode.

    Args:
        directory: Folder holding the teacher files; defaults to this package's folder.

    Returns:
        The teacher model with its trained weights, switched to ``eval()``.

    Raises:
        FileNotFoundError: If ``teacher.json`` or ``teacher.pdparams`` is missing, with the command that
            trains and writes them.
    """
    folder = Path(directory or TEACHER_DIR)
    metadata = read_teacher_metadata(folder)
    weights_path = folder / TEACHER_WEIGHTS_NAME
    if not weights_path.is_file():
        raise FileNotFoundError(_missing_teacher_message(weights_path))
    model = DigitsViT(ViTConfig.from_dict(metadata["config"]))
    model.set_state_dict(paddle.load(str(weights_path)))
    model.eval()
    return model


def _missing_teacher_message(path: Path) -> str:
    """Explain that a teacher file is missing and how to create it."""
    return (
        f"The digits-ViT teacher file {path} is missing. Train the teacher (about 5 minutes on 2 CPU "
        f"cores) with:\n    {TRAIN_COMMAND}\nwhich writes {TEACHER_WEIGHTS_NAME} and "
        f"{TEACHER_METADATA_NAME} into {path.parent}."
    )
