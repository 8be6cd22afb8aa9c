"""Generated models for calibration: single-kernel probes over many shapes, and whole encoder models.

A probe is a tiny Paddle model built around one kernel family (a linear layer, a batched matmul, a
softmax, a layer norm, an activation, an elementwise op, a transpose, a patch-embedding convolution, an
embedding lookup...). Probes are exported exactly like candidates (:func:`export_inference_model`), so
Paddle Lite sees the same op patterns and applies the same fusions; the predictor is then fitted on the
*optimized* kernel lists of the probes, never on the Paddle programs.

Whole models are plain ``paddle.nn.TransformerEncoder`` classifiers (ViT-style patch embedding, or
BERT-style token embedding) of a given width, depth, head count and FFN width, with random weights
(latency does not depend on the values).

Everything here is deterministic given the seed; Paddle is imported only when a model is built.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from devicefit.spaces._export import Artifact, export_inference_model
from devicefit.spaces._paddle import import_paddle

ProbeKind = Literal[
    "linear", "linear_relu", "matmul_qk", "matmul_av", "softmax", "layer_norm", "gelu", "relu", "tanh", "add", "mul",
    "scale", "mean", "transpose", "conv", "lookup", "slice", "concat", "zeros_like", "arange", "unsqueeze",
    "squeeze", "int8_linear", "bias_add",
]
PROBE_KINDS: tuple[ProbeKind, ...] = (
    "linear", "linear_relu", "matmul_qk", "matmul_av", "softmax", "layer_norm", "gelu", "relu", "tanh", "add", "mul",
    "scale", "mean", "transpose", "conv", "lookup", "slice", "concat", "zeros_like", "arange", "unsqueeze", "squeeze",
    "int8_linear", "bias_add",
)
#: Probe kinds of the small data-movement ops that candidates have and encoders of the sweep do not (a
#: ``zeros_like``, an ``arange``, an ``unsqueeze``/``squeeze``): without them a profile prices those kernels by
#: a stand-in op (``_predictor.STAND_IN_OPS``).
DATA_MOVEMENT_KINDS: tuple[ProbeKind, ...] = ("zeros_like", "arange", "unsqueeze", "squeeze")
#: Probe kinds exported as int8 programs (PaddleSlim's post-training quantization, as int8 candidates are):
#: a device with int8 kernels runs them with ``calib`` kernels (the float<->int8 conversions) around its int8
#: GEMMs. Only devices that list ``int8`` among their precisions are calibrated with them: Paddle Lite's x86
#: places turn an int8 program into fp32 kernels (no ``calib``, see ``spaces/_precision.py``).
INT8_KINDS: tuple[ProbeKind, ...] = ("int8_linear",)
#: Probe kinds that price a kernel which whole models only run right after another one: the bias add of a linear
#: layer that the target does not fuse (x86 runs ``matmul_v2`` then ``elementwise_add`` of a ``[N]`` weight). Every
#: linear probe and every encoder has exactly one bias add per GEMM, so without probes of their own the split of
#: the two costs rested on collinear data: the shipped host-x86 v3 prices a small ViT's bias add at 0.4 us, the
#: calibrations since at about 8 us. Timed alone, x86's broadcast add takes about 5 ns per element
#: (``bias_add-s16-d296``: 25 us), so the later split was the right one; now it is measured.
SEPARATING_KINDS: tuple[ProbeKind, ...] = ("bias_add",)
#: Calibration samples of an int8 probe's quantization (random normal inputs; latency does not depend on them).
INT8_PROBE_SAMPLES = 4


@dataclasses.dataclass(frozen=True)
class ProbeSpec:
    """One generated single-kernel model.

    Attributes:
        kind: The kernel family.
        dims: The family's dimensions, by name (documented on :func:`probe_input_shapes`).
    """

    kind: ProbeKind
    dims: tuple[tuple[str, int], ...]

    def dim(self, name: str) -> int:
        """One named dimension."""
        return dict(self.dims)[name]

    @property
    def name(self) -> str:
        """File-name-safe id, e.g. ``linear-m17-k64-n128``."""
        return self.kind + "".join(f"-{key}{value}" for key, value in self.dims)


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """A whole Transformer encoder classifier (random weights).

    Attributes:
        family: ``vit`` (patch embedding of an image, class token) or ``bert`` (token embedding of ids).
        hidden: Model width.
        layers: Encoder layers.
        heads: Attention heads (must divide ``hidden``).
        ffn: FFN width.
        tokens: Sequence length (for ``vit``: patches + 1, from ``image`` and ``patch``).
        image: Image side in pixels (``vit``).
        patch: Patch side in pixels (``vit``).
        vocab: Vocabulary size (``bert``).
        activation: FFN activation, ``gelu`` or ``relu``.
        pre_norm: Pre-LayerNorm layers (``normalize_before``).
        classes: Output classes.
    """

    family: Literal["vit", "bert"]
    hidden: int
    layers: int
    heads: int
    ffn: int
    image: int = 8
    patch: int = 2
    tokens: int = 0
    vocab: int = 1000
    activation: Literal["gelu", "relu"] = "gelu"
    pre_norm: bool = True
    classes: int = 10

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.family == "vit" and self.image % self.patch:
            raise ValueError(f"image {self.image} is not a multiple of patch {self.patch}")
        if self.family == "bert" and self.tokens < 1:
            raise ValueError("a bert encoder needs tokens >= 1")

    @property
    def name(self) -> str:
        """File-name-safe id."""
        seq = f"i{self.image}p{self.patch}" if self.family == "vit" else f"t{self.tokens}"
        norm = "pre" if self.pre_norm else "post"
        return f"{self.family}-d{self.hidden}-l{self.layers}-h{self.heads}-f{self.ffn}-{seq}-{self.activation}-{norm}"


# --------------------------------------------------------------------------------------------------
# input shapes and sample inputs


def probe_input_shapes(spec: ProbeSpec) -> list[tuple[tuple[int, ...], str]]:
    """``(shape, dtype)`` of each input of a probe (batch of one).

    Dimensions by kind: ``linear``/``linear_relu``/``int8_linear`` m (rows), k (in), n (out);
    ``matmul_qk``/``matmul_av`` h (heads), s (tokens), d (head width); ``softmax`` h, s;
    ``layer_norm``/``gelu``/``relu``/``tanh``/``add``/``bias_add``/``scale``/``slice``/``concat``/``zeros_like``/
    ``unsqueeze``/``squeeze`` s, d (``bias_add``: a ``[d]`` weight added to every row); ``transpose`` s, h, d
    (the attention head split); ``conv`` c (in channels), o (out channels), k (kernel = stride), i (image side);
    ``lookup`` s (ids), v (vocabulary), d (width); ``arange`` s (ids: the length of the position range).
    """
    kind = spec.kind
    dim = spec.dim
    if kind in ("linear", "linear_relu", "int8_linear"):
        return [((1, dim("m"), dim("k")), "float32")]
    if kind == "matmul_qk":
        return [((1, dim("h"), dim("s"), dim("d")), "float32")] * 2
    if kind == "matmul_av":
        return [((1, dim("h"), dim("s"), dim("s")), "float32"), ((1, dim("h"), dim("s"), dim("d")), "float32")]
    if kind == "softmax":
        return [((1, dim("h"), dim("s"), dim("s")), "float32")]
    if kind in ("layer_norm", "gelu", "relu", "tanh", "scale", "mean", "slice", "concat", "zeros_like", "unsqueeze",
                "bias_add"):
        return [((1, dim("s"), dim("d")), "float32")]
    if kind == "squeeze":
        return [((1, dim("s"), 1, dim("d")), "float32")]
    if kind == "arange":
        return [((1, dim("s")), "int64")]
    if kind in ("add", "mul"):
        return [((1, dim("s"), dim("d")), "float32")] * 2
    if kind == "transpose":
        return [((1, dim("s"), dim("h") * dim("d")), "float32")]
    if kind == "conv":
        return [((1, dim("c"), dim("i"), dim("i")), "float32")]
    if kind == "lookup":
        return [((1, dim("s")), "int64")]
    raise ValueError(f"unknown probe kind {kind!r}")


def encoder_input_shapes(spec: EncoderSpec) -> list[tuple[tuple[int, ...], str]]:
    """``(shape, dtype)`` of the encoder's input (batch of one)."""
    if spec.family == "vit":
        return [((1, 1, spec.image, spec.image), "float32")]
    return [((1, spec.tokens), "int64")]


