"""Export a student to a Paddle inference program: the Artifact every evaluator starts from."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from devicefit.spaces._paddle import import_paddle

MODEL_FILE = "model.pdmodel"
PARAMS_FILE = "model.pdiparams"


@dataclasses.dataclass(frozen=True)
class Artifact:
    """An exported inference model (``.pdmodel`` + ``.pdiparams``) on disk.

    Attributes:
        model_file: The program.
        params_file: The weights.
        content_hash: SHA-256 of both files (program first), hex.
        size_bytes: Both files together, in bytes.
    """

    model_file: Path
    params_file: Path
    content_hash: str
    size_bytes: int

    @property
    def directory(self) -> Path:
        """The folder that holds both files."""
        return self.model_file.parent

    @classmethod
    def from_directory(cls, directory: Path) -> Artifact:
        """Describe an export that already exists in ``directory``."""
        model_file, params_file = Path(directory) / MODEL_FILE, Path(directory) / PARAMS_FILE
        digest = hashlib.sha256()
        size = 0
        for path in (model_file, params_file):
            data = path.read_bytes()
            digest.update(data)
            size += len(data)
        return cls(model_file, params_file, digest.hexdigest(), size)


def without_inference_dropout(layer: Any) -> Any:
    """A copy of ``layer`` whose dropouts are not in its inference program.

    In eval mode an ``upscale_in_train`` dropout is the identity, yet ``paddle.jit.save`` still writes a
    ``dropout`` op for it, and Paddle Lite keeps it as a kernel on ARM (9 of the 72 ops of a 2-layer digits ViT student).
    Paddle skips dropout entirely when its probability is 0, so the copy gets probability 0. A
    ``downscale_in_infer`` dropout scales its input at inference and is left alone.
    """
    paddle = import_paddle()
    copy_ = copy.deepcopy(layer)
    for sublayer in copy_.sublayers(include_self=True):
        if isinstance(sublayer, paddle.nn.Dropout) and sublayer.mode == "upscale_in_train":
            sublayer.p = 0.0
        elif isinstance(sublayer, paddle.nn.MultiHeadAttention):
            sublayer.dropout = 0.0  # always upscale_in_train
    return copy_


def export_inference_model(layer: Any, input_spec: list[Any], directory: Path) -> Artifact:
    """Save ``layer`` as ``directory/model.pdmodel`` and ``directory/model.pdiparams``, for inference.

    The saved program is the eval-mode function of ``layer`` without identity dropouts
    (:func:`without_inference_dropout`); ``layer`` itself is not changed.

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
    static_layer = paddle.jit.to_static(inference_layer, input_spec=input_spec, full_graph=True)
    paddle.jit.save(static_layer, str(directory / "model"))
    return Artifact.from_directory(directory)
