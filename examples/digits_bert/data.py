"""The digits as token sequences: scikit-learn's bundled 8x8 digits, one token per pixel intensity.

Each 8x8 image becomes a sequence of 65 token ids: ``[CLS]`` followed by its 64 pixels in row-major order,
each pixel's intensity (an integer 0..16 in the data set) mapped to its own token. Nothing about the image
layout is given to the model except the position of each token, so the task is a genuine sequence
classification task for a BERT-style encoder (it must learn the 2-D structure from position embeddings).

The split is the digits-vit example's (same indices for the same seed: 1,200 train, 200 validation, 397
test), so the two examples are comparable. The data ships with scikit-learn: no network is used.

This module does not import Paddle: it only needs NumPy and scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from devicefit.examples.digits_vit.data import split_indices

NUM_CLASSES = 10
#: Intensities in scikit-learn's digits are whole numbers 0..16.
MAX_INTENSITY = 16
PAD_TOKEN = 0
CLS_TOKEN = 1
#: Token id of intensity 0; intensity ``v`` is token ``FIRST_INTENSITY_TOKEN + v``.
FIRST_INTENSITY_TOKEN = 2
VOCAB_SIZE = FIRST_INTENSITY_TOKEN + MAX_INTENSITY + 1
NUM_PIXELS = 64
SEQUENCE_LENGTH = NUM_PIXELS + 1


class TokenSplit(NamedTuple):
    """One split of the token data.

    Attributes:
        input_ids: Int64 array ``[N, 65]``: ``[CLS]`` then one intensity token per pixel.
        labels: Int64 array ``[N]``, the digit 0-9.
    """

    input_ids: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class DigitTokenSplits:
    """The training, validation and test splits of the token task.

    Attributes:
        train: 1,200 sequences; the only split training learns from.
        val: 200 sequences; for monitoring and for choices during a search.
        test: 397 sequences; for the final report only.
        seed: Seed of the split (the digits-vit split of the same seed).
    """

    train: TokenSplit
    val: TokenSplit
    test: TokenSplit
    seed: int


def pixels_to_tokens(pixels: np.ndarray) -> np.ndarray:
    """Map ``[N, 64]`` integer intensities 0..16 to ``[N, 65]`` token ids, ``[CLS]`` first.

    Raises:
        ValueError: A pixel is not a whole number in 0..16.
    """
    values = np.asarray(pixels)
    as_int = np.rint(values).astype(np.int64)
    if values.ndim != 2 or values.shape[1] != NUM_PIXELS:
        raise ValueError(f"expected [N, {NUM_PIXELS}] pixels, got shape {values.shape}")
    if not np.array_equal(as_int, values) or as_int.min() < 0 or as_int.max() > MAX_INTENSITY:
        raise ValueError(f"pixel intensities must be whole numbers 0..{MAX_INTENSITY}")
    tokens = np.empty((len(as_int), SEQUENCE_LENGTH), dtype=np.int64)
    tokens[:, 0] = CLS_TOKEN
    tokens[:, 1:] = FIRST_INTENSITY_TOKEN + as_int
    return tokens


def _split(tokens: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> TokenSplit:
    input_ids = np.ascontiguousarray(tokens[indices])
    split_labels = labels[indices].astype(np.int64)
    input_ids.setflags(write=False)
    split_labels.setflags(write=False)
    return TokenSplit(input_ids, split_labels)


def load_digit_token_splits(seed: int = 0) -> DigitTokenSplits:
    """Load scikit-learn's digits as token sequences, split like the digits-vit example for ``seed``.

    Returns:
        Train (1,200), val (200) and test (397) splits, disjoint and read-only.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    labels = np.asarray(bunch.target, dtype=np.int64)
    tokens = pixels_to_tokens(bunch.data)
    train_idx, val_idx, test_idx = split_indices(labels, seed)
    return DigitTokenSplits(
        train=_split(tokens, labels, train_idx),
        val=_split(tokens, labels, val_idx),
        test=_split(tokens, labels, test_idx),
        seed=seed,
    )
