from __future__ import annotations

import dataclasses

import pytest

from devicefit.spaces import Candidate


def test_key_is_stable_readable_and_distinguishes_candidates() -> None:
    a = Candidate((0, 1, 3), (4, 3, 3), (128, 96, 64))
    same = Candidate.from_dict(a.to_dict())
    assert a == same and hash(a) == hash(same)
    assert a.key() == same.key()
    assert a.key().startswith("d3-h10-f288-fp32-")
    # Keys name folders and link trials across studies: they must not change between releases. The fields
    # added for hidden width, sparsity and bit-width are left out of the key while at their defaults, so this
    # candidate keeps the key it had before they existed (deliberately: older studies resume and dedupe).
    assert a.key() == "d3-h10-f288-fp32-ebd079a0"
    other = dataclasses.replace(a, heads=(4, 4, 2))  # same totals, different layout
    assert other.key() != a.key()
    assert dataclasses.replace(a, precision="int8", calibration="avg").key() != a.key()


def test_keys_of_the_new_dimensions_are_pinned_and_distinct() -> None:
    base = Candidate((0, 2), (2, 4), (64, 128))
    variants = [
        dataclasses.replace(base, hidden=48),
        dataclasses.replace(base, sparsity=0.5),
        dataclasses.replace(base, precision="int8", calibration="avg"),
        dataclasses.replace(base, precision="int8", calibration="KL"),
        dataclasses.replace(base, precision="int8", calibration="avg", fp32_layers=(2,)),
        dataclasses.replace(base, precision="fp16"),
        dataclasses.replace(base, weight_only_bits=8),
        dataclasses.replace(base, weight_only_bits=16),
    ]
    keys = [c.key() for c in [base, *variants]]
    assert len(set(keys)) == len(keys)
    mixed = Candidate((0, 2), (2, 4), (64, 128), "int8", hidden=48, sparsity=0.5, calibration="hist", fp32_layers=(0,))
    assert mixed.key() == "d2-h6-f192-w48-s50-int8-b73d934e"
    assert Candidate.from_dict(mixed.to_dict()) == mixed
    assert "hidden 48 sparsity 0.50 int8 (hist calibration, layers 0 in fp32)" in mixed.describe()


def test_records_of_the_first_version_still_load() -> None:
    old = {"layers": [0, 1], "heads": [4, 4], "ffn": [64, 64], "precision": "fp32"}
    candidate = Candidate.from_dict(old)
    assert (candidate.hidden, candidate.sparsity, candidate.calibration, candidate.weight_only_bits) == (None, 0.0, None, None)
    assert candidate.to_dict() == old


def test_candidate_is_frozen() -> None:
    candidate = Candidate((0,), (1,), (8,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        candidate.layers = (1,)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("layers", "heads", "ffn", "precision", "extra"),
    [
        ((), (), (), "fp32", {}),
        ((1, 0), (1, 1), (8, 8), "fp32", {}),
        ((0, 0), (1, 1), (8, 8), "fp32", {}),
        ((0,), (1, 1), (8,), "fp32", {}),
        ((0,), (0,), (8,), "fp32", {}),
        ((0,), (1,), (8,), "int4", {}),
        ((0,), (1,), (8,), "int8", {}),  # int8 names its calibration
        ((0,), (1,), (8,), "fp32", {"calibration": "avg"}),  # and nothing else does
        ((0,), (1,), (8,), "int8", {"calibration": "minmax"}),
        ((0, 1), (1, 1), (8, 8), "int8", {"calibration": "avg", "fp32_layers": (0, 1)}),  # not every layer
        ((0, 1), (1, 1), (8, 8), "int8", {"calibration": "avg", "fp32_layers": (2,)}),  # a kept layer
        ((0,), (1,), (8,), "fp32", {"fp32_layers": (0,)}),
        ((0,), (1,), (8,), "fp32", {"sparsity": 1.0}),
        ((0,), (1,), (8,), "fp32", {"sparsity": -0.1}),
        ((0,), (1,), (8,), "fp32", {"hidden": 0}),
        ((0,), (1,), (8,), "fp32", {"weight_only_bits": 4}),
        ((0,), (1,), (8,), "fp16", {"weight_only_bits": 8}),
    ],
)
def test_invalid_candidates_are_rejected(layers, heads, ffn, precision, extra) -> None:
    with pytest.raises(ValueError):
        Candidate(layers, heads, ffn, precision, **extra)
