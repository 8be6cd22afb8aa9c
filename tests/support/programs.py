"""An inference program without its code, as a user would hand it over: the shipped digits-ViT teacher saved
by plain ``paddle.jit.save`` (Paddle's own tensor names, op call stacks kept), and the digits as an ``.npz``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def export_digits_program(folder: Path) -> tuple[Path, Path]:
    """Write ``folder/vit.pdmodel`` (+ ``.pdiparams``) and ``folder/digits.npz``; returns both paths.

    The program is the example's teacher (4 layers, d=64, 97% test accuracy); the ``.npz`` holds the
    example's splits (1,200 train / 200 validation / 397 test images, ``[N, 1, 8, 8]`` float32).
    """
    from devicefit.examples.digits_vit.model import input_spec
    from devicefit.examples.digits_vit.task import build_task
    from devicefit.spaces._paddle import import_paddle

    paddle = import_paddle()
    folder.mkdir(parents=True, exist_ok=True)
    task = build_task()
    paddle.jit.save(paddle.jit.to_static(task.teacher, input_spec=input_spec(), full_graph=True), str(folder / "vit"))
    arrays = {}
    for name in ("train", "val", "test"):
        split = getattr(task.data, name)
        arrays[f"{name}_inputs"], arrays[f"{name}_labels"] = split.inputs[0], split.labels
    np.savez(folder / "digits.npz", **arrays)
    return folder / "vit.pdmodel", folder / "digits.npz"
