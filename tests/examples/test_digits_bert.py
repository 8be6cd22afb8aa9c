"""Tests of the digits-bert example: the token data, the committed teacher, its layout and its export.

They use the committed ``teacher.pdparams`` / ``teacher.json`` (no training) and run in seconds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from devicefit.examples.digits_bert.data import (
    CLS_TOKEN,
    FIRST_INTENSITY_TOKEN,
    SEQUENCE_LENGTH,
    VOCAB_SIZE,
    load_digit_token_splits,
    pixels_to_tokens,
)
from devicefit.examples.digits_vit.data import load_digits_splits
from devicefit.spaces._paddle import import_paddle

paddle = import_paddle()

from devicefit.examples.digits_bert.model import (  # noqa: E402  (after import_paddle, on purpose)
    BertConfig,
    accuracy,
    input_spec,
    load_teacher,
    predict_logits,
    read_teacher_metadata,
)


@pytest.fixture(scope="module")
def splits():
    return load_digit_token_splits(seed=0)


@pytest.fixture(scope="module")
def teacher():
    return load_teacher()


def test_importing_data_does_not_import_paddle() -> None:
    code = (
        "import sys; import devicefit.examples.digits_bert.data as d; "
        "d.load_digit_token_splits(); assert 'paddle' not in sys.modules, 'paddle was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_tokens_encode_the_pixels_after_a_cls_token(splits) -> None:
    for split, size in ((splits.train, 1200), (splits.val, 200), (splits.test, 397)):
        assert split.input_ids.shape == (size, SEQUENCE_LENGTH) and split.input_ids.dtype == np.int64
        assert np.all(split.input_ids[:, 0] == CLS_TOKEN)
        assert split.input_ids[:, 1:].min() >= FIRST_INTENSITY_TOKEN and split.input_ids.max() < VOCAB_SIZE
    # The same digits, in the same order, as the digits-vit example's split of the same seed.
    images = load_digits_splits(seed=0)
    np.testing.assert_array_equal(splits.test.labels, images.test.labels)
    assert pixels_to_tokens(np.array([[0] * 63 + [16]]))[0, -1] == FIRST_INTENSITY_TOKEN + 16
    with pytest.raises(ValueError, match="whole numbers"):
        pixels_to_tokens(np.full((1, 64), 0.5))


def test_teacher_is_laid_out_like_public_bert(teacher) -> None:
    names = {name for name, _ in teacher.named_parameters()}
    for expected in (
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.position_embeddings.weight",
        "bert.embeddings.token_type_embeddings.weight",
        "bert.encoder.layer.3.attention.self.query.weight",
        "bert.encoder.layer.3.attention.self.key.weight",
        "bert.encoder.layer.3.attention.self.value.weight",
        "bert.encoder.layer.3.attention.output.dense.weight",
        "bert.encoder.layer.3.attention.output.LayerNorm.weight",
        "bert.encoder.layer.3.intermediate.dense.weight",
        "bert.encoder.layer.3.output.dense.weight",
        "bert.encoder.layer.3.output.LayerNorm.weight",
        "bert.pooler.dense.weight",
        "classifier.weight",
    ):
        assert expected in names


def test_teacher_reaches_its_recorded_accuracy(teacher, splits) -> None:
    metadata = read_teacher_metadata()
    test_accuracy = accuracy(teacher, splits.test.input_ids, splits.test.labels)
    assert test_accuracy >= 0.94  # 94.2% measured when it was trained (train_teacher.py)
    assert test_accuracy == pytest.approx(metadata["accuracy"]["test"], abs=1e-9)
    assert metadata["split_sizes"] == {"train": 1200, "val": 200, "test": 397}
    assert BertConfig.from_dict(metadata["config"]).hidden_size == 64


def test_missing_teacher_says_how_to_train_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train_teacher"):
        load_teacher(tmp_path)


def test_exported_program_agrees_with_eager(teacher, splits, tmp_path: Path) -> None:
    from devicefit.spaces import export_inference_model, program_logits

    artifact = export_inference_model(teacher, input_spec(), tmp_path)
    tokens = splits.test.input_ids
    np.testing.assert_allclose(program_logits(artifact.directory, (tokens,)), predict_logits(teacher, tokens), atol=1e-4, rtol=0)


def test_the_example_is_registered_and_mapped_as_the_bert_family() -> None:
    from devicefit.examples import load_example
    from devicefit.spaces import TransformerSpace

    task = load_example("digits-bert")
    assert task.name == "digits-bert" and task.data.num_classes == 10
    calibration = task.data.train.take(slice(0, 32))
    space = TransformerSpace(task.teacher, calibration.inputs, calibration.labels)
    assert (space.layout.family, space.layout.num_layers, space.layout.hidden_size) == ("bert", 4, 64)
    assert space.hidden_searched
