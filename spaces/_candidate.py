"""The Candidate: one point of the search space, frozen, hashable, printable, with a stable key."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Literal

Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "int8")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A compressed version of a teacher Transformer, described without reference to any weights.

    Attributes:
        layers: Indices of the teacher's encoder layers that are kept, ascending. Their number is the depth.
        heads: Attention heads kept in each kept layer (one entry per entry of ``layers``).
        ffn: FFN intermediate width kept in each kept layer (one entry per entry of ``layers``).
        precision: Numeric precision of the deployed model.
    """

    layers: tuple[int, ...]
    heads: tuple[int, ...]
    ffn: tuple[int, ...]
    precision: Precision = "fp32"

    def __post_init__(self) -> None:
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
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def depth(self) -> int:
        """Number of encoder layers kept."""
        return len(self.layers)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (lists, not tuples)."""
        return {
            "layers": list(self.layers),
            "heads": list(self.heads),
            "ffn": list(self.ffn),
            "precision": self.precision,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        """Inverse of :meth:`to_dict`."""
        return cls(
            layers=tuple(int(i) for i in data["layers"]),
            heads=tuple(int(h) for h in data["heads"]),
            ffn=tuple(int(f) for f in data["ffn"]),
            precision=data.get("precision", "fp32"),
        )

    def key(self) -> str:
        """A stable, file-name-safe identifier: a readable summary plus a content hash.

        Example: ``d3-h10-f288-fp32-5c1e0a9b`` (3 layers, 10 heads and 288 FFN units in all, fp32).
        Two candidates have the same key exactly when they are equal.
        """
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:8]
        return f"d{self.depth}-h{sum(self.heads)}-f{sum(self.ffn)}-{self.precision}-{digest}"

    def describe(self) -> str:
        """One-line human description, e.g. ``layers 0,1,3 heads 4/3/3 ffn 128/96/64 fp32``."""
        layers = ",".join(str(i) for i in self.layers)
        heads = "/".join(str(h) for h in self.heads)
        ffn = "/".join(str(f) for f in self.ffn)
        return f"layers {layers} heads {heads} ffn {ffn} {self.precision}"
