"""Bad data gets one clear line naming the array, before any training: TaskData, input spec, model classes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from devicefit.evaluators import DataError, Split, TaskData
from devicefit.evaluators._data import check_input_spec, check_model_outputs, check_task_data


@dataclasses.dataclass
class Spec:
    """Stands in for paddle.static.InputSpec (only shape, dtype and name are read)."""

    shape: list[int | None]
    dtype: str
    name: str = "features"


def _split(n: int, *, classes: int = 5, shape: tuple[int, ...] = (6, 8), dtype: str = "float32") -> Split:
    rng = np.random.default_rng(n)
    return Split((rng.normal(size=(n, *shape)).astype(dtype),), rng.integers(0, classes, size=n).astype("int64"))


def _data(**replace: Split) -> TaskData:
    splits = {"train": _split(40), "val": _split(10), "test": _split(12)}
    splits.update(replace)
    return TaskData(num_classes=5, **splits)


def _one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_valid_data_passes_every_check() -> None:
    check_input_spec(_data(), [Spec([None, 6, 8], "float32")])
    check_model_outputs(_data(), 5)


def test_empty_split_is_named() -> None:
    empty = Split((np.zeros((0, 6, 8), "float32"),), np.zeros(0, "int64"))
    with pytest.raises(DataError) as error:
        _data(val=empty)
    assert _one_line(error) == "the val split is empty (0 labels)"


def test_labels_outside_the_classes_are_named_with_the_range() -> None:
    bad = Split((np.zeros((3, 6, 8), "float32"),), np.array([0, 7, 2]))
    with pytest.raises(DataError) as error:
        _data(test=bad)
    assert _one_line(error) == "test labels must be in [0, 5), found 0..7"


def test_mismatched_lengths_name_the_input() -> None:
    bad = Split((np.zeros((9, 6, 8), "float32"),), np.zeros(10, "int64"))
    with pytest.raises(DataError) as error:
        _data(val=bad)
    assert _one_line(error) == "val input 0 has 9 samples but 10 labels"


def test_float_labels_and_nan_inputs_are_refused() -> None:
    with pytest.raises(DataError, match="train labels must be a 1-D integer array, got float64"):
        _data(train=Split((np.zeros((4, 6, 8), "float32"),), np.zeros(4)))
    poisoned = _split(10)
    poisoned.inputs[0][3, 0, 0] = np.nan
    with pytest.raises(DataError, match="val input 0 holds NaN or infinite values"):
        _data(val=poisoned)


def test_wrong_shape_for_the_input_spec_names_split_input_and_expected_shape() -> None:
    data = _data(val=_split(10, shape=(6, 7)))
    with pytest.raises(DataError) as error:
        check_input_spec(data, [Spec([None, 6, 8], "float32")])
    assert _one_line(error) == "val input 0 'features' has shape (10, 6, 7); the model's input spec expects [N, 6, 8]"
    with pytest.raises(DataError, match=r"train input 0 'features' has shape \(40, 6, 8\); .* expects \[N, 1, 6, 8\]"):
        check_input_spec(_data(), [Spec([None, 1, 6, 8], "float32")])


def test_free_axes_of_the_spec_accept_any_size() -> None:
    check_input_spec(_data(), [Spec([-1, None, 8], "float32")])


def test_wrong_dtype_for_the_input_spec_is_named() -> None:
    data = _data(train=_split(40, dtype="float64"))
    with pytest.raises(DataError) as error:
        check_input_spec(data, [Spec([None, 6, 8], "float32")])
    assert _one_line(error) == "train input 0 'features' has dtype float64; the model's input spec expects float32"


def test_wrong_number_of_inputs_for_the_spec() -> None:
    with pytest.raises(DataError, match="train has 1 input arrays; the model's input spec has 2"):
        check_input_spec(_data(), [Spec([None, 6, 8], "float32"), Spec([None, 6], "int64", "mask")])


def test_more_classes_than_the_model_outputs() -> None:
    with pytest.raises(DataError) as error:
        check_model_outputs(_data(), 3)
    assert "num_classes 5" in _one_line(error) and "outputs 3 logits" in str(error.value)


def test_check_task_data_runs_the_model_once(paddle, toy_encoder_factory) -> None:
    model = toy_encoder_factory(num_classes=5)
    rng = np.random.default_rng(0)

    def split(n: int) -> Split:
        return Split((rng.normal(size=(n, 6, 8)).astype("float32"),), rng.integers(0, 5, n).astype("int64"))

    spec = [paddle.static.InputSpec([None, 6, 8], "float32", "features")]
    check_task_data(TaskData(split(8), split(4), split(4), num_classes=5), spec, model)
    with pytest.raises(DataError, match="outputs 5 logits"):
        check_task_data(TaskData(split(8), split(4), split(4), num_classes=7), spec, model)
    with pytest.raises(DataError, match="dtype float32; the model's input spec expects int64"):
        check_task_data(TaskData(split(8), split(4), split(4), num_classes=5), [paddle.static.InputSpec([None, 6, 8], "int64")], model)
