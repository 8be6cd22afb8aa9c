"""The optimized kernel list: the program Paddle Lite will run on a target, after its fusion passes.

``opt`` with ``model_type="protobuf"`` writes the optimized program instead of a ``.nb``; it parses with
Paddle's own ``ProgramDesc``. This is what a latency predictor should look at (``fc`` after fusion, not
the ``matmul`` + ``elementwise_add`` of the Paddle program).

Variable shapes written in that program are not reliable: Paddle Lite's memory optimization makes later
ops reuse the variables of earlier ones (the ARM program of a ViT writes ``concat_0.tmp_0`` a dozen times,
with different shapes), and a fused weight can keep the declared shape of the weight it replaced. So only
op types, kernels, attributes and variable names in execution order are read from the program, the
weights' shapes from the stored tensors of the params file; activation shapes are inferred op by op for a
concrete input (``devicefit.device_profiles._shapes``).

For NNAdapter targets (NPUs, NNAPI), the ops that run on the accelerator are inside ``subgraph`` ops;
their ops are kept on :attr:`KernelOp.sub_ops`, in the sub-block's order.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Union


KERNEL_ATTR = "__@kernel_type_attr@__"
#: Attributes that describe where an op came from, not what it computes; left out of :attr:`KernelOp.attrs`.
_BOOKKEEPING_ATTRS = frozenset(
    {KERNEL_ATTR, "op_callstack", "op_namescope", "op_role", "op_role_var", "op_device", "with_quant_attr"}
)

AttrValue = Union[int, float, str, bool, tuple[Any, ...], None]

#: ``VarType.Type`` codes of Paddle's ``framework.proto`` -> numpy-style dtype names.
_VAR_DTYPES = {0: "bool", 1: "int16", 2: "int32", 3: "int64", 4: "float16", 5: "float32", 6: "float64",
               20: "uint8", 21: "int8", 22: "bfloat16"}


@dataclasses.dataclass(frozen=True)
class KernelOp:
    """One op of an optimized program.

    Attributes:
        type: Op type after fusion, e.g. ``fc``.
        kernel: The kernel Paddle Lite picked, as it writes it: ``<op>/<alias>/<target>/<precision>/<layout>``
            (codes of Paddle Lite's enums, e.g. ``fc/def/4/1/1`` is the ARM float kernel). Empty if absent
            (ops inside an NNAdapter subgraph have none: the accelerator's driver runs them).
        inputs: Argument name -> variable names.
        outputs: Argument name -> variable names.
        attrs: The op's attributes (bookkeeping ones left out); lists become tuples.
        sub_ops: For a ``subgraph`` op, the ops of its sub-block, in order; empty otherwise.
    """

    type: str
    kernel: str
    inputs: dict[str, tuple[str, ...]]
    outputs: dict[str, tuple[str, ...]]
    attrs: Mapping[str, AttrValue] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    sub_ops: tuple[KernelOp, ...] = ()


#: Integer weights up to this many elements have their values read (they are folded shape constants).
MAX_VALUE_ELEMENTS = 16


@dataclasses.dataclass(frozen=True)
class PersistableVar:
    """A weight of the optimized program: its declared shape and element type (both reliable).

    Attributes:
        shape: Declared dimensions.
        dtype: Element type name.
        value: The values of a small integer tensor (at most :data:`MAX_VALUE_ELEMENTS`), flattened, when the
            params file was read; ``opt`` folds constant shape arguments (``fill_constant``) into such tensors.
    """

    shape: tuple[int, ...]
    dtype: str
    value: tuple[int, ...] | None = None


@dataclasses.dataclass(frozen=True)
class KernelProgram:
    """An optimized program as devicefit reads it.

    Attributes:
        ops: Block 0 in execution order (``feed`` first, ``fetch`` last).
        persistables: Name -> shape and dtype of every persistable variable (weights), from any block.
    """

    ops: tuple[KernelOp, ...]
    persistables: Mapping[str, PersistableVar]


def _attr_value(attr: Any) -> AttrValue:
    kind = attr.type
    scalar = {0: "i", 1: "f", 2: "s", 6: "b", 8: "block_idx", 9: "l", 13: "var_name", 15: "float64"}
    repeated = {3: "ints", 4: "floats", 5: "strings", 7: "bools", 10: "blocks_idx", 11: "longs", 12: "float64s",
                14: "vars_name"}
    if kind in scalar:
        return getattr(attr, scalar[kind])  # type: ignore[no-any-return]
    if kind in repeated:
        return tuple(getattr(attr, repeated[kind]))
    return None  # SCALAR(S): not used by the kernels devicefit reads


def _read_op(op: Any, blocks: Any) -> KernelOp:
    kernel = ""
    attrs: dict[str, AttrValue] = {}
    sub_block: int | None = None
    for attr in op.attrs:
        if attr.name == KERNEL_ATTR:
            kernel = attr.s
        elif attr.name not in _BOOKKEEPING_ATTRS:
            attrs[attr.name] = _attr_value(attr)
            if attr.name == "sub_block":  # written as a BLOCK or, by Paddle Lite, as an INT attribute
                sub_block = int(attr.block_idx if attr.type == 8 else attr.i)
    sub_ops: tuple[KernelOp, ...] = ()
    if sub_block is not None:
        if not 0 < sub_block < len(blocks):
            raise ValueError(f"op {op.type} names sub-block {sub_block}; the program has {len(blocks)} blocks")
        sub_ops = tuple(_read_op(inner, blocks) for inner in blocks[sub_block].ops)
    return KernelOp(
        type=op.type,
        kernel=kernel,
        inputs={slot.parameter: tuple(slot.arguments) for slot in op.inputs},
        outputs={slot.parameter: tuple(slot.arguments) for slot in op.outputs},
        attrs=MappingProxyType(attrs),
        sub_ops=sub_ops,
    )


def _params_tensors(params_file: Path, names: list[str], framework_pb2: Any) -> dict[str, PersistableVar]:
    """The weights stored in a combined params file (``opt``'s protobuf ``params``), as they really are.

    The file holds every persistable variable of block 0, in sorted name order, each as Paddle's tensor
    serialization: ``uint32`` version, ``uint64`` LoD level and LoD data, ``uint32`` version, ``int32`` size of
    a ``TensorDesc``, the ``TensorDesc``, then the raw data. The walk must consume the file exactly. The dims
    written here are the tensor's own: when opt fuses two convolutions it keeps the first one's weight name
    and declared dims but stores the fused weight (seen: declared [16, 16, 1, 1], stored [72, 16, 1, 1]).
    Integer tensors up to :data:`MAX_VALUE_ELEMENTS` elements also get their values.

    Raises:
        ValueError: The file does not match the program (sizes, dims or count differ).
    """
    data = Path(params_file).read_bytes()
    position = 0
    tensors: dict[str, PersistableVar] = {}
    item_sizes = {0: 1, 1: 2, 2: 4, 3: 8, 4: 2, 5: 4, 6: 8, 20: 1, 21: 1, 22: 2}
    try:
        for name in names:
            position += 4
            (lod_level,) = struct.unpack_from("<Q", data, position)
            position += 8
            for _ in range(min(int(lod_level), 8)):
                (lod_bytes,) = struct.unpack_from("<Q", data, position)
                position += 8 + int(lod_bytes)
            position += 4
            (desc_size,) = struct.unpack_from("<i", data, position)
            position += 4
            desc = framework_pb2.VarType.TensorDesc()
            desc.ParseFromString(data[position : position + desc_size])
            position += desc_size
            dims = tuple(int(d) for d in desc.dims)
            count = math.prod(dims)
            code = int(desc.data_type)
            value = None
            if code in (2, 3) and count <= MAX_VALUE_ELEMENTS:
                fmt = "<%d%s" % (count, "i" if code == 2 else "q")
                value = tuple(int(v) for v in struct.unpack_from(fmt, data, position))
            tensors[name] = PersistableVar(dims, _VAR_DTYPES.get(code, f"code{code}"), value)
            position += item_sizes[code] * count
    except (struct.error, KeyError) as exc:
        raise ValueError(f"{params_file} does not match its program ({exc})") from None
    if position != len(data):
        raise ValueError(f"{params_file}: {len(data) - position} bytes left after {len(names)} tensors")
    return tensors


def read_kernel_program(model_file: Path, params_file: Path | None = None) -> KernelProgram:
    """Parse the ``model`` file that ``opt`` writes in protobuf mode.

    Args:
        model_file: The optimized program.
        params_file: Its ``params`` file. When given (always, for shapes that matter), the weights' shapes
            come from the stored tensors, which are reliable where the declared ones are not (fused
            convolutions), and small integer weights (folded shape constants) get their values.

    Raises:
        ValueError: The file is not an optimized program devicefit can read (a sub-block index out of range,
            a params file that does not match).
    """
    from devicefit.spaces._paddle import import_paddle

    import_paddle()
    from paddle.base.proto import framework_pb2

    program = framework_pb2.ProgramDesc()
    program.ParseFromString(Path(model_file).read_bytes())
    blocks = program.blocks
    persistables: dict[str, PersistableVar] = {}
    for block in blocks:
        for var in block.vars:
            if var.persistable and var.type.type == 7:  # LOD_TENSOR
                tensor = var.type.lod_tensor.tensor
                dtype = _VAR_DTYPES.get(int(tensor.data_type), f"code{tensor.data_type}")
                persistables[var.name] = PersistableVar(tuple(int(d) for d in tensor.dims), dtype)
    if params_file is not None:
        names = sorted(v.name for v in blocks[0].vars if v.persistable and v.type.type == 7)
        persistables.update(_params_tensors(Path(params_file), names, framework_pb2))
    ops = tuple(_read_op(op, blocks) for op in blocks[0].ops)
    return KernelProgram(ops=ops, persistables=MappingProxyType(persistables))


def read_optimized_program(model_file: Path) -> list[KernelOp]:
    """Parse the ``model`` file that ``opt`` writes in protobuf mode (block 0, in execution order)."""
    return list(read_kernel_program(model_file).ops)