def write_sample_inputs(
    shapes: Sequence[tuple[tuple[int, ...], str]], directory: Path, rng: np.random.Generator, *, id_high: int = 2
) -> list[Path]:
    """Write one ``.npy`` per input: standard normal floats, or integer ids in ``[0, id_high)``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (shape, dtype) in enumerate(shapes):
        if dtype.startswith("int"):
            array = rng.integers(0, id_high, size=shape).astype(dtype)
        else:
            array = rng.standard_normal(shape).astype(dtype)
        path = directory / f"input_{index}.npy"
        np.save(path, array)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------------
# models (Paddle is imported when they are built; the layers are in _probe_models)


def export_probe(spec: ProbeSpec, directory: Path, seed: int) -> Artifact:
    """Build ``spec`` with weights from ``seed`` and export it to ``directory``."""
    paddle = import_paddle()
    from devicefit.device_profiles._probe_models import ProbeModel

    paddle.seed(seed)
    layer = ProbeModel(spec.kind, dict(spec.dims))
    layer.eval()
    specs = [paddle.static.InputSpec(list(shape), dtype) for shape, dtype in probe_input_shapes(spec)]
    if spec.kind not in INT8_KINDS:
        return export_inference_model(layer, specs, directory)
    from devicefit.spaces._precision import FP32_DIR, quantize_post_static

    fp32 = export_inference_model(layer, specs, directory / FP32_DIR)
    rng = np.random.default_rng(seed)
    samples = tuple(
        rng.standard_normal((INT8_PROBE_SAMPLES, *shape[1:])).astype(dtype) for shape, dtype in probe_input_shapes(spec)
    )
    return quantize_post_static(fp32, directory, samples, algo="abs_max", batch_size=1)


def export_encoder(spec: EncoderSpec, directory: Path, seed: int) -> Artifact:
    """Build the encoder classifier ``spec`` with weights from ``seed`` and export it to ``directory``."""
    paddle = import_paddle()
    from devicefit.device_profiles._probe_models import EncoderClassifier

    paddle.seed(seed)
    layer = EncoderClassifier(spec)
    layer.eval()
    (shape, dtype), = encoder_input_shapes(spec)
    return export_inference_model(layer, [paddle.static.InputSpec([None, *shape[1:]], dtype)], directory)


# --------------------------------------------------------------------------------------------------
# sweeps


def _log_choice(rng: np.random.Generator, low: int, high: int, *, multiple: int = 1) -> int:
    value = math.exp(rng.uniform(math.log(low), math.log(high)))
    return max(multiple, int(round(value / multiple)) * multiple)


def probe_sweep(rng: np.random.Generator, per_kind: int, kinds: Sequence[ProbeKind] = PROBE_KINDS) -> list[ProbeSpec]:
    """``per_kind`` probes of each kind, with shapes drawn log-uniformly over the ranges encoders use.

    Ranges: tokens 1..256, widths 8..1024, heads 1..16, head width 8..128, FFN up to 4096.
    """
    specs: dict[str, ProbeSpec] = {}
    tries = 0
    for kind in kinds:
        made = 0
        while made < per_kind and tries < 100 * per_kind * len(kinds):
            tries += 1
            s = _log_choice(rng, 1, 256)
            d = _log_choice(rng, 8, 1024, multiple=8)
            h = int(rng.choice([1, 2, 3, 4, 6, 8, 12, 16]))
            hd = _log_choice(rng, 8, 128, multiple=8)
            dims: dict[str, int]
            if kind in ("linear", "linear_relu", "int8_linear"):
                dims = {"m": s, "k": d, "n": _log_choice(rng, 8, 4096, multiple=8)}
            elif kind in ("matmul_qk", "matmul_av", "transpose"):
                dims = {"s": s, "h": h, "d": hd} if kind == "transpose" else {"h": h, "s": s, "d": hd}
            elif kind == "softmax":
                dims = {"h": h, "s": s}
            elif kind == "conv":
                k = int(rng.choice([1, 2, 4, 8]))
                dims = {"c": int(rng.choice([1, 3])), "o": d, "k": k, "i": k * _log_choice(rng, 2, 16)}
            elif kind == "lookup":
                dims = {"s": s, "v": _log_choice(rng, 16, 30000), "d": d}
            elif kind == "arange":
                dims = {"s": _log_choice(rng, 1, 1024)}
            else:
                dims = {"s": max(2, s) if kind == "slice" else s, "d": d * (4 if kind in ("gelu", "relu") else 1)}
            spec = ProbeSpec(kind, tuple(dims.items()))
            if _probe_elements(spec) > 8_000_000 or spec.name in specs:
                continue
            specs[spec.name] = spec
            made += 1
    return list(specs.values())


def _probe_elements(spec: ProbeSpec) -> int:
    """Largest tensor of a probe in elements (keeps every probe small enough to time quickly)."""
    sizes = [math.prod(shape) for shape, _ in probe_input_shapes(spec)]
    dims = dict(spec.dims)
    if spec.kind in ("linear", "linear_relu", "int8_linear"):
        sizes += [dims["k"] * dims["n"], dims["m"] * dims["n"]]
    if spec.kind == "lookup":
        sizes.append(dims["v"] * dims["d"])
    if spec.kind == "conv":
        sizes.append(dims["o"] * (dims["i"] // dims["k"]) ** 2)
    return max(sizes)


#: Rows (tokens) and widths of the GEMM grid: the sequence lengths and layer widths encoders use.
GEMM_ROWS = (1, 4, 8, 12, 17, 24, 32, 50, 64, 96, 128, 197, 256)
GEMM_WIDTHS = (16, 24, 32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 512, 768, 1024, 1536, 2048, 3072)
#: Largest GEMM of the grid, in multiply-adds (keeps a probe's run under ~10 ms on a slow core).
MAX_GEMM_MACS = 60_000_000


def gemm_sweep(rng: np.random.Generator, count: int) -> list[ProbeSpec]:
    """``count`` distinct ``linear`` probes on the grid :data:`GEMM_ROWS` x :data:`GEMM_WIDTHS` squared.

    GEMMs dominate a Transformer's latency and their cost per operation depends on their shape, so they get
    a denser sweep than the other kernels (their shape factors come from it).
    """
    specs: dict[str, ProbeSpec] = {}
    tries = 0
    while len(specs) < count and tries < 100 * count:
        tries += 1
        m = int(rng.choice(GEMM_ROWS))
        k, n = (int(v) for v in rng.choice(GEMM_WIDTHS, size=2))
        if m * k * n > MAX_GEMM_MACS:
            continue
        spec = ProbeSpec("linear", (("m", m), ("k", k), ("n", n)))
        specs.setdefault(spec.name, spec)
    return list(specs.values())


def encoder_sweep(
    rng: np.random.Generator,
    count: int,
    *,
    families: Sequence[str] = ("vit", "bert"),
    hidden: Sequence[int] = (32, 64, 96, 128, 192, 256),
    max_layers: int = 6,
    tokens: Sequence[int] = (8, 16, 32, 64, 128),
    grids: Sequence[int] = (2, 4, 6, 8),
) -> list[EncoderSpec]:
    """``count`` distinct encoders of the given families and widths (heads, FFN, depth, length drawn).

    Args:
        rng: Source of every choice.
        count: Encoders wanted (fewer if the choices allow fewer distinct ones).
        families: ``vit`` and/or ``bert``.
        hidden: Widths to draw from.
        max_layers: Deepest encoder.
        tokens: Sequence lengths of ``bert`` encoders.
        grids: Patches per image side of ``vit`` encoders (tokens = grid squared + 1).
    """
    specs: dict[str, EncoderSpec] = {}
    tries = 0
    while len(specs) < count and tries < 100 * count:
        tries += 1
        width = int(rng.choice(list(hidden)))
        heads = int(rng.choice([h for h in (1, 2, 4, 8) if width % h == 0]))
        family = str(rng.choice(list(families)))
        common = dict(
            hidden=width, layers=int(rng.integers(1, max_layers + 1)), heads=heads,
            ffn=int(rng.choice([width, 2 * width, 4 * width])),
            activation=str(rng.choice(["gelu", "relu"])), pre_norm=bool(rng.integers(0, 2)),
        )
        if family == "vit":
            patch = int(rng.choice([1, 2, 4]))
            spec = EncoderSpec("vit", image=patch * int(rng.choice(list(grids))), patch=patch, **common)  # type: ignore[arg-type]
        else:
            spec = EncoderSpec("bert", tokens=int(rng.choice(list(tokens))), vocab=1000, **common)  # type: ignore[arg-type]
        specs.setdefault(spec.name, spec)
    return list(specs.values())
