"""Splits are disjoint, stratified and reproducible; arrays, datasets, NPZ and CSV files all load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from devicefit.evaluators import DataError
from devicefit.evaluators._sources import (
    from_dataset,
    load_task_data,
    split_arrays,
    stratified_split_indices,
)


def _labels(n: int = 300, classes: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, size=n)


def test_splits_are_disjoint_and_cover_every_sample() -> None:
    labels = _labels()
    train, val, test = stratified_split_indices(labels, val_fraction=0.15, test_fraction=0.2, seed=3)
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(labels)))
    assert (len(val), len(test)) == (45, 60)


def test_splits_are_reproducible_and_depend_on_the_seed() -> None:
    labels = _labels()
    first = stratified_split_indices(labels, val_fraction=0.15, test_fraction=0.2, seed=7)
    again = stratified_split_indices(labels, val_fraction=0.15, test_fraction=0.2, seed=7)
    other = stratified_split_indices(labels, val_fraction=0.15, test_fraction=0.2, seed=8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[2], other[2])


def test_splits_keep_the_class_proportions() -> None:
    labels = np.repeat([0, 1, 2], [200, 100, 20])
    _, val, test = stratified_split_indices(labels, val_fraction=0.25, test_fraction=0.25, seed=0)
    for split in (val, test):
        counts = np.bincount(labels[split], minlength=3)
        np.testing.assert_allclose(counts, [50, 25, 5], atol=1)


def test_too_few_samples_for_a_split_is_an_error() -> None:
    with pytest.raises(DataError, match="the val split would be empty: 3 samples"):
        stratified_split_indices(np.array([0, 1, 1]), val_fraction=0.1, test_fraction=0.4, seed=0)
    with pytest.raises(DataError, match="val_fraction"):
        stratified_split_indices(_labels(), val_fraction=0.5, test_fraction=0.5, seed=0)


def test_split_arrays_keeps_inputs_and_labels_together() -> None:
    features = np.arange(300, dtype="float32").reshape(300, 1)
    mask = np.arange(300, dtype="int64")
    labels = _labels()
    data = split_arrays([features, mask], labels, seed=1)
    for split in (data.train, data.val, data.test):
        rows = split.inputs[0][:, 0].astype(int)
        np.testing.assert_array_equal(split.inputs[1], rows)
        np.testing.assert_array_equal(split.labels, labels[rows])
    assert data.num_classes == 4


def test_split_arrays_names_the_array_with_the_wrong_length() -> None:
    with pytest.raises(DataError, match=r"inputs\[1\] has 299 samples but labels has 300"):
        split_arrays([np.zeros((300, 2)), np.zeros((299, 2))], _labels())
    with pytest.raises(DataError, match="labels must hold integer class ids, got dtype float64"):
        split_arrays(np.zeros((300, 2)), _labels() + 0.5)
    with pytest.raises(DataError, match=r"(train|val|test) labels must be in \[0, 3\), found 0..3"):
        split_arrays(np.zeros((300, 2)), _labels(), num_classes=3)


def test_from_a_paddle_dataset(paddle) -> None:
    class Points(paddle.io.Dataset):
        def __init__(self) -> None:
            super().__init__()
            self.labels = _labels(120)

        def __len__(self) -> int:
            return len(self.labels)

        def __getitem__(self, index: int):
            return np.full((2, 3), index, dtype="float32"), np.array([self.labels[index]])

    dataset = Points()
    data = from_dataset(dataset, seed=0)
    assert len(data.train) + len(data.val) + len(data.test) == 120
    assert data.val.inputs[0].shape[1:] == (2, 3) and data.val.labels.dtype == np.int64
    index = int(data.test.inputs[0][0, 0, 0])
    assert data.test.labels[0] == dataset.labels[index]


def test_an_iterable_dataset_needs_a_bound(paddle) -> None:
    class Stream(paddle.io.IterableDataset):
        def __iter__(self):
            index = 0
            while True:  # endless on purpose: the reader must bound it
                yield np.zeros(2, dtype="float32"), index % 3
                index += 1

    with pytest.raises(DataError, match="pass max_samples"):
        from_dataset(Stream())
    data = from_dataset(Stream(), max_samples=60)
    assert len(data.train) + len(data.val) + len(data.test) == 60


def test_npz_unsplit_and_presplit(tmp_path: Path) -> None:
    labels = _labels(100)
    np.savez(tmp_path / "whole.npz", inputs=np.ones((100, 4), "float32"), labels=labels)
    data = load_task_data(tmp_path / "whole.npz", seed=0)
    assert len(data.train) + len(data.val) + len(data.test) == 100

    np.savez(
        tmp_path / "split.npz",
        train_inputs_0=np.ones((50, 4), "float32"), train_labels=labels[:50],
        val_inputs_0=np.ones((20, 4), "float32"), val_labels=labels[50:70],
        test_inputs_0=np.ones((30, 4), "float32"), test_labels=labels[70:],
    )
    data = load_task_data(tmp_path / "split.npz")
    assert (len(data.train), len(data.val), len(data.test)) == (50, 20, 30)
    np.testing.assert_array_equal(data.test.labels, labels[70:])

    np.savez(tmp_path / "bad.npz", images=np.ones((10, 4)), labels=labels[:10])
    with pytest.raises(DataError, match="has 'labels' but no 'inputs'"):
        load_task_data(tmp_path / "bad.npz")


def _write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_csv_features_become_one_input_reshaped_to_the_sample_shape(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = ["p0,p1,p2,p3,label"] + [",".join(f"{v:.3f}" for v in rng.normal(size=4)) + f",{i % 3}" for i in range(60)]
    data = load_task_data(_write_csv(tmp_path / "d.csv", rows), sample_shape=(1, 2, 2), seed=0)
    assert data.train.inputs[0].shape[1:] == (1, 2, 2) and data.train.inputs[0].dtype == np.float32
    assert data.num_classes == 3


def test_csv_split_column_is_used_as_is(tmp_path: Path) -> None:
    rows = ["label,split,x"] + [f"{i % 2},{('train', 'val', 'test')[i % 3]},{i}" for i in range(30)]
    data = load_task_data(_write_csv(tmp_path / "d.csv", rows))
    np.testing.assert_array_equal(data.val.inputs[0][:, 0], np.arange(1, 30, 3))


def test_csv_errors_name_the_line_and_column(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv", ["a,b,label", "1,2,0", "3,oops,1"])
    with pytest.raises(DataError, match=r"d.csv line 3: column 'b' is not a number: 'oops'"):
        load_task_data(path)
    path = _write_csv(tmp_path / "e.csv", ["a,b,label", "1,2,0.5"])
    with pytest.raises(DataError, match="line 2: 'label' must be an integer class id, got '0.5'"):
        load_task_data(path)
    path = _write_csv(tmp_path / "f.csv", ["a,b,class"])
    with pytest.raises(DataError, match="no 'label' column"):
        load_task_data(path)
    with pytest.raises(DataError, match="2 feature columns do not fill sample_shape"):
        load_task_data(_write_csv(tmp_path / "g.csv", ["a,b,label"] + [f"1,2,{i % 2}" for i in range(20)]), sample_shape=(3,))
    with pytest.raises(DataError, match="expected a .npz or .csv file"):
        load_task_data(_write_csv(tmp_path / "h.txt", ["x"]))
