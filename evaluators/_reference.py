"""The reference model that the protocol times next to every candidate (see ``_protocol.py``).

A small, fixed Transformer encoder (1 layer, d=64, 4 heads, FFN 128, 16 tokens, seeded weights) with the
op mix of the models devicefit searches (matmul/fc, softmax, layer_norm, transpose, reshape). Its absolute
latency is of no interest; it is a yardstick: on a noisy device a burst of load slows it and the candidate
measured next to it alike, so their ratio holds still where milliseconds do not.

It is exported once into a cache folder (atomically: concurrent processes may share the folder) and
identified by its content hash, which results record as ``reference_id``: ratios are comparable only
between results with the same ``reference_id``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np

from devicefit.spaces._export import Artifact, export_inference_model
from devicefit.spaces._paddle import import_paddle

#: Bumped when the reference's definition changes (it then lands in a new folder).
REFERENCE_VERSION = 1
SEQUENCE_LENGTH, D_MODEL, HEADS, FFN_SIZE = 16, 64, 4, 128
CACHE_DIR_ENV = "DEVICEFIT_CACHE_DIR"


def default_cache_dir() -> Path:
    """devicefit's cache folder: ``$DEVICEFIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/devicefit``, else ``~/.cache/devicefit``."""
    configured = os.environ.get(CACHE_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "devicefit"


@dataclasses.dataclass(frozen=True)
class ReferenceModel:
    """The exported reference and its input.

    Attributes:
        artifact: Its ``.pdmodel``/``.pdiparams``.
        inputs: Its input as ``.npy`` (seeded standard-normal values, batch of one).
    """

    artifact: Artifact
    inputs: tuple[Path, ...]

    @property
    def id(self) -> str:
        """Its identity in results: the first 12 hex digits of its content hash."""
        return self.artifact.content_hash[:12]


def _build(directory: Path) -> None:
    """Export the reference model and its input into ``directory`` (which must not exist yet)."""
    paddle = import_paddle()

    class ReferenceEncoder(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            layer = paddle.nn.TransformerEncoderLayer(D_MODEL, HEADS, FFN_SIZE, dropout=0.0)
            self.encoder = paddle.nn.TransformerEncoder(layer, 1)
            self.head = paddle.nn.Linear(D_MODEL, 8)

        def forward(self, tokens):  # type: ignore[no-untyped-def]  (dy2static strips a first parameter named self)
            return self.head(self.encoder(tokens).mean(axis=1))

    paddle.seed(20261128)
    model = ReferenceEncoder()
    model.eval()
    spec = [paddle.static.InputSpec([1, SEQUENCE_LENGTH, D_MODEL], "float32", "tokens")]
    export_inference_model(model, spec, directory)
    tokens = np.random.default_rng(20261128).standard_normal((1, SEQUENCE_LENGTH, D_MODEL)).astype("float32")
    np.save(directory / "input_0.npy", tokens)


class ReferenceSource:
    """Gives the reference model, exporting it on first use into ``directory`` (shared safely by processes).

    Args:
        directory: The cache folder (default: ``default_cache_dir() / "reference"``, resolved on first use).
    """

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory
        self._model: ReferenceModel | None = None
        self._lock = threading.Lock()

    def get(self) -> ReferenceModel:
        """The reference model (exported now if the folder does not hold it yet)."""
        with self._lock:
            if self._model is None:
                base = self._directory if self._directory is not None else default_cache_dir() / "reference"
                folder = Path(base) / f"v{REFERENCE_VERSION}"
                if not _complete(folder):
                    folder.parent.mkdir(parents=True, exist_ok=True)
                    scratch = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))
                    try:
                        _build(scratch / "model")
                        try:
                            os.replace(scratch / "model", folder)  # atomic; fails if another process won
                        except OSError:
                            if not _complete(folder):
                                raise
                    finally:
                        shutil.rmtree(scratch, ignore_errors=True)
                self._model = ReferenceModel(Artifact.from_directory(folder), (folder / "input_0.npy",))
            return self._model


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ("model.pdmodel", "model.pdiparams", "input_0.npy"))
