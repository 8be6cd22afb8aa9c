"""A small BERT-style sequence classifier, laid out like the public BERT/ERNIE/TinyBERT definitions.

The layer tree follows the common public layout (Hugging Face ``BertForSequenceClassification``), so that
devicefit finds its parts by their usual names, as it would in a real BERT checkpoint:

``bert.embeddings.{word_embeddings, position_embeddings, token_type_embeddings, LayerNorm}``,
``bert.encoder.layer[i].attention.self.{query, key, value}`` (separate projections),
``bert.encoder.layer[i].attention.output.{dense, LayerNorm}``, ``bert.encoder.layer[i].intermediate.dense``,
``bert.encoder.layer[i].output.{dense, LayerNorm}`` (post-norm), ``bert.pooler.dense`` (tanh) and
``classifier``. The attribute names ``self`` and ``LayerNorm`` are those of the public definitions.

Written for devicefit from the architecture's description; no code is taken from another project. The
attention reads its head count and head width from ``num_attention_heads`` and ``attention_head_size``
(never from the input width), so a student with fewer heads or a narrower hidden size runs unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from devicefit.spaces._paddle import import_paddle

paddle = import_paddle()

TEACHER_DIR = Path(__file__).resolve().parent
TEACHER_WEIGHTS_NAME = "teacher.pdparams"
TEACHER_METADATA_NAME = "teacher.json"
INPUT_NAME = "input_ids"
TRAIN_COMMAND = "python -m devicefit.examples.digits_bert.train_teacher"


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Shape of a :class:`BertForSequenceClassification` (names as in the public BERT configuration).

    Attributes:
        vocab_size: Token ids are in ``[0, vocab_size)``.
        hidden_size: Width of the token representations.
        num_hidden_layers: Encoder layers.
        num_attention_heads: Heads per layer; must divide ``hidden_size``.
        intermediate_size: Inner width of each layer's feed-forward network.
        max_position_embeddings: Longest sequence the position embeddings cover.
        type_vocab_size: Number of token types (segments).
        hidden_dropout_prob: Dropout on embeddings and sub-layer outputs, in training.
        attention_probs_dropout_prob: Dropout on attention probabilities, in training.
        layer_norm_eps: Epsilon of every LayerNorm.
        num_labels: Output classes.
        classifier_dropout: Dropout before the classifier, in training.
    """

    vocab_size: int = 19
    hidden_size: int = 64
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 128
    max_position_embeddings: int = 65
    type_vocab_size: int = 2
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12
    num_labels: int = 10
    classifier_dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if min(self.vocab_size, self.num_hidden_layers, self.intermediate_size, self.num_labels) < 1:
            raise ValueError(f"sizes must be positive: {self}")

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dictionary."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BertConfig:
        """Inverse of :meth:`to_dict`; missing fields take their defaults.

        Raises:
            ValueError: ``values`` has a key that is not a field.
        """
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown BertConfig fields: {unknown}")
        return cls(**values)


class BertEmbeddings(paddle.nn.Layer):
    """Word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = paddle.nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = paddle.nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = paddle.nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = paddle.nn.LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)  # noqa: N815
        self.dropout = paddle.nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids, token_type_ids=None):  # type: ignore[no-untyped-def]
        """``[batch, seq]`` int64 ids (and optional token types) -> ``[batch, seq, hidden]``."""
        position_ids = paddle.arange(input_ids.shape[1], dtype="int64").unsqueeze(0)
        if token_type_ids is None:
            token_type_ids = paddle.zeros_like(input_ids)
        embeddings = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(position_ids)
            + self.token_type_embeddings(token_type_ids)
        )
        return self.dropout(self.LayerNorm(embeddings))


class BertSelfAttention(paddle.nn.Layer):
    """Scaled dot-product self-attention with separate query, key and value projections."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query = paddle.nn.Linear(config.hidden_size, self.all_head_size)
        self.key = paddle.nn.Linear(config.hidden_size, self.all_head_size)
        self.value = paddle.nn.Linear(config.hidden_size, self.all_head_size)
        self.dropout = paddle.nn.Dropout(config.attention_probs_dropout_prob)

    def _heads(self, x):  # type: ignore[no-untyped-def]
        return x.reshape([0, 0, self.num_attention_heads, self.attention_head_size]).transpose([0, 2, 1, 3])

    def forward(self, hidden_states):  # type: ignore[no-untyped-def]
        """``[batch, seq, hidden]`` -> ``[batch, seq, all_head_size]``."""
        query = self._heads(self.query(hidden_states))
        key = self._heads(self.key(hidden_states))
        value = self._heads(self.value(hidden_states))
        scores = paddle.matmul(query, key, transpose_y=True) * (1.0 / math.sqrt(self.attention_head_size))
        probs = self.dropout(paddle.nn.functional.softmax(scores, axis=-1))
        context = paddle.matmul(probs, value).transpose([0, 2, 1, 3])
        return context.reshape([0, 0, self.all_head_size])


class BertSelfOutput(paddle.nn.Layer):
    """Output projection of the attention, dropout, residual, LayerNorm (post-norm)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = paddle.nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = paddle.nn.LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)  # noqa: N815
        self.dropout = paddle.nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):  # type: ignore[no-untyped-def]
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertAttention(paddle.nn.Layer):
    """Self-attention (``self``) followed by its output block (``output``)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states):  # type: ignore[no-untyped-def]
        return self.output(self.self(hidden_states), hidden_states)


