"""``--data`` also takes a CSV file or an unsplit NPZ: read by evaluators' loaders, split by the run's seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from devicefit.search._user_model import load_task, parse_task_source
from tests.search.test_user_model import USER_MODEL


def _toy_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 48)).astype("float32")
    return features, (features[:, 0] > 0).astype("int64") + 2 * (features[:, 1] > 0)


def test_a_csv_file_is_split_by_the_seed_and_shaped_for_the_model(paddle, tmp_path: Path) -> None:
    (tmp_path / "toy.py").write_text(USER_MODEL)
    features, labels = _toy_rows(120, 0)
    header = ",".join(f"f{i}" for i in range(48)) + ",label"
    rows = [",".join(f"{v:.4f}" for v in row) + f",{label}" for row, label in zip(features, labels)]
    (tmp_path / "toy.csv").write_text("\n".join([header, *rows]) + "\n")
    source = parse_task_source(None, f"{tmp_path / 'toy.py'}:build", tmp_path / "toy.csv")
    task = load_task(source, seed=4)
    assert task.data.train.inputs[0].shape[1:] == (6, 8) and task.data.num_classes == 5
    again = load_task(source, seed=4)
    np.testing.assert_array_equal(task.data.test.inputs[0], again.data.test.inputs[0])
    assert len(task.data.train) + len(task.data.val) + len(task.data.test) == 120


def test_an_unsplit_npz_file(paddle, tmp_path: Path) -> None:
    (tmp_path / "toy.py").write_text(USER_MODEL)
    features, labels = _toy_rows(90, 1)
    np.savez(tmp_path / "toy.npz", inputs=features.reshape(90, 6, 8), labels=labels)
    task = load_task(parse_task_source(None, f"{tmp_path / 'toy.py'}:build", tmp_path / "toy.npz"), seed=0)
    assert len(task.data.val) == 14 and len(task.data.test) == 18
