"""The Candidate: one point of the search space, frozen, hashable, printable, with a stable key."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Literal

Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8")

#: Calibration algorithms of PaddleSlim's post-training quantization (``quant_post_static(algo=...)``).
Calibration = Literal["abs_max", "avg", "hist", "KL", "mse"]
CALIBRATIONS: tuple[Calibration, ...] = ("abs_max", "avg", "hist", "KL", "mse")

#: Weight-only quantization widths that Paddle Lite's converter offers (``QUANT_INT8`` / ``QUANT_INT16``).
WeightOnlyBits = Literal[8, 16]
WEIGHT_ONLY_BITS: tuple[WeightOnlyBits, ...] = (8, 16)

#: Fields added after the first release. :meth:`Candidate.to_dict` leaves them out while they hold their
#: default, so a candidate that does not use them keeps the key it had before they existed.
_OPTIONAL_DEFAULTS: dict[str, Any] = {
    "hidden": None,
    "sparsity": 0.0,
    "calibration": None,
    "fp32_layers": (),
    "weight_only_bits": None,
    "program": False,
}


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A compressed version of a teacher Transformer, described without reference to any weights.

    Attributes:
        layers: Indices of the teacher's encoder layers that are kept, ascending. Their number is the depth.
        heads: Attention heads kept in each kept layer (one entry per entry of ``layers``).
        ffn: FFN intermediate width kept in each kept layer (one entry per entry of ``layers``).
        precision: Numeric precision of the deployed model's kernels: ``fp32``; ``fp16`` (Paddle Lite's fp16
            conversion); ``int8`` (post-training static quantization of the linear layers).
        hidden: Hidden size (model width) kept, or ``None`` for the teacher's.
        sparsity: Fraction of the weights of the kept layers' linear projections set to zero by unstructured
            magnitude pruning, in ``[0, 1)``. Zeros do not change the dense ``.nb`` Paddle Lite runs; they
            shrink the compressed model.
        calibration: The calibration algorithm of an ``int8`` candidate (``None`` for other precisions).
        fp32_layers: Kept layers (teacher indices, a subset of ``layers``) whose linear layers stay fp32 in
            an ``int8`` candidate: mixed precision per block. Empty for other precisions.
        weight_only_bits: Weight-only quantization of an ``fp32`` candidate (8 or 16 bits): the ``.nb``
            stores the linear and convolution weights as integers and Paddle Lite dequantizes them when it
            loads the model, so it runs fp32 kernels. ``None`` for none.
        program: The candidate is the teacher's own inference program, searched without its code
            (``--model model.pdmodel``): its structure is the teacher's and unknown to devicefit, so
            ``layers``, ``heads`` and ``ffn`` are empty, ``hidden`` is ``None``, and only precision,
            calibration, weight-only bits and sparsity (of the program's matmul weights) apply.
    """

    layers: tuple[int, ...]
    heads: tuple[int, ...]
    ffn: tuple[int, ...]
    precision: Precision = "fp32"
    hidden: int | None = None
    sparsity: float = 0.0
    calibration: Calibration | None = None
    fp32_layers: tuple[int, ...] = ()
    weight_only_bits: WeightOnlyBits | None = None
    program: bool = False

    def __post_init__(self) -> None:
        if self.program:
            if self.layers or self.heads or self.ffn or self.hidden is not None or self.fp32_layers:
                raise ValueError(
                    "a program candidate keeps the teacher's structure: no layers, heads, ffn, hidden or fp32_layers"
                )
            self._check_numerics()
            return
        if not self.layers:
            raise ValueError("a candidate keeps at least one encoder layer")
        if list(self.layers) != sorted(set(self.layers)) or self.layers[0] < 0:
            raise ValueError(f"layers must be distinct, ascending and non-negative, got {self.layers}")
        if not len(self.heads) == len(self.ffn) == len(self.layers):
            raise ValueError(
                f"heads and ffn need one entry per kept layer ({len(self.layers)}), "
                f"got {len(self.heads)} and {len(self.ffn)}"
            )
        if min(self.heads) < 1 or min(self.ffn) < 1:
            raise ValueError(f"every kept layer keeps at least one head and one FFN unit: {self}")
        if self.hidden is not None and self.hidden < 1:
            raise ValueError(f"hidden must be a positive width or None, got {self.hidden}")
        self._check_numerics()
        if self.fp32_layers:
            if self.precision != "int8":
                raise ValueError("fp32_layers (mixed precision) only applies to int8 candidates")
            if list(self.fp32_layers) != sorted(set(self.fp32_layers)) or not set(self.fp32_layers) < set(self.layers):
                raise ValueError(
                    f"fp32_layers must be distinct, ascending kept layers, fewer than all of them: {self.fp32_layers}"
                )

    def _check_numerics(self) -> None:
        """Checks of the fields a program candidate shares with a cut one: precision, sparsity, quantization."""
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if (self.precision == "int8") != (self.calibration is not None):
            raise ValueError(
                f"an int8 candidate names its calibration algorithm and no other does "
                f"(precision {self.precision}, calibration {self.calibration!r})"
            )
        if self.calibration is not None and self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        if self.weight_only_bits is not None:
            if self.weight_only_bits not in WEIGHT_ONLY_BITS:
                raise ValueError(f"weight_only_bits must be one of {WEIGHT_ONLY_BITS}, got {self.weight_only_bits}")
            if self.precision != "fp32":
                raise ValueError("weight-only quantization applies to fp32 candidates only")

    @property
    def depth(self) -> int:
        """Number of encoder layers kept (0 for a program candidate, whose structure devicefit does not know)."""
        return len(self.layers)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (lists, not tuples). Fields added later appear only when not at their default."""
        data: dict[str, Any] = {
            "layers": list(self.layers),
            "heads": list(self.heads),
            "ffn": list(self.ffn),
            "precision": self.precision,
        }
        for name, default in _OPTIONAL_DEFAULTS.items():
            value = getattr(self, name)
            if value != default:
                data[name] = list(value) if isinstance(value, tuple) else value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        """Inverse of :meth:`to_dict`; a missing field takes its default (records of older versions load)."""
        hidden = data.get("hidden")
        bits = data.get("weight_only_bits")
        return cls(
            layers=tuple(int(i) for i in data["layers"]),
            heads=tuple(int(h) for h in data["heads"]),
            ffn=tuple(int(f) for f in data["ffn"]),
            precision=data.get("precision", "fp32"),
            hidden=None if hidden is None else int(hidden),
            sparsity=float(data.get("sparsity", 0.0)),
            calibration=data.get("calibration"),
            fp32_layers=tuple(int(i) for i in data.get("fp32_layers", ())),
            weight_only_bits=None if bits is None else int(bits),  # type: ignore[arg-type]
            program=bool(data.get("program", False)),
        )

    def key(self) -> str:
        """A stable, file-name-safe identifier: a readable summary plus a content hash.

        Example: ``d3-h10-f288-fp32-5c1e0a9b`` (3 layers, 10 heads and 288 FFN units in all, fp32);
        ``d2-h8-f256-w48-s50-int8-…`` adds hidden size 48 and 50% sparsity; a program candidate starts with
        ``prog`` instead of its structure (``prog-s50-int8-…``). Two candidates have the same key exactly when
        they are equal; a candidate that uses none of the later fields keeps its old key.
        """
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:8]
        parts = ["prog"] if self.program else [f"d{self.depth}", f"h{sum(self.heads)}", f"f{sum(self.ffn)}"]
        if self.hidden is not None:
            parts.append(f"w{self.hidden}")
        if self.sparsity:
            parts.append(f"s{round(self.sparsity * 100)}")
        parts.append(self.precision)
        if self.weight_only_bits is not None:
            parts.append(f"wo{self.weight_only_bits}")
        return "-".join(parts) + f"-{digest}"

    def describe(self) -> str:
        """One-line human description, e.g. ``layers 0,1,3 heads 4/3/3 ffn 128/96/64 fp32``."""
        layers = ",".join(str(i) for i in self.layers)
        heads = "/".join(str(h) for h in self.heads)
        ffn = "/".join(str(f) for f in self.ffn)
        text = "the whole program" if self.program else f"layers {layers} heads {heads} ffn {ffn}"
        if self.hidden is not None:
            text += f" hidden {self.hidden}"
        if self.sparsity:
            text += f" sparsity {self.sparsity:.2f}"
        text += f" {self.precision}"
        if self.calibration is not None:
            text += f" ({self.calibration} calibration"
            if self.fp32_layers:
                text += f", layers {','.join(str(i) for i in self.fp32_layers)} in fp32"
            text += ")"
        if self.weight_only_bits is not None:
            text += f" weight-only int{self.weight_only_bits}"
        return text
