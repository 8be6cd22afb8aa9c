"""The optimized kernel list: the program Paddle Lite will run on a target, after its fusion passes.

``opt`` with ``model_type="protobuf"`` writes the optimized program instead of a ``.nb``; it parses with
Paddle's own ``ProgramDesc``. This is what a latency predictor should look at (``fc`` after fusion, not
the ``matmul`` + ``elementwise_add`` of the Paddle program). Variable shapes in that program are not
reliable (Paddle Lite reuses variables), so only op types, kernels and variable names are read here.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

from devicefit.evaluators._lite_client import LiteWorker
from devicefit.spaces._export import Artifact

KERNEL_ATTR = "__@kernel_type_attr@__"


@dataclasses.dataclass(frozen=True)
class KernelOp:
    """One op of an optimized program.

    Attributes:
        type: Op type after fusion, e.g. ``fc``.
        kernel: The kernel Paddle Lite picked, as it writes it: ``<op>/<alias>/<target>/<precision>/<layout>``
            (codes of Paddle Lite's enums, e.g. ``fc/def/4/1/1`` is the ARM float kernel). Empty if absent.
        inputs: Argument name -> variable names.
        outputs: Argument name -> variable names.
    """

    type: str
    kernel: str
    inputs: dict[str, tuple[str, ...]]
    outputs: dict[str, tuple[str, ...]]


def read_optimized_program(model_file: Path) -> list[KernelOp]:
    """Parse the ``model`` file that ``opt`` writes in protobuf mode (block 0, in execution order)."""
    from devicefit.spaces._paddle import import_paddle

    import_paddle()
    from paddle.base.proto import framework_pb2

    program = framework_pb2.ProgramDesc()
    program.ParseFromString(Path(model_file).read_bytes())
    ops = []
    for op in program.blocks[0].ops:
        kernel = next((attr.s for attr in op.attrs if attr.name == KERNEL_ATTR), "")
        ops.append(
            KernelOp(
                type=op.type,
                kernel=kernel,
                inputs={slot.parameter: tuple(slot.arguments) for slot in op.inputs},
                outputs={slot.parameter: tuple(slot.arguments) for slot in op.outputs},
            )
        )
    return ops


def optimized_kernels(worker: LiteWorker, artifact: Artifact, places: str, out_dir: Path) -> list[KernelOp]:
    """Convert ``artifact`` for ``places`` in protobuf mode (into ``out_dir``) and return its kernel list."""
    result = worker.convert(artifact.model_file, artifact.params_file, places, out_dir, model_type="protobuf")
    return read_optimized_program(result.program_file)


def kernel_counts(ops: list[KernelOp]) -> dict[str, int]:
    """How many ops of each type, feed and fetch left out."""
    return dict(Counter(op.type for op in ops if op.type not in ("feed", "fetch")))
