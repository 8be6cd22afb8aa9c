"""Shared fixtures. zlib is imported before anything can import Paddle (see devicefit.spaces._paddle)."""

from __future__ import annotations

import zlib  # noqa: F401  (must precede any Paddle import in this process)

import os
import shutil
import tempfile

import numpy as np
import pytest

_USER_PROFILES: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """Point devicefit's user profile folder at an empty temporary one, for this process and its children,
    so that profiles a developer calibrated on their machine never change what the tests see."""
    folder = tempfile.mkdtemp(prefix="devicefit-test-profiles-")
    _USER_PROFILES.append(folder)
    os.environ["DEVICEFIT_PROFILES_DIR"] = folder


def pytest_unconfigure(config: pytest.Config) -> None:
    for folder in _USER_PROFILES:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def paddle():
    """The Paddle module, imported the safe way."""
    from devicefit.spaces._paddle import import_paddle

    return import_paddle()


@pytest.fixture(scope="session")
def toy_encoder_factory(paddle):
    """A factory of small encoder classifiers (d=32, 4 heads, FFN 64) built on paddle.nn.TransformerEncoder."""

    class ToyEncoderClassifier(paddle.nn.Layer):
        def __init__(self, num_layers: int = 3, normalize_before: bool = True, num_classes: int = 5) -> None:
            super().__init__()
            self.embed = paddle.nn.Linear(8, 32)
            layer = paddle.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, normalize_before=normalize_before)
            self.encoder = paddle.nn.TransformerEncoder(layer, num_layers)
            self.head = paddle.nn.Linear(32, num_classes)

        def forward(self, features):
            return self.head(self.encoder(self.embed(features)).mean(axis=1))

    def make(seed: int = 0, **kwargs):
        paddle.seed(seed)
        model = ToyEncoderClassifier(**kwargs)
        model.eval()
        return model

    return make


@pytest.fixture(scope="session")
def toy_batch():
    """A calibration batch for the toy encoder: 32 sequences of 6 tokens with 8 features, 5 classes."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(32, 6, 8)).astype("float32")
    labels = rng.integers(0, 5, size=32).astype("int64")
    return (features,), labels


@pytest.fixture(scope="session")
def family_factory(paddle, toy_encoder_factory):
    """Small untrained models of every built-in family, and a calibration batch for each (d=32, 2-3 blocks).

    ``make(name, seed=0)`` returns ``(model, (inputs, labels))`` for ``name`` one of ``transformer-encoder-pre``,
    ``transformer-encoder-post``, ``vit-cls``, ``vit-mean``, ``bert``.
    """
    from devicefit.examples.digits_bert.model import BertConfig, BertForSequenceClassification
    from devicefit.examples.digits_vit.model import DigitsViT, ViTConfig

    rng = np.random.default_rng(0)
    images = rng.normal(size=(16, 1, 8, 8)).astype("float32")
    tokens = rng.integers(0, 19, size=(16, 65)).astype("int64")
    features = rng.normal(size=(16, 6, 8)).astype("float32")
    labels = rng.integers(0, 5, size=16).astype("int64")

    def make(name: str, seed: int = 0):
        paddle.seed(seed)
        if name.startswith("transformer-encoder"):
            model = toy_encoder_factory(seed=seed, normalize_before=name.endswith("pre"))
            return model, ((features,), labels)
        if name.startswith("vit"):
            config = ViTConfig(hidden_size=32, num_layers=2, num_heads=4, ffn_size=48, pooling=name.split("-")[1])
            model = DigitsViT(config)
            model.eval()
            return model, ((images,), labels)
        if name == "bert":
            config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)
            model = BertForSequenceClassification(config)
            model.eval()
            return model, ((tokens,), labels)
        raise KeyError(name)

    return make

