"""Cost features of one kernel: what its latency is fitted on.

Every kernel gets a cost key, ``<target>/<op type>[.<variant>]/<precision>`` (``x86/matmul_v2.weights/fp32``,
``arm/fc/int8``, ``nnadapter/softmax/any`` for an op inside an NPU subgraph; variants separate code paths
of one op type, see :func:`kernel_variant`), and six features:

* ``calls``: 1 (the fixed cost of launching the kernel);
* ``slices``: how many independent inner problems the kernel loops over: GEMMs of a batched matmul,
  rows of a softmax or layer norm, repetitions of the smaller operand of a broadcast elementwise op (or,
  where that operand is constant along the innermost axis, the runs it is added to: C of a conv bias),
  groups of a convolution, rows gathered by a lookup; 1 for the rest;
* ``mflop``: arithmetic, in millions of floating-point (or integer) operations: ``2*M*K*N`` for GEMMs,
  a per-element count for the rest (documented below per family);
* ``in_kib``: activation bytes the kernel reads, in KiB (1024 bytes);
* ``out_kib``: bytes it writes, in KiB;
* ``weight_kib``: bytes of weights (persistable inputs) it reads, in KiB.

For a GEMM of ``M x K`` by ``K x N`` the last three are proportional to ``M*K``, ``M*N`` and ``K*N``: with
``mflop`` (``M*K*N``) they describe the kernel's shape, which matters because small inner dimensions
cost more per operation than large ones.

A kernel's cost is linear in its features with coefficients fitted per cost key
(:mod:`devicefit.device_profiles._predictor`). The features of a whole model are summed per key, so a
model's latency is linear in the coefficients too: single-kernel probes and whole models are fitted
together by one least-squares problem.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from devicefit.device_profiles._shapes import ShapedKernel, ShapeInferenceError, fc_dims

#: The feature names, in the order of :meth:`KernelFeatures.vector`.
FEATURES = ("calls", "slices", "mflop", "in_kib", "out_kib", "weight_kib")

#: Floating-point operations per output element of element-wise kernels (an estimate; the fitted
#: coefficient absorbs the scale, so only the relative size within one op type matters).
_FLOPS_PER_ELEMENT = {
    "softmax": 5, "log_softmax": 6, "layer_norm": 8, "gelu": 20, "tanh": 10, "sigmoid": 10, "swish": 12,
    "hard_swish": 5, "erf": 15, "exp": 10, "scale": 2, "relu": 1, "relu6": 2, "clip": 2, "leaky_relu": 2,
    "hard_sigmoid": 3, "batch_norm": 2,
    # a precision conversion between int8 and float kernels: a multiply by the scale and a rounding per element
    "calib": 2, "calib_once": 2,
}
#: Kernels that only move or reinterpret data: features are bytes and calls, no arithmetic.
_DATA_MOVEMENT = frozenset({
    "feed", "fetch", "reshape", "reshape2", "flatten_contiguous_range", "squeeze", "squeeze2", "unsqueeze",
    "unsqueeze2", "transpose", "transpose2", "shape", "slice", "fill_constant", "fill_any_like", "range",
    "expand_v2", "concat", "stack",
    "io_copy", "io_copy_once", "layout", "layout_once", "cast", "assign", "gather",
    "dropout",
})


@dataclasses.dataclass(frozen=True)
class KernelFeatures:
    """The cost features of one kernel (or their sum over several kernels of one cost key).

    Attributes:
        key: Cost key ``<target>/<op type>/<precision>``.
        calls: Kernel launches.
        slices: Independent inner problems (see the module docstring).
        mflop: Millions of arithmetic operations.
        in_kib: KiB of activations read.
        out_kib: KiB written.
        weight_kib: KiB of weights read.
    """

    key: str
    calls: float
    slices: float
    mflop: float
    in_kib: float
    out_kib: float
    weight_kib: float

    def vector(self) -> tuple[float, ...]:
        """The features in the order of :data:`FEATURES`."""
        return (self.calls, self.slices, self.mflop, self.in_kib, self.out_kib, self.weight_kib)


def kernel_variant(kernel: ShapedKernel) -> str:
    """The code path of a kernel where one op type has several with different costs, else ``""``.

    * ``matmul``/``matmul_v2``/``mul``: ``weights`` when the right operand is a weight (a linear layer that
      the target did not fuse into ``fc``), ``act`` when both operands are activations (attention).
    * elementwise ops: ``same`` when both operands have one shape; ``bcast`` when the smaller one is repeated
      along the leading axes (a linear layer's bias, ``[M, N] + [N]``: one vector add per row);
      ``bcast_inner`` when it is constant along the innermost axis (a convolution's bias, ``[1, C, H, W] +
      [1, C, 1, 1]``: one scalar added to each of C runs of H*W elements, another loop than a row add).
    * ``transpose``/``transpose2``: ``inner`` when the permutation moves the innermost axis (the patch
      embedding's ``[1, C, HW] -> [1, HW, C]``: every element is gathered with a stride), ``""`` when the
      innermost axis stays (the attention's head split moves whole rows).
    """
    op = kernel.type
    if op in ("matmul", "matmul_v2", "mul") and "Y" in kernel.inputs:
        return "weights" if kernel.input("Y").persistable else "act"
    if (op.startswith("elementwise_") or op.startswith("fusion_elementwise_")) and "Y" in kernel.inputs:
        if kernel.input("X").shape == kernel.input("Y").shape:
            return "same"
        return "bcast_inner" if _inner_run(kernel) > 1 else "bcast"
    if op in ("transpose", "transpose2") and _moves_innermost(kernel):
        return "inner"
    return ""


def _aligned(kernel: ShapedKernel) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(output shape, the smaller operand's shape aligned to it) of a broadcast elementwise kernel: Paddle aligns
    Y at the ``axis`` attribute of X (right-aligned when -1)."""
    x, y = kernel.input("X").shape, kernel.input("Y").shape
    out = kernel.output("Out").shape
    small, large = (y, x) if math.prod(y) <= math.prod(x) else (x, y)
    axis = -1 if kernel.attrs.get("axis") is None else int(kernel.attrs["axis"])
    if small is y and axis != -1 and len(y) < len(x):
        start = axis + len(x) if axis < 0 else axis
        small = (1,) * start + small + (1,) * (len(x) - start - len(small))
    small = (1,) * (len(out) - len(small)) + tuple(small)
    return tuple(out), small[-len(out):] if out else small


def _inner_run(kernel: ShapedKernel) -> int:
    """Elements of the innermost run over which the smaller operand of a broadcast elementwise kernel is
    constant (1 when it varies along the innermost axis, as a linear layer's bias does). A one-element operand
    (a scalar) counts as 1: its loop is the plain broadcast one."""
    out, small = _aligned(kernel)
    if math.prod(small) <= 1:
        return 1
    run = 1
    for o, s in zip(reversed(out), reversed(small)):
        if s != 1:
            break
        run *= o
    return run


def _moves_innermost(kernel: ShapedKernel) -> bool:
    """Whether a transpose moves the innermost axis of its input that has more than one element."""
    shape = kernel.input("X").shape
    perm = [int(a) % max(1, len(shape)) for a in (kernel.attrs.get("axis") or ())]
    kept = [a for a in perm if shape[a] > 1]
    real = [a for a in range(len(shape)) if shape[a] > 1]
    return bool(real) and bool(kept) and kept[-1] != real[-1]


def cost_key(kernel: ShapedKernel) -> str:
    """``<target>/<op type>[.<variant>]/<precision>`` of a kernel (see :func:`kernel_variant`)."""
    variant = kernel_variant(kernel)
    op = f"{kernel.type}.{variant}" if variant else kernel.type
    return f"{kernel.target}/{op}/{kernel.precision}"


def _bytes(kernel: ShapedKernel) -> tuple[int, int, int]:
    """(activation bytes read, bytes written, weight bytes read)."""
    read = sum(t.nbytes for ts in kernel.inputs.values() for t in ts if not t.persistable)
    weights = sum(t.nbytes for ts in kernel.inputs.values() for t in ts if t.persistable)
    written = sum(t.nbytes for ts in kernel.outputs.values() for t in ts)
    return read, written, weights


def _gemm(kernel: ShapedKernel) -> tuple[float, float]:
    """(slices, flops) of GEMM-like kernels."""
    if kernel.type == "fc":
        m, k, n = fc_dims(kernel.attrs, kernel.input("Input").shape, kernel.input("W").shape)
        return 1.0, 2.0 * m * k * n
    out = kernel.output("Out").shape
    x = kernel.input("X").shape
    if kernel.type == "mul":
        k = math.prod(x[int(kernel.attrs.get("x_num_col_dims", 1) or 1) :])
        return 1.0, 2.0 * math.prod(out) * k
    trans = bool(kernel.attrs.get("trans_x", kernel.attrs.get("transpose_X", False)))
    k = x[-2] if trans and len(x) > 1 else x[-1]
    batch = math.prod(out[:-2]) if len(out) > 2 else 1
    return float(batch), 2.0 * math.prod(out) * k


def _conv(kernel: ShapedKernel) -> tuple[float, float]:
    out = kernel.output("Output").shape
    w = kernel.input("Filter").shape
    groups = int(kernel.attrs.get("groups", 1) or 1)
    return float(groups), 2.0 * math.prod(out) * w[1] * w[2] * w[3]


def _largest_output(kernel: ShapedKernel) -> int:
    return max((t.numel for ts in kernel.outputs.values() for t in ts), default=0)


def kernel_features(kernel: ShapedKernel) -> KernelFeatures:
    """The cost features of one kernel.

    Raises:
        ShapeInferenceError: The kernel lacks an input its family needs.
    """
    op = kernel.type
    slices, flops = 1.0, 0.0
    if op in ("fc", "mul", "matmul", "matmul_v2"):
        slices, flops = _gemm(kernel)
    elif op in ("conv2d", "depthwise_conv2d"):
        slices, flops = _conv(kernel)
    elif op in ("softmax", "log_softmax"):
        x = kernel.input("X")
        slices = float(x.numel // max(1, x.shape[-1])) if x.shape else 1.0
        flops = _FLOPS_PER_ELEMENT[op] * x.numel
    elif op == "layer_norm":
        y = kernel.output("Y")
        begin = int(kernel.attrs.get("begin_norm_axis", 1) or 1)
        slices = float(math.prod(y.shape[:begin]))
        flops = _FLOPS_PER_ELEMENT[op] * y.numel
    elif op.startswith("elementwise_") or op.startswith("fusion_elementwise_"):
        x, y = kernel.input("X"), kernel.input("Y")
        out = kernel.output("Out").numel
        smaller = max(1, min(x.numel, y.numel))
        # a row add per repetition of the smaller operand; a scalar add per run where it is constant along the
        # innermost axis (see kernel_variant)
        run = _inner_run(kernel) if x.shape != y.shape else 1
        slices = float(out // run) if run > 1 else float(out // smaller)
        flops = (2.0 if op.startswith("fusion_") else 1.0) * out
    elif op in ("lookup_table", "lookup_table_v2"):
        slices = float(kernel.input("Ids").numel)
    elif op in ("reduce_mean", "reduce_sum", "reduce_max", "mean", "pool2d"):
        flops = float(kernel.input("X").numel)
    elif op == "batch_norm":
        flops = float(_FLOPS_PER_ELEMENT[op] * kernel.input("X").numel)
    elif op in _FLOPS_PER_ELEMENT:
        flops = float(_FLOPS_PER_ELEMENT[op] * _largest_output(kernel))
    elif op in _DATA_MOVEMENT or op in ("arg_max", "prelu", "sqrt", "rsqrt", "abs", "square", "log",
                                        "silu", "mish", "softplus"):
        flops = float(_largest_output(kernel)) if op not in _DATA_MOVEMENT else 0.0
    else:
        raise ShapeInferenceError(f"no cost features for op type '{op}'")
    read, written, weights = _bytes(kernel)
    return KernelFeatures(cost_key(kernel), 1.0, slices, flops / 1e6, read / 1024.0, written / 1024.0, weights / 1024.0)


def shape_signature(kernel: ShapedKernel) -> tuple[float, ...] | None:
    """The shape of a kernel as a point for shape-factor tables (``log2`` of its defining dimensions).

    Only kernel families whose cost per feature unit depends strongly on the shape have one:
    GEMMs (``M, K, N``; batched ones ``B, M, K, N``), softmax and layer norm (``rows, width``). None otherwise.
    """
    op = kernel.type
    if op == "fc":
        m, k, n = fc_dims(kernel.attrs, kernel.input("Input").shape, kernel.input("W").shape)
        return _log2(m, k, n)
    if op in ("matmul", "matmul_v2"):
        out, x = kernel.output("Out").shape, kernel.input("X").shape
        if len(out) < 2 or len(x) < 2:
            return None
        trans = bool(kernel.attrs.get("trans_x", kernel.attrs.get("transpose_X", False)))
        k = x[-2] if trans else x[-1]
        batch = math.prod(out[:-2]) if len(out) > 2 else 1
        if kernel.input("Y").persistable:
            return _log2(batch * out[-2], k, out[-1])
        return _log2(batch, out[-2], k, out[-1])
    if op in ("softmax", "layer_norm"):
        shape = kernel.input("X").shape
        width = shape[-1] if op == "softmax" else math.prod(shape[int(kernel.attrs.get("begin_norm_axis", 1) or 1):])
        return _log2(max(1, math.prod(shape) // max(1, width)), width)
    return None


def _log2(*dims: int) -> tuple[float, ...]:
    return tuple(math.log2(max(1, d)) for d in dims)


def summed_features(kernels: Iterable[ShapedKernel]) -> dict[str, KernelFeatures]:
    """Features summed per cost key over ``kernels``."""
    totals: dict[str, list[float]] = {}
    for kernel in kernels:
        features = kernel_features(kernel)
        row = totals.setdefault(features.key, [0.0] * len(FEATURES))
        for i, value in enumerate(features.vector()):
            row[i] += value
    return {key: KernelFeatures(key, *row) for key, row in totals.items()}
