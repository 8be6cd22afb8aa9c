"""Tests of the digits-ViT example: the data splits, the committed teacher, and its exported program.

They use the committed ``teacher.pdparams`` / ``teacher.json`` (no training) and run in a few seconds.
Paddle Lite is not exercised here: it runs in its own interpreter, through the Lite worker.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from devicefit.examples.digits_vit.data import (
    DigitsSplits,
    load_digits_splits,
    split_indices,
)
from devicefit.spaces._paddle import import_paddle

paddle = import_paddle()

from devicefit.examples.digits_vit.model import (  # noqa: E402  (after import_paddle, on purpose)
    DigitsViT,
    ViTConfig,
    accuracy,
    input_spec,
    load_teacher,
    predict_logits,
    read_teacher_metadata,
)

EXPORT_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def splits() -> DigitsSplits:
    return load_digits_splits(seed=0)


@pytest.fixture(scope="module")
def teacher() -> DigitsViT:
    return load_teacher()


@pytest.fixture(scope="module")
def exported_prefix(teacher: DigitsViT, tmp_path_factory: pytest.TempPathFactory) -> Path:
    prefix = tmp_path_factory.mktemp("digits_vit_export") / "teacher"
    static_model = paddle.jit.to_static(teacher, input_spec=input_spec())
    paddle.jit.save(static_model, str(prefix))
    return prefix


def _image_rows(images: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in images.reshape(len(images), -1)}


def test_importing_data_does_not_import_paddle() -> None:
    code = (
        "import sys; import devicefit.examples.digits_vit.data as d; "
        "d.load_digits_splits(); assert 'paddle' not in sys.modules, 'paddle was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_split_sizes_shapes_and_types(splits: DigitsSplits) -> None:
    for split, size in ((splits.train, 1200), (splits.val, 200), (splits.test, 397)):
        assert split.images.shape == (size, 1, 8, 8)
        assert split.images.dtype == np.float32
        assert split.labels.shape == (size,)
        assert split.labels.dtype == np.int64


def test_splits_are_disjoint(splits: DigitsSplits) -> None:
    from sklearn.datasets import load_digits

    train, val, test = split_indices(load_digits().target, seed=0)
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert len(set(train) | set(val) | set(test)) == 1797
    # The 1,797 digit images are all distinct, so disjoint indices mean disjoint images.
    train_rows, val_rows, test_rows = (
        _image_rows(s.images) for s in (splits.train, splits.val, splits.test)
    )
    assert not train_rows & val_rows and not train_rows & test_rows and not val_rows & test_rows


def test_splits_are_reproducible_and_follow_the_seed(splits: DigitsSplits) -> None:
    again = load_digits_splits(seed=0)
    for first, second in zip((splits.train, splits.val, splits.test), (again.train, again.val, again.test)):
        np.testing.assert_array_equal(first.images, second.images)
        np.testing.assert_array_equal(first.labels, second.labels)
    other = load_digits_splits(seed=1)
    assert _image_rows(other.test.images) != _image_rows(splits.test.images)


def test_splits_are_stratified_and_standardized_with_train_statistics(splits: DigitsSplits) -> None:
    from sklearn.datasets import load_digits

    class_fractions = np.bincount(load_digits().target, minlength=10) / 1797
    for split in (splits.train, splits.val, splits.test):
        counts = np.bincount(split.labels, minlength=10)
        assert np.abs(counts - class_fractions * len(split.labels)).max() <= 1.0
    assert abs(float(splits.train.images.mean())) < 1e-4
    assert abs(float(splits.train.images.std()) - 1.0) < 1e-4


def test_config_round_trips_and_rejects_unknown_fields() -> None:
    config = ViTConfig(num_layers=2, ffn_size=64)
    assert ViTConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        ViTConfig.from_dict({"hidden": 64})
    with pytest.raises(ValueError):
        ViTConfig(hidden_size=64, num_heads=5)


def test_model_exposes_the_parts_that_search_spaces_shrink(teacher: DigitsViT) -> None:
    layer = teacher.encoder.layers[0]
    assert layer.self_attn.q_proj.weight.shape == [64, 64]
    assert layer.linear1.weight.shape == [64, 128]
    assert len(teacher.encoder.layers) == 4
    assert teacher.cls_token.shape == [1, 1, 64]
    assert teacher.pos_embed.shape == [1, 17, 64]
    assert teacher.head.weight.shape == [64, 10]


def test_teacher_reaches_95_percent_test_accuracy(teacher: DigitsViT, splits: DigitsSplits) -> None:
    test_accuracy = accuracy(teacher, splits.test.images, splits.test.labels)
    assert test_accuracy >= 0.95
    recorded = read_teacher_metadata()["accuracy"]["test"]
    assert test_accuracy == pytest.approx(recorded, abs=1e-9)


def test_teacher_metadata_describes_the_1200_image_training_split() -> None:
    metadata = read_teacher_metadata()
    assert metadata["split_sizes"] == {"train": 1200, "val": 200, "test": 397}
    assert ViTConfig.from_dict(metadata["config"]).hidden_size == 64


def test_missing_teacher_says_how_to_train_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train_teacher"):
        load_teacher(tmp_path)


def test_exported_program_agrees_with_eager(
    teacher: DigitsViT, splits: DigitsSplits, exported_prefix: Path
) -> None:
    assert exported_prefix.with_suffix(".pdmodel").is_file()
    assert exported_prefix.with_suffix(".pdiparams").is_file()
    images = splits.test.images
    eager = predict_logits(teacher, images)
    loaded = paddle.jit.load(str(exported_prefix))
    loaded.eval()
    for batch in (images[:1], images[:7], images):
        exported = loaded(paddle.to_tensor(np.ascontiguousarray(batch))).numpy()
        np.testing.assert_allclose(exported, eager[: len(batch)], rtol=0, atol=EXPORT_TOLERANCE)


def test_inference_api_agrees_with_eager(
    teacher: DigitsViT, splits: DigitsSplits, exported_prefix: Path
) -> None:
    config = paddle.inference.Config(
        str(exported_prefix.with_suffix(".pdmodel")), str(exported_prefix.with_suffix(".pdiparams"))
    )
    config.disable_gpu()
    config.disable_glog_info()
    predictor = paddle.inference.create_predictor(config)
    images = np.ascontiguousarray(splits.test.images[:16])
    input_handle = predictor.get_input_handle(predictor.get_input_names()[0])
    input_handle.reshape(list(images.shape))
    input_handle.copy_from_cpu(images)
    predictor.run()
    output = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    np.testing.assert_allclose(output, predict_logits(teacher, images), rtol=0, atol=EXPORT_TOLERANCE)
