"""Running a model over a split: the one inference loop the accuracy rungs share."""

from __future__ import annotations

from typing import Any

import numpy as np

from devicefit.evaluators._data import Split
from devicefit.spaces._paddle import import_paddle


def predict_logits(model: Any, split: Split, *, batch_size: int = 256) -> np.ndarray:
    """The model's logits on every sample of ``split``, ``[N, classes]``.

    The model is switched to eval mode (and left there); no gradients are recorded.
    """
    paddle = import_paddle()
    model.eval()
    outputs = []
    with paddle.no_grad():
        for start in range(0, len(split), batch_size):
            batch = split.take(slice(start, start + batch_size))
            outputs.append(model(*[paddle.to_tensor(x) for x in batch.inputs]).numpy())
    return np.concatenate(outputs)
