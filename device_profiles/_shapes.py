"""Shape inference on Paddle Lite's optimized program: which kernel runs on which tensor shapes.

The optimized program that ``opt`` writes (see :mod:`devicefit.device_profiles._program`) lists the kernels the
target will run after Paddle Lite's fusion passes, but its activation shapes cannot be trusted: memory
optimization makes later ops reuse earlier variables. So shapes are inferred here, op by op in execution
order, from the model's input shapes (batch of one) and the declared shapes of the weights. Reading a
variable always sees its last write, which is exactly what reuse means at run time.

Small integer tensors (``shape`` outputs, ``fill_constant`` results, slices of them) also carry their
*values*, because later ops take shapes from them (``expand_v2`` of a class token to the batch size).

Every op type has an explicit rule. An op without a rule, or whose inputs contradict each other (a
``matmul`` whose inner dimensions differ), raises :class:`ShapeInferenceError` naming the op: a latency
predictor must never silently skip a kernel (PaddleSlim's table lookup counts a missing op as 0 ms).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from devicefit.device_profiles._program import KernelOp, KernelProgram

#: Paddle Lite's ``TargetType`` codes (``lite/api/paddle_place.h``) -> names used in cost keys.
TARGETS = {0: "unk", 1: "host", 2: "x86", 3: "cuda", 4: "arm", 5: "opencl", 6: "any", 7: "fpga", 8: "npu",
           9: "xpu", 10: "bm", 11: "mlu", 12: "rknpu", 13: "apu", 14: "ascend", 15: "nna", 16: "intel_fpga",
           17: "metal", 18: "nnadapter"}
#: Paddle Lite's ``PrecisionType`` codes -> names used in cost keys.
PRECISIONS = {0: "unk", 1: "fp32", 2: "int8", 3: "int32", 4: "any", 5: "fp16", 6: "bool", 7: "int64",
              8: "int16", 9: "uint8", 10: "fp64"}
#: Paddle's ``VarType.Type`` codes used by ``dtype``/``out_dtype`` attributes -> dtype names.
VAR_DTYPES = {0: "bool", 1: "int16", 2: "int32", 3: "int64", 4: "float16", 5: "float32", 6: "float64",
              20: "uint8", 21: "int8"}
DTYPE_BYTES = {"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "float16": 2, "bfloat16": 2, "int32": 4,
               "float32": 4, "int64": 8, "float64": 8}
#: The pseudo-target of ops inside an NNAdapter ``subgraph`` (run by the accelerator's driver).
ACCELERATOR = "nnadapter"
#: Bound on the number of values tracked for one integer tensor (shape tensors are tiny).
MAX_TRACKED_VALUES = 16


class ShapeInferenceError(ValueError):
    """An op of the optimized program has no shape rule, or its inputs are inconsistent."""


@dataclasses.dataclass(frozen=True)
class Tensor:
    """What is known of one variable at one point of the program.

    Attributes:
        shape: Dimensions (all known: inference runs for a concrete input).
        dtype: Element type name (``float32``, ``int64``...).
        value: The flattened values, for small integer tensors whose values are known; else None.
        persistable: Whether it is a weight of the model.
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    value: tuple[int, ...] | None = None
    persistable: bool = False

    @property
    def numel(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Size in bytes (element type from :attr:`dtype`)."""
        return self.numel * DTYPE_BYTES.get(self.dtype, 4)


@dataclasses.dataclass(frozen=True)
class ShapedKernel:
    """One kernel of the optimized program with the shapes it runs on.

    Attributes:
        type: Op type after fusion (``fc``, ``matmul_v2``, ``softmax``...).
        target: Where it runs: a Paddle Lite target name (``x86``, ``arm``, ``host``, ``opencl``), or
            ``nnadapter`` for an op inside an NNAdapter subgraph (run by the accelerator).
        precision: Kernel precision (``fp32``, ``fp16``, ``int8``, ``any``...).
        attrs: The op's attributes.
        inputs: Argument name -> tensors read.
        outputs: Argument name -> tensors written.
        subgraph: Index of the NNAdapter subgraph the op runs in, None for a kernel of the program itself.
    """

    type: str
    target: str
    precision: str
    attrs: Mapping[str, Any]
    inputs: Mapping[str, tuple[Tensor, ...]]
    outputs: Mapping[str, tuple[Tensor, ...]]
    subgraph: int | None = None

    def input(self, name: str, index: int = 0) -> Tensor:
        """The ``index``-th tensor of input argument ``name``.

        Raises:
            ShapeInferenceError: The op has no such input.
        """
        tensors = self.inputs.get(name, ())
        if index >= len(tensors):
            raise ShapeInferenceError(f"{self.type} has no input {name}[{index}]")
        return tensors[index]

    def output(self, name: str, index: int = 0) -> Tensor:
        """The ``index``-th tensor of output argument ``name``."""
        tensors = self.outputs.get(name, ())
        if index >= len(tensors):
            raise ShapeInferenceError(f"{self.type} has no output {name}[{index}]")
        return tensors[index]

    def describe(self) -> str:
        """``matmul_v2 x86/fp32 [1,17,64]x[64,64]->[1,17,64]``-style one-liner."""
        ins = "x".join(_fmt(t.shape) for ts in self.inputs.values() for t in ts if not t.persistable) or "-"
        outs = ",".join(_fmt(t.shape) for ts in self.outputs.values() for t in ts) or "-"
        where = f"{self.target}/{self.precision}" + (f" subgraph {self.subgraph}" if self.subgraph is not None else "")
        return f"{self.type} {where} {ins}->{outs}"


@dataclasses.dataclass(frozen=True)
class SubgraphBoundary:
    """One NNAdapter subgraph: what crosses between the CPU and the accelerator.

    Attributes:
        index: Position among the program's subgraphs.
        ops: Ops inside it.
        input_bytes: Activation bytes handed to the accelerator per run.
        output_bytes: Activation bytes handed back per run.
    """

    index: int
    ops: int
    input_bytes: int
    output_bytes: int


@dataclasses.dataclass(frozen=True)
class ShapedProgram:
    """The kernels of an optimized program with their shapes, and its NNAdapter subgraphs.

    Attributes:
        kernels: Every op in execution order (ops of a subgraph where the subgraph runs), feed and fetch included.
        subgraphs: The NNAdapter subgraphs (empty for CPU and GPU targets).
    """

    kernels: tuple[ShapedKernel, ...]
    subgraphs: tuple[SubgraphBoundary, ...] = ()


def _fmt(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def parse_kernel(kernel: str) -> tuple[str, str]:
    """``(target, precision)`` names of a kernel string ``<op>/<alias>/<target>/<precision>/<layout>``.

    Raises:
        ShapeInferenceError: The string does not end with three integer codes.
    """
    parts = kernel.split("/")
    try:
        target, precision = int(parts[-3]), int(parts[-2])
        int(parts[-1])
    except (IndexError, ValueError):
        raise ShapeInferenceError(f"cannot read the kernel string {kernel!r}") from None
    return TARGETS.get(target, f"target{target}"), PRECISIONS.get(precision, f"precision{precision}")


# --------------------------------------------------------------------------------------------------
# shape rules: (op, inputs) -> outputs. ``ins[arg]`` are the tensors of an input argument.

Ins = Mapping[str, Sequence[Tensor]]
Outs = dict[str, list[Tensor]]
Rule = Callable[[KernelOp, Ins], Outs]


def _one(op: KernelOp, ins: Ins, arg: str) -> Tensor:
    tensors = ins.get(arg, ())
    if len(tensors) != 1:
        raise ShapeInferenceError(f"{op.type}: expected one tensor for input {arg}, got {len(tensors)}")
    return tensors[0]


def _optional(ins: Ins, arg: str) -> Tensor | None:
    tensors = ins.get(arg, ())
    return tensors[0] if tensors else None


def _attr(op: KernelOp, name: str, default: Any = None) -> Any:
    value = op.attrs.get(name, default)
    return default if value is None else value


def _axis(axis: int, rank: int, op: KernelOp) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeInferenceError(f"{op.type}: axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def _same(op: KernelOp, ins: Ins, *, src: str = "X", dst: str = "Out", dtype: str | None = None) -> Outs:
    x = _one(op, ins, src)
    return {dst: [Tensor(x.shape, dtype or x.dtype, x.value)]}


def _broadcast(op: KernelOp, x: tuple[int, ...], y: tuple[int, ...], axis: int) -> tuple[int, ...]:
    """Paddle's elementwise broadcast: Y aligned at ``axis`` of X (right-aligned when -1), then numpy rules."""
    if axis != -1 and len(y) < len(x):
        start = _axis(axis, len(x), op)
        y = (1,) * start + y + (1,) * (len(x) - start - len(y))
    rank = max(len(x), len(y))
    x = (1,) * (rank - len(x)) + x
    y = (1,) * (rank - len(y)) + y
    out = []
    for a, b in zip(x, y):
        if a != b and 1 not in (a, b):
            raise ShapeInferenceError(f"{op.type}: shapes {_fmt(x)} and {_fmt(y)} do not broadcast")
        out.append(max(a, b))
    return tuple(out)


def _elementwise(op: KernelOp, ins: Ins) -> Outs:
    x, y = _one(op, ins, "X"), _one(op, ins, "Y")
    shape = _broadcast(op, x.shape, y.shape, int(_attr(op, "axis", -1)))
    value = None
    if x.value is not None and y.value is not None and len(x.value) == len(y.value):
        fn = {"elementwise_add": lambda a, b: a + b, "elementwise_sub": lambda a, b: a - b,
              "elementwise_mul": lambda a, b: a * b}.get(op.type)
        if fn is not None:
            value = tuple(fn(a, b) for a, b in zip(x.value, y.value))
    return {"Out": [Tensor(shape, x.dtype, value)]}


def _feed(op: KernelOp, ins: Ins) -> Outs:  # handled by the walker (needs the model's inputs)
    raise AssertionError("feed is handled by infer_shapes")


def _fetch(op: KernelOp, ins: Ins) -> Outs:
    _one(op, ins, "X")
    return {}


def _resolve_shape(op: KernelOp, requested: Sequence[int], x: Tensor) -> tuple[int, ...]:
    """Reshape semantics: 0 copies the input's dimension, one -1 takes the rest."""
    dims = [x.shape[i] if d == 0 and i < len(x.shape) else int(d) for i, d in enumerate(requested)]
    if dims.count(-1) > 1 or any(d < -1 for d in dims):
        raise ShapeInferenceError(f"{op.type}: invalid target shape {list(requested)}")
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        if known == 0 or x.numel % known:
            raise ShapeInferenceError(f"{op.type}: cannot reshape {_fmt(x.shape)} to {list(requested)}")
        dims[dims.index(-1)] = x.numel // known
    if math.prod(dims) != x.numel:
        raise ShapeInferenceError(f"{op.type}: cannot reshape {_fmt(x.shape)} ({x.numel} elements) to {dims}")
    return tuple(dims)


def _values_of(op: KernelOp, tensors: Sequence[Tensor], what: str) -> list[int]:
    values: list[int] = []
    for tensor in tensors:
        if tensor.value is None:
            raise ShapeInferenceError(f"{op.type}: the values of its {what} input are not known before running")
        values.extend(tensor.value)
    return values


def _reshape(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "X")
    if ins.get("ShapeTensor"):
        requested = _values_of(op, ins["ShapeTensor"], "ShapeTensor")
    elif ins.get("Shape"):
        requested = _values_of(op, ins["Shape"], "Shape")
    else:
        requested = list(_attr(op, "shape", ()))
    out = Tensor(_resolve_shape(op, requested, x), x.dtype, x.value)
    return {"Out": [out], "XShape": [Tensor((0, *x.shape), x.dtype)]}


def _flatten(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "X")
    rank = len(x.shape)
    start = _axis(int(_attr(op, "start_axis", 1)), max(rank, 1), op)
    stop = _axis(int(_attr(op, "stop_axis", -1)), max(rank, 1), op)
    shape = x.shape[:start] + (math.prod(x.shape[start : stop + 1]),) + x.shape[stop + 1 :]
    return {"Out": [Tensor(shape, x.dtype, x.value)], "XShape": [Tensor((0, *x.shape), x.dtype)]}


def _squeeze(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "X")
    axes = [_axis(int(a), len(x.shape), op) for a in _attr(op, "axes", ())]
    if axes:
        shape = tuple(d for i, d in enumerate(x.shape) if not (i in axes and d == 1))
    else:
        shape = tuple(d for d in x.shape if d != 1)
    return {"Out": [Tensor(shape, x.dtype, x.value)], "XShape": [Tensor((0, *x.shape), x.dtype)]}


def _unsqueeze(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "X")
    if ins.get("AxesTensor") or ins.get("AxesTensorList"):
        axes = _values_of(op, [*ins.get("AxesTensor", ()), *ins.get("AxesTensorList", ())], "axes")
    else:
        axes = [int(a) for a in _attr(op, "axes", ())]
    shape = list(x.shape)
    for axis in axes:
        position = axis + len(shape) + 1 if axis < 0 else axis
        if not 0 <= position <= len(shape):
            raise ShapeInferenceError(f"{op.type}: axis {axis} out of range for {_fmt(shape)}")
        shape.insert(position, 1)
    return {"Out": [Tensor(tuple(shape), x.dtype, x.value)], "XShape": [Tensor((0, *x.shape), x.dtype)]}


def _transpose(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "X")
    axis = [int(a) for a in _attr(op, "axis", ())]
    if sorted(axis) != list(range(len(x.shape))):
        raise ShapeInferenceError(f"{op.type}: permutation {axis} does not fit {_fmt(x.shape)}")
    return {"Out": [Tensor(tuple(x.shape[a] for a in axis), x.dtype)], "XShape": [Tensor((0, *x.shape), x.dtype)]}


def _shape(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "Input")
    return {"Out": [Tensor((len(x.shape),), "int32", tuple(x.shape))]}


def _slice(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "Input")
    axes = [_axis(int(a), len(x.shape), op) for a in _attr(op, "axes", ())]
    starts = (_values_of(op, [*ins.get("StartsTensor", ()), *ins.get("StartsTensorList", ())], "starts")
              if ins.get("StartsTensor") or ins.get("StartsTensorList") else list(_attr(op, "starts", ())))
    ends = (_values_of(op, [*ins.get("EndsTensor", ()), *ins.get("EndsTensorList", ())], "ends")
            if ins.get("EndsTensor") or ins.get("EndsTensorList") else list(_attr(op, "ends", ())))
    if not len(axes) == len(starts) == len(ends):
        raise ShapeInferenceError(f"{op.type}: axes, starts and ends differ in length")
    shape = list(x.shape)
    bounds = {}
    for axis, start, end in zip(axes, starts, ends):
        size = x.shape[axis]
        lo = max(0, min(size, start + size if start < 0 else start))
        hi = max(0, min(size, end + size if end < 0 else end))
        shape[axis] = max(0, hi - lo)
        bounds[axis] = (lo, hi)
    decrease = {_axis(int(a), len(x.shape), op) for a in _attr(op, "decrease_axis", ())}
    out_shape = tuple(d for i, d in enumerate(shape) if not (i in decrease and d == 1))
    value = None
    if x.value is not None and len(x.shape) == 1:
        lo, hi = bounds.get(0, (0, x.shape[0]))
        value = x.value[lo:hi]
    return {"Out": [Tensor(out_shape if out_shape or not decrease else (), x.dtype, value)]}


def _fill_constant(op: KernelOp, ins: Ins) -> Outs:
    if ins.get("ShapeTensor") or ins.get("ShapeTensorList"):
        shape = tuple(_values_of(op, [*ins.get("ShapeTensor", ()), *ins.get("ShapeTensorList", ())], "shape"))
    else:
        shape = tuple(int(d) for d in _attr(op, "shape", ()))
    dtype = VAR_DTYPES.get(int(_attr(op, "dtype", 5)), "float32")
    value = None
    if dtype.startswith("int") and math.prod(shape) <= MAX_TRACKED_VALUES and not ins.get("ValueTensor"):
        text = _attr(op, "str_value", "")
        number = float(text) if text else float(_attr(op, "value", 0.0))
        value = (int(number),) * math.prod(shape)
    return {"Out": [Tensor(shape, dtype, value)]}


def _fill_any_like(op: KernelOp, ins: Ins) -> Outs:
    """``zeros_like``/``ones_like``/``full_like``: X's shape, the ``dtype`` attribute's type (-1: X's)."""
    x = _one(op, ins, "X")
    code = int(_attr(op, "dtype", -1))
    dtype = x.dtype if code < 0 else VAR_DTYPES.get(code, x.dtype)
    value = None
    if dtype.startswith("int") and x.numel <= MAX_TRACKED_VALUES:
        value = (int(float(_attr(op, "value", 0.0))),) * x.numel
    return {"Out": [Tensor(x.shape, dtype, value)]}


def _range(op: KernelOp, ins: Ins) -> Outs:
    """``arange``: ``ceil((end - start) / step)`` values; the bounds must be known before running."""
    start, end, step = (_values_of(op, [_one(op, ins, arg)], arg)[0] for arg in ("Start", "End", "Step"))
    if step == 0:
        raise ShapeInferenceError(f"{op.type}: step 0")
    length = max(0, math.ceil((end - start) / step))
    dtype = _one(op, ins, "Start").dtype
    value = tuple(range(start, end, step)) if length <= MAX_TRACKED_VALUES else None
    return {"Out": [Tensor((length,), dtype, value)]}


def _expand(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "X")
    if ins.get("expand_shapes_tensor"):
        requested = _values_of(op, ins["expand_shapes_tensor"], "expand_shapes_tensor")
    elif ins.get("Shape"):
        requested = _values_of(op, ins["Shape"], "Shape")
    else:
        requested = [int(d) for d in _attr(op, "shape", ())]
    if len(requested) < len(x.shape):
        raise ShapeInferenceError(f"{op.type}: cannot expand {_fmt(x.shape)} to {requested}")
    padded = (1,) * (len(requested) - len(x.shape)) + x.shape
    shape = []
    for have, want in zip(padded, requested):
        if want == -1:
            shape.append(have)
        elif have in (1, want):
            shape.append(want)
        else:
            raise ShapeInferenceError(f"{op.type}: cannot expand {_fmt(x.shape)} to {requested}")
    return {"Out": [Tensor(tuple(shape), x.dtype)]}


def _concat(op: KernelOp, ins: Ins) -> Outs:
    xs = list(ins.get("X", ()))
    if not xs:
        raise ShapeInferenceError(f"{op.type}: no inputs")
    axis_tensor = _optional(ins, "AxisTensor")
    axis_value = _values_of(op, [axis_tensor], "AxisTensor")[0] if axis_tensor else int(_attr(op, "axis", 0))
    rank = len(xs[0].shape)
    axis = _axis(axis_value, rank, op)
    for x in xs[1:]:
        if len(x.shape) != rank or any(a != b for i, (a, b) in enumerate(zip(x.shape, xs[0].shape)) if i != axis):
            raise ShapeInferenceError(f"{op.type}: {[_fmt(t.shape) for t in xs]} do not concatenate on axis {axis}")
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    value = None
    if rank == 1 and all(x.value is not None for x in xs):
        value = tuple(v for x in xs for v in x.value or ())
    return {"Out": [Tensor(tuple(shape), xs[0].dtype, value)]}


def _stack(op: KernelOp, ins: Ins) -> Outs:
    xs = list(ins.get("X", ()))
    if not xs or any(x.shape != xs[0].shape for x in xs):
        raise ShapeInferenceError(f"{op.type}: inputs must share one shape")
    axis = int(_attr(op, "axis", 0))
    shape = list(xs[0].shape)
    shape.insert(axis + len(shape) + 1 if axis < 0 else axis, len(xs))
    value = None
    if not xs[0].shape and all(x.value is not None for x in xs):
        value = tuple(v for x in xs for v in x.value or ())
    return {"Y": [Tensor(tuple(shape), xs[0].dtype, value)]}


def _layer_norm(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "X")
    begin = _axis(int(_attr(op, "begin_norm_axis", 1)), len(x.shape), op)
    rows = math.prod(x.shape[:begin])
    width = math.prod(x.shape[begin:])
    for arg in ("Scale", "Bias"):
        param = _optional(ins, arg)
        if param is not None and param.numel != width:
            raise ShapeInferenceError(f"{op.type}: {arg} has {param.numel} elements, the normalized width is {width}")
    return {"Y": [Tensor(x.shape, x.dtype)], "Mean": [Tensor((rows,))], "Variance": [Tensor((rows,))]}


def _matmul_shape(op: KernelOp, x: tuple[int, ...], y: tuple[int, ...], trans_x: bool, trans_y: bool) -> tuple[int, ...]:
    if not x or not y:
        raise ShapeInferenceError(f"{op.type}: scalar operands")
    x_vec, y_vec = len(x) == 1, len(y) == 1
    xs = (1, *x) if x_vec else x
    ys = (*y, 1) if y_vec else y
    if trans_x and not x_vec:
        xs = (*xs[:-2], xs[-1], xs[-2])
    if trans_y and not y_vec:
        ys = (*ys[:-2], ys[-1], ys[-2])
    if xs[-1] != ys[-2]:
        raise ShapeInferenceError(f"{op.type}: inner dimensions differ: {_fmt(x)} x {_fmt(y)}")
    batch = _broadcast(op, xs[:-2], ys[:-2], -1) if (xs[:-2] or ys[:-2]) else ()
    out = (*batch, xs[-2], ys[-1])
    if x_vec:
        out = (*out[:-2], out[-1])
    if y_vec:
        out = out[:-1]
    return out


def _matmul_v2(op: KernelOp, ins: Ins) -> Outs:
    x, y = _one(op, ins, "X"), _one(op, ins, "Y")
    shape = _matmul_shape(op, x.shape, y.shape, bool(_attr(op, "trans_x", False)), bool(_attr(op, "trans_y", False)))
    return {"Out": [Tensor(shape, x.dtype)]}


def _matmul(op: KernelOp, ins: Ins) -> Outs:
    x, y = _one(op, ins, "X"), _one(op, ins, "Y")
    shape = _matmul_shape(
        op, x.shape, y.shape, bool(_attr(op, "transpose_X", False)), bool(_attr(op, "transpose_Y", False))
    )
    return {"Out": [Tensor(shape, x.dtype)]}


def _mul(op: KernelOp, ins: Ins) -> Outs:
    x, y = _one(op, ins, "X"), _one(op, ins, "Y")
    xc, yc = int(_attr(op, "x_num_col_dims", 1)), int(_attr(op, "y_num_col_dims", 1))
    if math.prod(x.shape[xc:]) != math.prod(y.shape[:yc]):
        raise ShapeInferenceError(f"{op.type}: {_fmt(x.shape)} x {_fmt(y.shape)} do not multiply")
    return {"Out": [Tensor((*x.shape[:xc], *y.shape[yc:]), x.dtype)]}


def fc_columns(attrs: Mapping[str, Any], rank: int) -> int:
    """Where an ``fc`` flattens its input: ``in_num_col_dims``, except for an ``fc`` fused from
    ``matmul``/``matmul_v2`` (attribute ``op_type``), which Paddle Lite's kernels flatten at the last axis."""
    if attrs.get("op_type") in ("matmul", "matmul_v2"):
        return rank - 1
    return int(attrs.get("in_num_col_dims") or 1)


def fc_dims(attrs: Mapping[str, Any], x: tuple[int, ...], w: tuple[int, ...]) -> tuple[int, int, int]:
    """``(M, K, N)`` of an ``fc`` kernel with attributes ``attrs``, input shape ``x`` and weight shape ``w``.

    Raises:
        ShapeInferenceError: The weight is not 2-D or does not match the flattened input.
    """
    cols = fc_columns(attrs, len(x))
    if len(w) != 2 or not 0 < cols <= len(x):
        raise ShapeInferenceError(f"fc: weight {_fmt(w)} / input {_fmt(x)} is not an fc")
    m, k = math.prod(x[:cols]), math.prod(x[cols:])
    if k != w[0]:
        raise ShapeInferenceError(f"fc: input {_fmt(x)} flattened at {cols} has K={k}, the weight is {_fmt(w)}")
    return m, k, w[1]


def _fc(op: KernelOp, ins: Ins) -> Outs:
    x, w = _one(op, ins, "Input"), _one(op, ins, "W")
    m, k, n = fc_dims(op.attrs, x.shape, w.shape)
    cols = fc_columns(op.attrs, len(x.shape))
    bias = _optional(ins, "Bias")
    if bias is not None and bias.numel != n:
        raise ShapeInferenceError(f"{op.type}: bias of {bias.numel} elements for N={n}")
    return {"Out": [Tensor((*x.shape[:cols], n), x.dtype)]}


def conv_output_hw(op: KernelOp, x: tuple[int, ...], w: tuple[int, ...]) -> tuple[int, int]:
    """Output height and width of a ``conv2d`` on an NCHW input ``x`` with filter ``w`` ([O, I/g, kh, kw])."""
    if len(x) != 4 or len(w) != 4:
        raise ShapeInferenceError(f"{op.type}: input {_fmt(x)} and filter {_fmt(w)} must be 4-D (NCHW)")
    if _attr(op, "data_format", "NCHW") not in ("NCHW", "AnyLayout"):
        raise ShapeInferenceError(f"{op.type}: data_format {_attr(op, 'data_format')} is not supported")
    strides = list(_attr(op, "strides", (1, 1)))
    dilations = list(_attr(op, "dilations", (1, 1)))
    paddings = list(_attr(op, "paddings", (0, 0)))
    algorithm = _attr(op, "padding_algorithm", "EXPLICIT")
    if len(paddings) == 2:
        paddings = [paddings[0], paddings[0], paddings[1], paddings[1]]
    out = []
    for i, size in enumerate(x[2:]):
        kernel = (w[2 + i] - 1) * dilations[i] + 1
        if algorithm == "SAME":
            out.append((size + strides[i] - 1) // strides[i])
        elif algorithm == "VALID":
            out.append((size - kernel) // strides[i] + 1)
        else:
            out.append((size + paddings[2 * i] + paddings[2 * i + 1] - kernel) // strides[i] + 1)
    if min(out) < 1:
        raise ShapeInferenceError(f"{op.type}: empty output for input {_fmt(x)} and filter {_fmt(w)}")
    return out[0], out[1]


def _conv2d(op: KernelOp, ins: Ins) -> Outs:
    x, w = _one(op, ins, "Input"), _one(op, ins, "Filter")
    groups = int(_attr(op, "groups", 1))
    if x.shape[1] != w.shape[1] * groups:
        raise ShapeInferenceError(f"{op.type}: {x.shape[1]} input channels, filter {_fmt(w.shape)}, groups {groups}")
    h, wd = conv_output_hw(op, x.shape, w.shape)
    return {"Output": [Tensor((x.shape[0], w.shape[0], h, wd), x.dtype)]}


def _pool2d(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "X")
    if len(x.shape) != 4:
        raise ShapeInferenceError(f"{op.type}: input {_fmt(x.shape)} must be NCHW")
    if _attr(op, "global_pooling", False) or _attr(op, "adaptive", False):
        size = tuple(int(k) for k in _attr(op, "ksize", (1, 1))) if _attr(op, "adaptive", False) else (1, 1)
        return {"Out": [Tensor((*x.shape[:2], *size), x.dtype)]}
    ksize = [int(k) for k in _attr(op, "ksize", (1, 1))]
    fake = KernelOp(op.type, op.kernel, {}, {}, op.attrs)
    h, w = conv_output_hw(fake, x.shape, (x.shape[1], 1, *ksize))
    return {"Out": [Tensor((*x.shape[:2], h, w), x.dtype)]}


def _lookup(op: KernelOp, ins: Ins) -> Outs:
    ids, table = _one(op, ins, "Ids"), _one(op, ins, "W")
    shape = ids.shape[:-1] if op.type == "lookup_table" and ids.shape and ids.shape[-1] == 1 else ids.shape
    return {"Out": [Tensor((*shape, table.shape[-1]), table.dtype)]}


def _reduce(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "X")
    rank = len(x.shape)
    if _attr(op, "reduce_all", False):
        axes = set(range(rank))
    else:
        axes = {_axis(int(a), rank, op) for a in _attr(op, "dim", (0,))}
    keep = bool(_attr(op, "keep_dim", False))
    shape = tuple((1 if i in axes else d) for i, d in enumerate(x.shape) if keep or i not in axes)
    return {"Out": [Tensor(shape, x.dtype)]}


def _mean(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "X")
    return {"Out": [Tensor((), x.dtype)]}


def _arg_max(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "X")
    axis = _axis(int(_attr(op, "axis", -1)), len(x.shape), op)
    keep = bool(_attr(op, "keepdims", False))
    shape = tuple((1 if i == axis else d) for i, d in enumerate(x.shape) if keep or i != axis)
    return {"Out": [Tensor(shape, VAR_DTYPES.get(int(_attr(op, "dtype", 3)), "int64"))]}


def _cast(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "X")
    dtype = VAR_DTYPES.get(int(_attr(op, "out_dtype", 5)), "float32")
    return {"Out": [Tensor(x.shape, dtype, x.value if dtype.startswith("int") else None)]}


def _scale(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "X")
    value = None
    if x.value is not None:
        scale, bias = float(_attr(op, "scale", 1.0)), float(_attr(op, "bias", 0.0))
        after = bool(_attr(op, "bias_after_scale", True))
        value = tuple(int(v * scale + bias) if after else int((v + bias) * scale) for v in x.value)
    return {"Out": [Tensor(x.shape, x.dtype, value)]}


def _gather(op: KernelOp, ins: Ins) -> Outs:
    x, index = _one(op, ins, "X"), _one(op, ins, "Index")
    axis = _axis(int(_attr(op, "axis", 0)), len(x.shape), op)
    shape = (*x.shape[:axis], *index.shape, *x.shape[axis + 1 :])
    return {"Out": [Tensor(shape, x.dtype)]}


def _batch_norm(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "X")
    channels = x.shape[1] if len(x.shape) > 1 else 1
    stats = [Tensor((channels,))]
    return {"Y": [Tensor(x.shape, x.dtype)], "MeanOut": stats, "VarianceOut": stats, "SavedMean": stats,
            "SavedVariance": stats}


def _layout_copy(op: KernelOp, ins: Ins) -> Outs:
    return _same(op, ins, src="Input")


def _dropout(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "X")
    return {"Out": [Tensor(x.shape, x.dtype)], "Mask": [Tensor(x.shape, "uint8")]}


def _softmax_like(op: KernelOp, ins: Ins) -> Outs:
    x = _one(op, ins, "X")
    _axis(int(_attr(op, "axis", -1)), len(x.shape), op)
    return {"Out": [Tensor(x.shape, x.dtype)]}


_ACTIVATIONS = ("relu", "relu6", "clip", "gelu", "tanh", "sigmoid", "swish", "hard_swish", "hard_sigmoid", "leaky_relu",
                "exp", "sqrt", "rsqrt", "abs", "square", "erf", "log", "silu", "mish", "softplus", "prelu")
_ELEMENTWISE = ("elementwise_add", "elementwise_sub", "elementwise_mul", "elementwise_div", "elementwise_max",
                "elementwise_min", "elementwise_pow", "fusion_elementwise_add_activation",
                "fusion_elementwise_sub_activation", "fusion_elementwise_mul_activation",
                "fusion_elementwise_div_activation")

RULES: dict[str, Rule] = {
    "feed": _feed,
    "fetch": _fetch,
    "fc": _fc,
    "mul": _mul,
    "matmul": _matmul,
    "matmul_v2": _matmul_v2,
    "conv2d": _conv2d,
    "depthwise_conv2d": _conv2d,
    "pool2d": _pool2d,
    "layer_norm": _layer_norm,
    "batch_norm": _batch_norm,
    "softmax": _softmax_like,
    "log_softmax": _softmax_like,
    "reshape": _reshape,
    "reshape2": _reshape,
    "flatten_contiguous_range": _flatten,
    "squeeze": _squeeze,
    "squeeze2": _squeeze,
    "unsqueeze": _unsqueeze,
    "unsqueeze2": _unsqueeze,
    "transpose": _transpose,
    "transpose2": _transpose,
    "shape": _shape,
    "slice": _slice,
    "fill_constant": _fill_constant,
    "fill_any_like": _fill_any_like,
    "range": _range,
    "expand_v2": _expand,
    "concat": _concat,
    "stack": _stack,
    "lookup_table": _lookup,
    "lookup_table_v2": _lookup,
    "reduce_mean": _reduce,
    "reduce_sum": _reduce,
    "reduce_max": _reduce,
    "mean": _mean,
    "arg_max": _arg_max,
    "cast": _cast,
    "scale": _scale,
    "gather": _gather,
    "io_copy": _layout_copy,
    "io_copy_once": _layout_copy,
    "layout": _layout_copy,
    "layout_once": _layout_copy,
    "calib": _layout_copy,
    "calib_once": _layout_copy,
    "dropout": _dropout,
    "assign": _same,
    **{name: _same for name in _ACTIVATIONS},
    **{name: _elementwise for name in _ELEMENTWISE},
}


def _lookup_inputs(op: KernelOp, env: dict[str, Tensor], program: KernelProgram) -> dict[str, list[Tensor]]:
    ins: dict[str, list[Tensor]] = {}
    for arg, names in op.inputs.items():
        tensors = []
        for name in names:
            tensor = env.get(name)
            if tensor is None:
                var = program.persistables.get(name)
                if var is None:
                    raise ShapeInferenceError(f"{op.type} reads {name!r} before any op wrote it")
                tensor = Tensor(var.shape, var.dtype, var.value, persistable=True)
            tensors.append(tensor)
        ins[arg] = tensors
    return ins


def _run_rule(op: KernelOp, ins: Mapping[str, Sequence[Tensor]]) -> Outs:
    rule = RULES.get(op.type)
    if rule is None:
        raise ShapeInferenceError(
            f"no shape rule for op type '{op.type}' (kernel {op.kernel or 'none'}); devicefit cannot cost it"
        )
    outs = rule(op, ins)
    return outs


def infer_shapes(program: KernelProgram, inputs: Sequence[Tensor]) -> ShapedProgram:
    """Infer the shapes every kernel of ``program`` runs on, for the given model inputs.

    Args:
        program: The optimized program (``opt`` protobuf output).
        inputs: The model's inputs in feed order (``col`` of each ``feed`` op), e.g. ``Tensor((1, 1, 8, 8))``.

    Returns:
        The kernels in execution order with their input and output tensors, and the NNAdapter subgraphs.

    Raises:
        ShapeInferenceError: An op has no rule, reads a variable nobody wrote, or its shapes are inconsistent;
            the message names the op.
    """
    env: dict[str, Tensor] = {}
    kernels: list[ShapedKernel] = []
    subgraphs: list[SubgraphBoundary] = []

    def record(op: KernelOp, target: str, precision: str, subgraph: int | None) -> None:
        if op.type == "feed":
            column = int(_attr(op, "col", 0))
            if not 0 <= column < len(inputs):
                raise ShapeInferenceError(f"feed column {column}, but {len(inputs)} model inputs were given")
            outs: Outs = {"Out": [inputs[column]]}
            ins: dict[str, list[Tensor]] = {}
        else:
            ins = _lookup_inputs(op, env, program)
            try:
                outs = _run_rule(op, ins)
            except ShapeInferenceError as exc:
                shapes = ", ".join(f"{a}={[_fmt(t.shape) for t in ts]}" for a, ts in ins.items() if ts)
                raise ShapeInferenceError(f"{exc} (op {op.type}, inputs {shapes})") from None
        for arg, names in op.outputs.items():
            for name, tensor in zip(names, outs.get(arg, ())):
                env[name] = tensor
        kernels.append(
            ShapedKernel(
                type=op.type,
                target=target,
                precision=precision,
                attrs=op.attrs,
                inputs=MappingProxyType({a: tuple(ts) for a, ts in ins.items()}),
                outputs=MappingProxyType({a: tuple(outs.get(a, ())) for a in op.outputs}),
                subgraph=subgraph,
            )
        )

    for op in program.ops:
        if op.type == "subgraph":
            index = len(subgraphs)
            handed_in = dict(zip(op.inputs.get("Inputs", ()), _lookup_inputs(op, env, program).get("Inputs", ())))
            missing_in = [n for n in _attr(op, "input_data_names", ()) if n not in handed_in]
            if missing_in:
                raise ShapeInferenceError(f"subgraph {index} names inputs {missing_in} it does not take")
            in_bytes = sum(handed_in[n].nbytes for n in _attr(op, "input_data_names", ()))
            for inner in op.sub_ops:
                record(inner, ACCELERATOR, "any", index)
            missing = [n for n in _attr(op, "output_data_names", ()) if n not in env]
            if missing:
                raise ShapeInferenceError(f"subgraph {index} never writes its outputs {missing}")
            out_bytes = sum(env[n].nbytes for n in _attr(op, "output_data_names", ()))
            subgraphs.append(SubgraphBoundary(index, len(op.sub_ops), in_bytes, out_bytes))
            continue
        target, precision = parse_kernel(op.kernel) if op.kernel else ("host", "any")
        record(op, target, precision, None)
    return ShapedProgram(tuple(kernels), tuple(subgraphs))
