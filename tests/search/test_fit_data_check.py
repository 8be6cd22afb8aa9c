"""A fit refuses data that does not fit the teacher before it creates a study or trains anything."""

from __future__ import annotations

import numpy as np
import pytest

from devicefit.device_profiles import load_profile
from devicefit.evaluators import DataError, Split, TaskData
from devicefit.search._fit import Fit, FitSettings
from devicefit.search._progress import Progress
from devicefit.search._task import Task


def _split(n: int, dtype: str = "float32", width: int = 8) -> Split:
    rng = np.random.default_rng(n)
    return Split((rng.normal(size=(n, 6, width)).astype(dtype),), rng.integers(0, 5, size=n).astype("int64"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (TaskData(_split(32), _split(8, "float64"), _split(8), 5), "val input 0 'features' has dtype float64"),
        (TaskData(_split(32), _split(8), _split(8, width=7), 5), r"test input 0 'features' has shape \(8, 6, 7\)"),
        (TaskData(_split(32), _split(8), _split(8), 9), "num_classes 9 .* outputs 5 logits"),
    ],
)
def test_bad_data_stops_the_fit_before_anything_runs(paddle, toy_encoder_factory, tmp_path, data, message) -> None:
    spec = [paddle.static.InputSpec([None, 6, 8], "float32", "features")]
    task = Task("toy", toy_encoder_factory(), spec, data)
    settings = FitSettings(out=tmp_path / "run", devices=(load_profile("host-x86"),), trials=1)
    with pytest.raises(DataError, match=message):
        Fit(task, settings, progress=Progress(1, quiet=True))
    assert not (tmp_path / "run").exists()


def test_the_fit_scores_candidates_with_the_users_metric(paddle, toy_encoder_factory, tmp_path) -> None:
    spec = [paddle.static.InputSpec([None, 6, 8], "float32", "features")]
    task = Task("toy", toy_encoder_factory(), spec, TaskData(_split(32), _split(8), _split(8), 5))

    def balanced_hits(logits: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(np.argmax(logits, axis=1) == labels))

    settings = FitSettings(out=tmp_path / "run", devices=(load_profile("host-x86"),), trials=1, metric=balanced_hits)
    fit = Fit(task, settings, progress=Progress(1, quiet=True))
    assert fit.accuracy.metric.name == "balanced_hits"
    assert dict(fit.describe())["accuracy"].startswith("balanced_hits on val after distill-1ep")
