"""The digits data of the example: scikit-learn's bundled 8x8 handwritten digits, split three ways.

The 1,797 images ship with scikit-learn (no network). They are split, stratified by class and fixed by a
seed, into 1,200 training, 200 validation and 397 test images. Pixels are scaled from 0..16 to 0..1 and
then standardized with the mean and standard deviation of the training split only, so that nothing about
the validation or test images leaks into the inputs.

This module does not import Paddle: it only needs NumPy and scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

TEST_SIZE = 397
VAL_SIZE = 200
TRAIN_SIZE = 1200
IMAGE_SIZE = 8
NUM_CLASSES = 10
PIXEL_MAX = 16.0


class Split(NamedTuple):
    """One split of the data.

    Attributes:
        images: Float32 array of shape ``[N, 1, 8, 8]``, standardized with the training split's statistics.
        labels: Int64 array of shape ``[N]``, the digit 0-9 of each image.
    """

    images: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class DigitsSplits:
    """The training, validation and test splits, and the statistics used to standardize them.

    Attributes:
        train: Training split (1,200 images); the only one that training may learn from.
        val: Validation split (200 images); for monitoring and for choices during a search.
        test: Test split (397 images); for the final report only.
        pixel_mean: Mean of the training pixels after scaling to 0..1.
        pixel_std: Standard deviation of the training pixels after scaling to 0..1.
        seed: Seed that fixed the split.
    """

    train: Split
    val: Split
    test: Split
    pixel_mean: float
    pixel_std: float
    seed: int


def split_indices(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return disjoint, stratified train/val/test indices into ``load_digits()``, each sorted ascending.

    Args:
        labels: Class of every sample of the full data set.
        seed: Seed of the split.

    Returns:
        The train, val and test index arrays (1,200, 200 and 397 indices for the 1,797 digits).
    """
    from sklearn.model_selection import train_test_split

    all_indices = np.arange(len(labels))
    rest, test = train_test_split(
        all_indices, test_size=TEST_SIZE, stratify=labels, random_state=seed
    )
    train, val = train_test_split(
        rest, test_size=VAL_SIZE, stratify=labels[rest], random_state=seed
    )
    return np.sort(train), np.sort(val), np.sort(test)


def _make_split(
    scaled_images: np.ndarray, labels: np.ndarray, indices: np.ndarray, mean: float, std: float
) -> Split:
    """Select ``indices`` and standardize them into a :class:`Split`."""
    images = (scaled_images[indices] - mean) / std
    images = images.reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE).astype(np.float32)
    images.setflags(write=False)
    split_labels = labels[indices].astype(np.int64)
    split_labels.setflags(write=False)
    return Split(images=images, labels=split_labels)


def load_digits_splits(seed: int = 0) -> DigitsSplits:
    """Load scikit-learn's digits and split them, stratified and fixed by ``seed``.

    Args:
        seed: Seed of the split. The same seed gives the same splits in every run.

    Returns:
        The train (1,200), val (200) and test (397) splits, disjoint. Images are float32
        ``[N, 1, 8, 8]``, scaled by 1/16 then standardized with the training split's mean and std;
        labels are int64 ``[N]``. The arrays are read-only.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    scaled_images = np.asarray(bunch.data, dtype=np.float64) / PIXEL_MAX
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_idx, val_idx, test_idx = split_indices(labels, seed)
    mean = float(scaled_images[train_idx].mean())
    std = float(scaled_images[train_idx].std())
    return DigitsSplits(
        train=_make_split(scaled_images, labels, train_idx, mean, std),
        val=_make_split(scaled_images, labels, val_idx, mean, std),
        test=_make_split(scaled_images, labels, test_idx, mean, std),
        pixel_mean=mean,
        pixel_std=std,
        seed=seed,
    )
