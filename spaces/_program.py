"""What an exported inference program (``.pdmodel``) says about itself, read without running it.

Used where devicefit has a program but not the code that made it: a user's ``--model model.pdmodel``, and
the deploy snippets of an export (which must feed every input with the right shape and dtype).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

from devicefit.spaces._paddle import import_paddle

#: Paddle's ``VarType`` names of tensor element types -> numpy dtype names.
_DTYPES = {
    "BOOL": "bool", "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16", "FP32": "float32",
    "FP64": "float64", "UINT8": "uint8", "INT8": "int8",
}


class ProgramError(ValueError):
    """The file is not a Paddle inference program that devicefit can read."""


@dataclasses.dataclass(frozen=True)
class ProgramInput:
    """One input of an inference program.

    Attributes:
        name: The feed variable's name (what Paddle Lite's ``get_input_by_name`` takes).
        shape: Its shape; ``-1`` for a size fixed only at run time (the batch, usually).
        dtype: Numpy dtype name.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str

    def concrete_shape(self, batch: int = 1) -> tuple[int, ...]:
        """The shape with the batch (first axis) set to ``batch`` and other open sizes set to 1."""
        return tuple(batch if i == 0 and d < 0 else (1 if d < 0 else d) for i, d in enumerate(self.shape))


@dataclasses.dataclass(frozen=True)
class ProgramInfo:
    """The interface and content of an inference program.

    Attributes:
        inputs: Feed variables, in feed order.
        outputs: Fetched variable names, in fetch order.
        op_counts: Op type -> how many (feed and fetch left out).
        parameters: Number of persistable weights' elements.
    """

    inputs: tuple[ProgramInput, ...]
    outputs: tuple[str, ...]
    op_counts: dict[str, int]
    parameters: int


def read_program_info(model_file: Path) -> ProgramInfo:
    """Read a ``.pdmodel``'s inputs, outputs, ops and weight count.

    Raises:
        ProgramError: The file is missing or is not a Paddle ``ProgramDesc``.
    """
    import_paddle()
    from google.protobuf.message import DecodeError
    from paddle.base.proto import framework_pb2

    path = Path(model_file)
    if not path.is_file():
        raise ProgramError(f"{path}: no such file")
    program = framework_pb2.ProgramDesc()
    try:
        program.ParseFromString(path.read_bytes())
    except DecodeError:
        raise ProgramError(f"{path} is not a Paddle inference program (.pdmodel)") from None
    if not program.blocks:
        raise ProgramError(f"{path} is not a Paddle inference program (.pdmodel): it has no block")
    block = program.blocks[0]
    variables = {var.name: var for var in block.vars}
    feeds: list[tuple[int, str]] = []
    fetches: list[tuple[int, str]] = []
    for op in block.ops:
        column = next((attr.i for attr in op.attrs if attr.name == "col"), 0)
        if op.type == "feed":
            feeds.extend((column, name) for slot in op.outputs for name in slot.arguments)
        elif op.type == "fetch":
            fetches.extend((column, name) for slot in op.inputs for name in slot.arguments)
    if not feeds:
        raise ProgramError(f"{path} has no feed op: it is not an inference program saved by paddle.jit.save")
    inputs = []
    for _, name in sorted(feeds):
        tensor = variables[name].type.lod_tensor.tensor
        type_name = framework_pb2.VarType.Type.Name(tensor.data_type)
        inputs.append(ProgramInput(name, tuple(int(d) for d in tensor.dims), _DTYPES.get(type_name, type_name.lower())))
    parameters = 0
    for var in block.vars:
        if var.persistable and var.type.type == framework_pb2.VarType.LOD_TENSOR:
            size = 1
            for dim in var.type.lod_tensor.tensor.dims:
                size *= max(int(dim), 0)
            parameters += size
    counts = Counter(op.type for op in block.ops if op.type not in ("feed", "fetch"))
    return ProgramInfo(tuple(inputs), tuple(name for _, name in sorted(fetches)), dict(counts), parameters)
