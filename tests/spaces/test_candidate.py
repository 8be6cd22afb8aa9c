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
    # Keys name folders and link trials across studies: they must not change between releases.
    assert a.key() == "d3-h10-f288-fp32-ebd079a0"
    other = dataclasses.replace(a, heads=(4, 4, 2))  # same totals, different layout
    assert other.key() != a.key()
    assert dataclasses.replace(a, precision="int8").key() != a.key()


def test_candidate_is_frozen() -> None:
    candidate = Candidate((0,), (1,), (8,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        candidate.layers = (1,)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("layers", "heads", "ffn", "precision"),
    [
        ((), (), (), "fp32"),
        ((1, 0), (1, 1), (8, 8), "fp32"),
        ((0, 0), (1, 1), (8, 8), "fp32"),
        ((0,), (1, 1), (8,), "fp32"),
        ((0,), (0,), (8,), "fp32"),
        ((0,), (1,), (8,), "int4"),
    ],
)
def test_invalid_candidates_are_rejected(layers, heads, ffn, precision) -> None:
    with pytest.raises(ValueError):
        Candidate(layers, heads, ffn, precision)
