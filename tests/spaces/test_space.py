"""The search space: its dimensions and bounds, suggest/params_for, warm start, and model mapping errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import optuna
import pytest

from devicefit.device_profiles._schema import SchemaError, parse_yaml
from devicefit.spaces import (
    BlockLayout,
    Candidate,
    LayoutMismatch,
    LocatedBlocks,
    ModelAdapter,
    SpaceBounds,
    TransformerSpace,
    UnsupportedModelError,
)

ALL_DIMENSIONS = SpaceBounds(
    min_depth=1,
    sparsities=(0.0, 0.5),
    precisions=("fp32", "fp16", "int8"),
    calibrations=("avg", "hist"),
    max_fp32_layers=1,
    weight_only_bits=(8, 16),
)


def test_suggest_and_params_for_are_inverse_with_every_dimension(family_factory) -> None:
    model, batch = family_factory("bert")
    space = TransformerSpace(model, *batch, bounds=ALL_DIMENSIONS)
    starts = space.warm_start()
    assert starts[0] == space.full_candidate()
    # Then the grid: each depth (shallowest first) at every precision searched, at the middle of each width range.
    grid = starts[1:7]
    assert [(c.depth, c.precision) for c in grid] == [
        (1, "fp32"), (1, "fp16"), (1, "int8"), (2, "fp32"), (2, "fp16"), (2, "int8")]
    layout = space.layout
    for candidate in grid:
        assert set(candidate.heads) == {-(-(1 + layout.num_heads) // 2)} and candidate.sparsity == 0.0
        assert all(space.ffn_step <= f < layout.ffn_size and f % space.ffn_step == 0 for f in candidate.ffn)
        assert candidate.hidden is not None and candidate.hidden < layout.hidden_size
        assert (candidate.calibration is not None) == (candidate.precision == "int8")
    # Then the smallest candidate the bounds allow, and the teacher in int8.
    smallest = starts[7]
    assert (smallest.depth, set(smallest.heads), smallest.precision) == (1, {1}, "int8")
    assert set(smallest.ffn) == {space.ffn_step} and smallest.hidden is not None and smallest.hidden < 32
    assert starts[8:] == [dataclasses.replace(space.full_candidate(), precision="int8", calibration="avg")]
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    for candidate in starts:
        study.enqueue_trial(space.params_for(candidate))
    for expected in starts:
        trial = study.ask()
        assert space.suggest(trial) == expected
        study.tell(trial, [0.0, 0.0])
    seen = set()
    names = {"depth", "hidden", "sparsity", "precision", "calibration", "fp32_layers", "weight_only_bits"}
    names |= {f"heads_{i}" for i in range(2)} | {f"ffn_{i}" for i in range(2)}
    for _ in range(40):
        trial = study.ask()
        candidate = space.suggest(trial)
        assert set(trial.params) == names  # the same parameters on every call, whatever was drawn
        assert all(f % space.ffn_step == 0 for f in candidate.ffn)
        assert candidate.hidden is None or candidate.hidden % space.hidden_step == 0
        assert space.suggest(optuna.trial.FixedTrial(space.params_for(candidate))) == candidate
        assert len(space.encode(candidate)) == len(space.encode(space.full_candidate()))
        # What a model-based sampler compares: the drawn parameters encode as their candidate does, whatever
        # the widths drawn for blocks the candidate drops.
        assert np.array_equal(space.encode_params(trial.params), space.encode(candidate))
        seen.add((candidate.precision, candidate.weight_only_bits is not None, bool(candidate.fp32_layers)))
        study.tell(trial, [0.0, 0.0])
    assert {p for p, _, _ in seen} == {"fp32", "fp16", "int8"} and (("fp32", True, False) in seen)


def test_params_for_refuses_what_the_space_cannot_suggest(family_factory) -> None:
    model, batch = family_factory("vit-cls")
    space = TransformerSpace(model, *batch, bounds=SpaceBounds(search_hidden=False))
    other_layer = tuple(i for i in range(2) if i not in space.importance.layers_for_depth(1))
    with pytest.raises(ValueError, match="most important"):
        space.params_for(Candidate(other_layer, (4,), (48,)))
    with pytest.raises(ValueError, match="cannot suggest"):
        space.params_for(Candidate((0, 1), (4, 4), (48, 48), hidden=16))  # the hidden width is off
    with pytest.raises(ValueError, match="cannot suggest"):
        space.params_for(Candidate((0, 1), (4, 4), (48, 48), "int8", calibration="avg"))  # fp32 only


def test_dimensions_can_be_switched_off(family_factory) -> None:
    model, batch = family_factory("transformer-encoder-pre")
    bounds = SpaceBounds(search_depth=False, search_heads=False, search_hidden=False)
    space = TransformerSpace(model, *batch, bounds=bounds)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    candidate = space.suggest(trial)
    assert set(trial.params) == {"ffn_0", "ffn_1", "ffn_2"}
    assert candidate.layers == (0, 1, 2) and candidate.heads == (4, 4, 4) and candidate.hidden is None
    assert "depth fixed" in space.describe() and "heads fixed" in space.describe()
    # The warm start's grid keeps to what is searched: full depth and heads, the middle FFN width, fp32.
    starts = space.warm_start()
    assert starts[0] == space.full_candidate()
    middle = starts[1]
    assert (middle.layers, middle.heads, middle.hidden, middle.precision) == ((0, 1, 2), (4, 4, 4), None, "fp32")
    assert len(set(middle.ffn)) == 1 and 0 < middle.ffn[0] < space.layout.ffn_size
    assert all(space.suggest(optuna.trial.FixedTrial(space.params_for(c))) == c for c in starts)


def test_the_warm_start_grid_spreads_depth_from_the_shallowest_allowed(family_factory) -> None:
    model, batch = family_factory("transformer-encoder-pre")  # 3 layers
    for min_depth, depths in ((1, [1, 2, 3]), (2, [2, 3]), (3, [3])):
        space = TransformerSpace(model, *batch, bounds=SpaceBounds(min_depth=min_depth, precisions=("fp32", "fp16")))
        grid = space.warm_start()[1 : 1 + 2 * len(depths)]
        assert [(c.depth, c.precision) for c in grid] == [(d, p) for d in depths for p in ("fp32", "fp16")]


def test_bounds_load_from_a_users_yaml_and_are_checked() -> None:
    text = "min_depth: 2\nsearch_hidden: false\nsparsities: [0.0, 0.25]\nprecisions: [fp32, int8]\ncalibrations: [KL]\n"
    bounds = parse_yaml(text, SpaceBounds, source="fit.yaml", what="space bounds")
    assert bounds == SpaceBounds(min_depth=2, search_hidden=False, sparsities=(0.0, 0.25), precisions=("fp32", "int8"), calibrations=("KL",))
    with pytest.raises(SchemaError, match="fit.yaml:1: .*precisions"):
        parse_yaml("precisions: [int4]\n", SpaceBounds, source="fit.yaml", what="space bounds")
    with pytest.raises(SchemaError, match="min_heads"):
        parse_yaml("min_heads: 0\n", SpaceBounds, source="fit.yaml", what="space bounds")
    with pytest.raises(ValueError, match="sparsities"):
        SpaceBounds(sparsities=(1.0,))


def test_a_required_hidden_width_is_refused_where_the_forward_hard_codes_it(paddle) -> None:
    class FixedWidth(paddle.nn.Layer):
        """An encoder classifier whose forward reshapes with a hard-coded width of 32."""

        def __init__(self) -> None:
            super().__init__()
            self.embed = paddle.nn.Linear(8, 32)
            self.encoder = paddle.nn.TransformerEncoder(paddle.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0), 2)
            self.head = paddle.nn.Linear(32, 5)

        def forward(self, features):
            encoded = self.encoder(self.embed(features)).reshape([-1, 6 * 32])
            return self.head(encoded.reshape([-1, 6, 32]).mean(axis=1))

    paddle.seed(0)
    model = FixedWidth()
    model.eval()
    rng = np.random.default_rng(0)
    batch = ((rng.normal(size=(8, 6, 8)).astype("float32"),), rng.integers(0, 5, size=8))
    space = TransformerSpace(model, *batch)  # hidden width "where allowed": it is switched off, with the reason
    assert space.layout.hidden_unavailable is not None and "breaks the forward" in space.layout.hidden_unavailable
    assert not space.hidden_searched and "hidden fixed (cutting it breaks the forward" in space.describe()
    with pytest.raises(ValueError, match="hidden width cannot be cut"):
        TransformerSpace(model, *batch, bounds=SpaceBounds(search_hidden=True))



def _custom_model(paddle):
    class Attention(paddle.nn.Layer):
        def __init__(self, width: int, heads: int) -> None:
            super().__init__()
            self.n_heads, self.width_per_head = heads, width // heads
            self.wq, self.wk, self.wv, self.wo = (paddle.nn.Linear(width, width) for _ in range(4))

        def forward(self, x):
            def split(t):
                return t.reshape([0, 0, self.n_heads, self.width_per_head]).transpose([0, 2, 1, 3])

            scores = paddle.matmul(split(self.wq(x)), split(self.wk(x)), transpose_y=True) / self.width_per_head**0.5
            mixed = paddle.matmul(paddle.nn.functional.softmax(scores), split(self.wv(x))).transpose([0, 2, 1, 3])
            return self.wo(mixed.reshape([0, 0, self.n_heads * self.width_per_head]))

    class Mixer(paddle.nn.Layer):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.pre_attn, self.pre_mlp = paddle.nn.LayerNorm(width), paddle.nn.LayerNorm(width)
            self.attn = Attention(width, 4)
            self.up, self.down = paddle.nn.Linear(width, 2 * width), paddle.nn.Linear(2 * width, width)

        def forward(self, x):
            x = x + self.attn(self.pre_attn(x))
            return x + self.down(paddle.nn.functional.relu(self.up(self.pre_mlp(x))))

    class MixerNet(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.stem = paddle.nn.Linear(8, 32)
            self.mixers = paddle.nn.LayerList([Mixer(32) for _ in range(3)])
            self.out = paddle.nn.Linear(32, 5)

        def forward(self, features):
            x = self.stem(features)
            for mixer in self.mixers:
                x = mixer(x)
            return self.out(x.mean(axis=1))

    paddle.seed(0)
    model = MixerNet()
    model.eval()
    return model


class MixerAdapter(ModelAdapter):
    """The adapter a user writes for ``MixerNet``: where its blocks are, and how to set a head count."""

    family = "mixer"

    def locate(self, model):
        if not hasattr(model, "mixers"):
            raise LayoutMismatch("no 'mixers'")
        block = BlockLayout(
            attention="attn", query="attn.wq", key="attn.wk", value="attn.wv", attention_output="attn.wo",
            ffn_in="up", ffn_out="down", norms=("pre_attn", "pre_mlp"),
        )
        return LocatedBlocks("mixers", block, num_heads=model.mixers[0].attn.n_heads, head_dim=model.mixers[0].attn.width_per_head)

    def set_num_heads(self, attention, num_heads):
        attention.n_heads = num_heads


def test_a_model_no_adapter_knows_gets_an_error_naming_the_layer(paddle, toy_batch) -> None:
    model = _custom_model(paddle)
    with pytest.raises(UnsupportedModelError) as raised:
        TransformerSpace(model, *toy_batch)
    message = str(raised.value)
    assert "could not place 'mixers' (a LayerList of 3 Mixer)" in message
    assert "bert: no sublayer with 'embeddings'" in message and "ModelAdapter" in message
    assert "\n" not in message


def test_a_custom_adapter_maps_a_custom_model(paddle, toy_batch) -> None:
    model = _custom_model(paddle)
    space = TransformerSpace(model, *toy_batch, adapters=(MixerAdapter(),))
    assert (space.layout.family, space.layout.num_layers, space.layout.ffn_size) == ("mixer", 3, 64)
    assert space.hidden_searched  # stem writes the stream, out reads it, the norms are on it: all placed
    inputs = [paddle.to_tensor(x) for x in toy_batch[0]]
    full = space.materialize(space.full_candidate())
    np.testing.assert_allclose(full(*inputs).numpy(), model(*inputs).numpy(), atol=1e-5, rtol=0)
    small = space.materialize(Candidate((0, 2), (2, 1), (16, 32), hidden=24))
    assert [m.attn.n_heads for m in small.mixers] == [2, 1]
    assert small(*inputs).shape == [32, 5]


def test_a_bert_layer_missing_a_part_is_named(paddle, family_factory) -> None:
    model, batch = family_factory("bert")
    del model.bert.encoder.layer[1].intermediate._sub_layers["dense"]
    with pytest.raises(UnsupportedModelError, match=r"bert\.encoder\.layer\.1 has no intermediate\.dense"):
        TransformerSpace(model, *batch)


def test_settings_that_do_not_apply_collapse_into_one_candidate(family_factory) -> None:
    model, batch = family_factory("vit-mean")
    space = TransformerSpace(model, *batch, bounds=ALL_DIMENSIONS)
    base = {"depth": 2, "heads_0": 4, "heads_1": 4, "ffn_0": 48, "ffn_1": 48, "hidden": 32, "sparsity": 0.0}
    fp32 = [
        space.suggest(optuna.trial.FixedTrial({**base, "precision": "fp32", "calibration": algo, "fp32_layers": k, "weight_only_bits": 0}))
        for algo in ("avg", "hist")
        for k in (0, 1)
    ]
    assert len({c.key() for c in fp32}) == 1 and fp32[0].calibration is None and fp32[0].fp32_layers == ()
    int8 = [
        space.suggest(optuna.trial.FixedTrial({**base, "precision": "int8", "calibration": "avg", "fp32_layers": 0, "weight_only_bits": bits}))
        for bits in (0, 8, 16)
    ]
    assert len({c.key() for c in int8}) == 1 and int8[0].weight_only_bits is None  # int8 has no weight-only
    assert fp32[0].hidden is None  # drawing the teacher's own width is "not cut"