class BertIntermediate(paddle.nn.Layer):
    """First FFN projection (hidden -> intermediate) and GELU."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = paddle.nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, hidden_states):  # type: ignore[no-untyped-def]
        return paddle.nn.functional.gelu(self.dense(hidden_states))


class BertOutput(paddle.nn.Layer):
    """Second FFN projection (intermediate -> hidden), dropout, residual, LayerNorm (post-norm)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = paddle.nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = paddle.nn.LayerNorm(config.hidden_size, epsilon=config.layer_norm_eps)  # noqa: N815
        self.dropout = paddle.nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states, input_tensor):  # type: ignore[no-untyped-def]
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + input_tensor)


class BertLayer(paddle.nn.Layer):
    """One encoder layer: attention, then the feed-forward network."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states):  # type: ignore[no-untyped-def]
        attended = self.attention(hidden_states)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(paddle.nn.Layer):
    """The stack of encoder layers (``layer``)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = paddle.nn.LayerList([BertLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, hidden_states):  # type: ignore[no-untyped-def]
        for layer in self.layer:
            hidden_states = layer(hidden_states)
        return hidden_states


class BertPooler(paddle.nn.Layer):
    """The first token's representation through a dense layer and tanh."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = paddle.nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states):  # type: ignore[no-untyped-def]
        return paddle.tanh(self.dense(hidden_states[:, 0]))


class BertModel(paddle.nn.Layer):
    """Embeddings, encoder and pooler."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)

    def forward(self, input_ids, token_type_ids=None):  # type: ignore[no-untyped-def]
        """Returns the pooled ``[batch, hidden]`` representation."""
        return self.pooler(self.encoder(self.embeddings(input_ids, token_type_ids)))


class BertForSequenceClassification(paddle.nn.Layer):
    """BERT with a linear classifier on the pooled ``[CLS]`` representation.

    Args:
        config: Shape of the model; defaults to :class:`BertConfig`'s defaults.
    """

    def __init__(self, config: BertConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else BertConfig()
        self.bert = BertModel(self.config)
        self.dropout = paddle.nn.Dropout(self.config.classifier_dropout)
        self.classifier = paddle.nn.Linear(self.config.hidden_size, self.config.num_labels)

    def forward(self, input_ids, token_type_ids=None):  # type: ignore[no-untyped-def]
        """Classify token sequences.

        Args:
            input_ids: Int64 tensor ``[batch, seq]``.
            token_type_ids: Optional int64 tensor ``[batch, seq]``; all zeros when omitted.

        Returns:
            Logits, float32 ``[batch, num_labels]``.
        """
        return self.classifier(self.dropout(self.bert(input_ids, token_type_ids)))


def predict_logits(model: Any, input_ids: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Run ``model`` on ``input_ids`` without gradients, in batches (the caller sets eval mode)."""
    outputs = []
    with paddle.no_grad():
        for start in range(0, len(input_ids), batch_size):
            batch = paddle.to_tensor(np.ascontiguousarray(input_ids[start : start + batch_size]))
            outputs.append(model(batch).numpy())
    return np.concatenate(outputs, axis=0)


def accuracy(model: Any, input_ids: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of sequences that ``model`` classifies as ``labels`` (mode kept as set)."""
    return float((predict_logits(model, input_ids).argmax(axis=1) == labels).mean())


def input_spec(sequence_length: int = 65) -> list[Any]:
    """The input signature for ``paddle.jit.to_static``: token ids of any batch size, fixed length."""
    return [paddle.static.InputSpec([None, sequence_length], "int64", INPUT_NAME)]


def read_teacher_metadata(directory: str | Path | None = None) -> dict[str, Any]:
    """Read ``teacher.json`` (configuration, recipe, accuracies, ...).

    Raises:
        FileNotFoundError: It is missing; the message gives the command that creates it.
    """
    path = Path(directory or TEACHER_DIR) / TEACHER_METADATA_NAME
    if not path.is_file():
        raise FileNotFoundError(_missing_teacher_message(path))
    return json.loads(path.read_text(encoding="utf-8"))


def load_teacher(directory: str | Path | None = None) -> BertForSequenceClassification:
    """Build the trained teacher from ``teacher.json`` and ``teacher.pdparams``, in eval mode.

    Raises:
        FileNotFoundError: A teacher file is missing; the message gives the command that creates it.
    """
    folder = Path(directory or TEACHER_DIR)
    metadata = read_teacher_metadata(folder)
    weights_path = folder / TEACHER_WEIGHTS_NAME
    if not weights_path.is_file():
        raise FileNotFoundError(_missing_teacher_message(weights_path))
    model = BertForSequenceClassification(BertConfig.from_dict(metadata["config"]))
    model.set_state_dict(paddle.load(str(weights_path)))
    model.eval()
    return model


def _missing_teacher_message(path: Path) -> str:
    return (
        f"The digits-BERT teacher file {path} is missing. Train the teacher with:\n    {TRAIN_COMMAND}\n"
        f"which writes {TEACHER_WEIGHTS_NAME} and {TEACHER_METADATA_NAME} into {path.parent}."
    )
