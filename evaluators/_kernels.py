"""The kernel list of a model as Paddle Lite will run it: ``opt`` converts it in protobuf mode and the optimized
program is read by :mod:`devicefit.device_profiles._program` (where the format is described; the latency
predictor reads the same program, so the reader lives with it).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from devicefit.device_profiles._program import (
    KERNEL_ATTR,
    KernelOp,
    KernelProgram,
    PersistableVar,
    read_kernel_program,
    read_optimized_program,
)
from devicefit.evaluators._lite_client import LiteWorker
from devicefit.spaces._export import Artifact

__all__ = [
    "KERNEL_ATTR",
    "KernelOp",
    "KernelProgram",
    "PersistableVar",
    "kernel_counts",
    "optimized_kernels",
    "read_kernel_program",
    "read_optimized_program",
]


def optimized_kernels(worker: LiteWorker, artifact: Artifact, places: str, out_dir: Path) -> list[KernelOp]:
    """Convert ``artifact`` for ``places`` in protobuf mode (into ``out_dir``) and return its kernel list."""
    result = worker.convert(artifact.model_file, artifact.params_file, places, out_dir, model_type="protobuf")
    return read_optimized_program(result.program_file)


def kernel_counts(ops: list[KernelOp]) -> dict[str, int]:
    """How many ops of each type, feed and fetch left out."""
    return dict(Counter(op.type for op in ops if op.type not in ("feed", "fetch")))
