"""How well each rung of the accuracy ladder predicts the final accuracy, and what it costs.

On candidates of the digits ViT spread over its space (every depth, heads and FFN widths drawn uniformly),
this computes every rung's scores: the zero-cost proxies (rung 1), several short distillation fine-tunes
(rung 2: budgets, learning rates and distillation terms), and the full fine-tune's held-out test accuracy
(rung 3, the truth). It prints, for every score, Kendall's tau and Spearman's rho against rung 3, its cost
per candidate and that cost as a share of rung 3's, and the margin that promotion would allow it; then an
int8 section (PTQ vs QAT); the last line is ``RESULT kendall_default=<tau of the default rung> ...``.

Usage::

    .venv/bin/python bench/proxy_fidelity.py [--candidates 32] [--final-epochs 30] [--int8 3]
        [--out bench/results/proxy_fidelity.json] [--truth-seeds 1]

``--truth-seeds K`` (K > 1) trains rung 3 again with training seeds 1..K-1 for every candidate (the figures go to
``<out>.truth-seeds.json``, resumable like ``--out``) and takes the mean test accuracy over the K seeds as
the truth: rung 3 is itself noisy (its seed-0 validation accuracy ranks its test accuracy at tau 0.75), and
the mean is a less noisy reference to rank against. Seed 0's rung-3 test accuracy is then one more score.

The per-candidate figures are written to ``--out`` as they come, and a rerun with the same ``--out`` and
settings reuses them, so an interrupted run resumes. The full run took 72 minutes on a shared 2-core machine.
"""

from __future__ import annotations

import zlib  # noqa: F401  (before Paddle; see devicefit.spaces._paddle)

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from devicefit.evaluators._accuracy import DEFAULT_DISTILLATION, DistillationEvaluator, predict_logits
from devicefit.evaluators._distill import DistillationSettings
from devicefit.evaluators._final import FINAL_DISTILLATION, FinalEvaluator, QuantAwareEvaluator
from devicefit.evaluators._metrics import top1_accuracy
from devicefit.evaluators._quant import predict_exported_logits
from devicefit.evaluators._zero_cost import ZeroCostEvaluator
from devicefit.examples.digits_vit.task import build_task
from devicefit.search._ladder import kendall_tau, ladder_margin, promotion_mask, spearman_rho
from devicefit.spaces import Candidate, TransformerEncoderSpace

TRUTH = "final:test_accuracy"
TARGET_TAU = 0.8
TARGET_COST_SHARE = 0.1

# Rung 2 variants: short fine-tunes that differ in budget, learning rate and distillation terms.
VARIANTS: dict[str, DistillationSettings] = {
    "logit-1ep-lr5e-4": DistillationSettings(epochs=1, learning_rate=5e-4),
    "logit-3ep-lr5e-4": DistillationSettings(epochs=3, learning_rate=5e-4),
    "logit-10st": DistillationSettings(epochs=1, max_steps=10, learning_rate=2e-3),
    "logit-1ep": DistillationSettings(epochs=1, learning_rate=2e-3),
    "logit-2ep": DistillationSettings(epochs=2, learning_rate=2e-3),
    "hidden-1ep": DistillationSettings(epochs=1, learning_rate=2e-3, hidden_weight=1.0),
    "relation-1ep": DistillationSettings(epochs=1, learning_rate=2e-3, relation_weight=1.0),
    "hidden+relation-1ep": DistillationSettings(epochs=1, learning_rate=2e-3, hidden_weight=1.0, relation_weight=1.0),
}


def default_variant_name() -> str:
    """The variant that equals the evaluators' default rung 2 (added when none does)."""
    for name, settings in VARIANTS.items():
        if settings == DEFAULT_DISTILLATION:
            return name
    VARIANTS["default"] = DEFAULT_DISTILLATION
    return "default"


def spread_candidates(space: TransformerEncoderSpace, count: int, seed: int) -> list[Candidate]:
    """``count`` distinct candidates, as many of each depth, heads and FFN widths drawn uniformly."""
    layout = space.layout
    rng = np.random.default_rng(seed)
    ffn_choices = np.arange(space.ffn_step, layout.ffn_size + 1, space.ffn_step)
    found: dict[str, Candidate] = {}
    for attempt in range(count * 50):
        if len(found) == count:
            break
        depth = 1 + attempt % layout.num_layers
        layers = space.importance.layers_for_depth(depth)
        heads = tuple(int(h) for h in rng.integers(1, layout.num_heads + 1, size=depth))
        ffn = tuple(int(f) for f in rng.choice(ffn_choices, size=depth))
        candidate = Candidate(layers, heads, ffn)
        found.setdefault(candidate.key(), candidate)
    return list(found.values())


def evaluate_candidate(task: Any, space: TransformerEncoderSpace, candidate: Candidate, final_epochs: int) -> dict[str, Any]:
    """Every rung's scores and costs for one candidate (a fresh student for each rung)."""
    data, teacher = task.data, task.teacher
    row: dict[str, Any] = {"key": candidate.key(), "candidate": candidate.to_dict()}
    scores: dict[str, float] = {"params": float(space.layout.parameter_count(candidate))}
    costs: dict[str, float] = {"params": 0.0}

    zero = ZeroCostEvaluator(teacher, data).evaluate(space.materialize(candidate))
    for name, value in (
        ("zero-cost:val_accuracy", zero.accuracy),
        ("zero-cost:agreement", zero.details["calibration_agreement"]),
        ("zero-cost:-kl", -zero.details["calibration_kl"]),
        ("zero-cost:grad_norm", zero.details["grad_norm"]),
        ("zero-cost:synflow", zero.details["synflow"]),
        ("zero-cost:naswot", zero.details["naswot"]),
    ):
        scores[name], costs[name] = float(value), zero.seconds

    for variant, settings in VARIANTS.items():
        result = DistillationEvaluator(teacher, data, settings).evaluate(
            space.materialize(candidate), teacher_layers=candidate.layers
        )
        for name, value in (
            ("val_accuracy", result.accuracy),
            ("val_agreement", result.details["val_agreement"]),
            ("-val_kl", -result.details["val_kl"]),
        ):
            scores[f"{variant}:{name}"], costs[f"{variant}:{name}"] = float(value), result.seconds
        row.setdefault("fidelity", {})[variant] = result.fidelity

    final = FinalEvaluator(teacher, data, _final_settings(final_epochs))
    student = space.materialize(candidate)
    result = final.evaluate(student, teacher_layers=candidate.layers)
    test = final.test(student)
    scores["final:val_accuracy"], costs["final:val_accuracy"] = result.accuracy, result.seconds
    scores[TRUTH], costs[TRUTH] = test.accuracy, result.seconds + test.seconds
    row["fidelity"]["final"] = result.fidelity
    row["scores"], row["seconds"] = scores, costs
    return row


def final_seed_figures(task: Any, space: TransformerEncoderSpace, candidate: Candidate, final_epochs: int,
                       seed: int) -> dict[str, float]:
    """Rung 3 of ``candidate`` again, with training seed ``seed``: its val and test accuracy and seconds."""
    final = FinalEvaluator(task.teacher, task.data, dataclasses.replace(_final_settings(final_epochs), seed=seed))
    student = space.materialize(candidate)
    result = final.evaluate(student, teacher_layers=candidate.layers)
    test = final.test(student)
    return {"val": float(result.accuracy), "test": float(test.accuracy), "seconds": result.seconds + test.seconds}


def with_mean_truth(rows: list[dict[str, Any]], seeds: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """Rows whose truth is the mean rung-3 test accuracy over seed 0 and the extra seeds; seed 0's test
    accuracy stays as the score ``final-seed0:test_accuracy(in truth)``: it is part of the mean, so its tau is
    inflated and only shows how far one seed is from the mean."""
    out = []
    for row in rows:
        extra = seeds[row["key"]]
        tests = [row["scores"][TRUTH], *(figures["test"] for figures in extra.values())]
        scores = {**row["scores"], "final-seed0:test_accuracy(in truth)": row["scores"][TRUTH], TRUTH: float(np.mean(tests))}
        seconds = {**row["seconds"], "final-seed0:test_accuracy(in truth)": row["seconds"][TRUTH]}
        out.append({**row, "scores": scores, "seconds": seconds})
    return out


def _final_settings(epochs: int) -> DistillationSettings:
    return dataclasses.replace(FINAL_DISTILLATION, epochs=epochs)


def int8_rows(task: Any, space: TransformerEncoderSpace, candidates: list[Candidate], final_epochs: int) -> list[dict[str, Any]]:
    """PTQ vs QAT (rung 3 for int8) on a few candidates; exported programs scored with Paddle Inference."""
    with tempfile.TemporaryDirectory(prefix="devicefit-int8-") as folder:
        return [_int8_row(task, space, candidate, final_epochs, Path(folder)) for candidate in candidates]


def _int8_row(task: Any, space: TransformerEncoderSpace, candidate: Candidate, final_epochs: int, out: Path) -> dict[str, Any]:
    evaluator = QuantAwareEvaluator(task.teacher, task.data, _final_settings(final_epochs))
    student = space.materialize(candidate)
    result = evaluator.evaluate(student, teacher_layers=candidate.layers)
    test = evaluator.test(student)
    artifact = evaluator.export(student, task.input_spec, out / candidate.key())
    exported = predict_exported_logits(artifact, task.data.test)
    simulated = predict_logits(student, task.data.test)
    row = {
        "key": candidate.key(),
        "describe": candidate.describe(),
        "fidelity": result.fidelity,
        "float_val": result.details["float_accuracy"],
        "ptq_val": result.details["ptq_accuracy"],
        "qat_val": result.accuracy,
        "ptq_test": test.details["ptq_accuracy"],
        "qat_test": test.accuracy,
        "qat_gain_test": test.details["qat_gain_over_ptq"],
        "exported_test": top1_accuracy(exported, task.data.test.labels),
        "exported_agreement": float(np.mean(exported.argmax(1) == simulated.argmax(1))),
        "seconds": result.seconds,
    }
    print(f"  int8 {_int8_line(row)}", flush=True)
    return row


def _int8_line(row: dict[str, Any]) -> str:
    return (
        f"{row['describe']:<48} val: fp32 {row['float_val']:.3f} PTQ {row['ptq_val']:.3f} QAT {row['qat_val']:.3f}  "
        f"test: PTQ {row['ptq_test']:.4f} QAT {row['qat_test']:.4f} (gain {row['qat_gain_test']:+.4f}), exported QAT "
        f"program {row['exported_test']:.4f}, agrees with the trained model on {row['exported_agreement']:.1%}  "
        f"{row['seconds']:.0f}s"
    )


def bootstrap_tau(values: np.ndarray, truth: np.ndarray, *, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """5th and 95th percentiles of Kendall's tau over candidates resampled with replacement."""
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(resamples):
        pick = rng.integers(0, len(values), size=len(values))
        tau = kendall_tau(values[pick], truth[pick])
        if np.isfinite(tau):
            taus.append(tau)
    return float(np.percentile(taus, 5)), float(np.percentile(taus, 95))


def terms_table(rows: list[dict[str, Any]], baseline: str = "logit-1ep") -> list[dict[str, Any]]:
    """Whether a distillation term helps at the same budget: mean val accuracy of each variant, and its mean
    paired difference from ``baseline`` with a bootstrap 90% interval (over candidates)."""
    rng = np.random.default_rng(0)
    base = np.array([row["scores"][f"{baseline}:val_accuracy"] for row in rows])
    table = []
    for variant in VARIANTS:
        values = np.array([row["scores"][f"{variant}:val_accuracy"] for row in rows])
        difference = values - base
        means = [float(np.mean(difference[rng.integers(0, len(rows), len(rows))])) for _ in range(1000)]
        table.append(
            {
                "variant": variant,
                "fidelity": VARIANTS[variant].fidelity,
                "mean_val_accuracy": float(np.mean(values)),
                "difference": float(np.mean(difference)),
                "difference_ci": (float(np.percentile(means, 5)), float(np.percentile(means, 95))),
            }
        )
    return table


def promotion_sweep(rows: list[dict[str, Any]], score: str) -> list[tuple[float, float, float, float]]:
    """For a few quantiles: the margin of ``score`` and what promotion with it does (as in fidelity_table)."""
    truth = np.array([row["scores"][TRUTH] for row in rows])
    params = np.array([row["scores"]["params"] for row in rows])
    values = np.array([row["scores"][score] for row in rows])
    true_front = promotion_mask(np.column_stack([truth, params]), maximize=(True, False), margins=(0.0, 0.0))
    sweep = []
    for quantile in (0.5, 0.75, 0.9, 1.0):
        margin = ladder_margin(values, truth, quantile=quantile)
        promoted = promotion_mask(np.column_stack([values, params]), maximize=(True, False), margins=(margin, 0.0))
        sweep.append((quantile, margin, float(np.mean(promoted)), float(np.sum(promoted & true_front) / np.sum(true_front))))
    return sweep


def fidelity_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per score: tau and rho against the truth, cost, margin, and what promotion with that margin would do.

    Promotion is simulated with two objectives, the score (maximized, with the score's margin) and the
    encoder's parameter count (minimized, no margin; a stand-in for latency, which this bench does not
    measure): ``promoted`` is the share of candidates :func:`promotion_mask` sends to rung 3,
    ``recall`` the share of the true front (rung-3 test accuracy vs parameters) among them, and
    ``ladder_cost`` the cost of this rung for every candidate plus rung 3 for the promoted, as a share
    of rung 3 for all. Margins are fitted on the same candidates (in-sample).
    """
    truth = np.array([row["scores"][TRUTH] for row in rows])
    params = np.array([row["scores"]["params"] for row in rows])
    final_cost = float(np.mean([row["seconds"][TRUTH] for row in rows]))
    true_front = promotion_mask(np.column_stack([truth, params]), maximize=(True, False), margins=(0.0, 0.0))
    table = []
    for name in rows[0]["scores"]:
        if name == TRUTH:
            continue
        values = np.array([row["scores"][name] for row in rows])
        finite = np.isfinite(values)
        if finite.sum() < 3:
            continue
        cost = float(np.mean([row["seconds"][name] for row in rows]))
        margin = ladder_margin(values[finite], truth[finite])
        promoted = promotion_mask(
            np.column_stack([np.where(finite, values, -np.inf), params]), maximize=(True, False), margins=(margin, 0.0)
        )
        table.append(
            {
                "score": name,
                "kendall": kendall_tau(values[finite], truth[finite]),
                "kendall_ci": bootstrap_tau(values[finite], truth[finite]),
                "spearman": spearman_rho(values[finite], truth[finite]),
                "seconds": cost,
                "cost_share": cost / final_cost,
                "margin": margin,
                "promoted": float(np.mean(promoted)),
                "recall": float(np.sum(promoted & true_front) / np.sum(true_front)),
                "ladder_cost": (cost + float(np.mean(promoted)) * final_cost) / final_cost,
            }
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=32)
    parser.add_argument("--final-epochs", type=int, default=None, help="rung 3 epochs (default: FINAL_DISTILLATION's)")
    parser.add_argument("--int8", type=int, default=3, help="candidates for the PTQ-vs-QAT section (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/proxy_fidelity.json"))
    parser.add_argument("--truth-seeds", type=int, default=1,
                        help="rung-3 training seeds averaged into the truth (default 1: seed 0 only)")
    args = parser.parse_args(argv)
    final_epochs = args.final_epochs or FINAL_DISTILLATION.epochs
    default_name = default_variant_name()

    task = build_task(seed=args.seed)
    rng = np.random.default_rng(args.seed)
    calibration = task.data.train.take(np.sort(rng.choice(len(task.data.train), size=256, replace=False)))
    space = TransformerEncoderSpace(task.teacher, calibration.inputs, calibration.labels)
    candidates = spread_candidates(space, args.candidates, args.seed)
    setup = {
        "candidates": args.candidates,
        "seed": args.seed,
        "final_epochs": final_epochs,
        "variants": {name: dataclasses.asdict(s) for name, s in VARIANTS.items()},
    }
    saved = json.loads(args.out.read_text()) if args.out.is_file() else {}
    done = {row["key"]: row for row in saved.get("rows", [])} if saved.get("setup") == setup else {}
    print(
        f"proxy fidelity: digits ViT, {len(candidates)} candidates, rung 3 = {final_epochs} epochs of distillation, "
        f"default rung 2 = {default_name} ({DEFAULT_DISTILLATION.fidelity}); {len(done)} reused from {args.out}",
        flush=True,
    )
    for name, settings in VARIANTS.items():
        print(f"  rung 2 variant {name:<22} = {settings.fidelity} (lr {settings.learning_rate:g}, batch {settings.batch_size})")
    rows = []
    started = time.perf_counter()
    for index, candidate in enumerate(candidates):
        row = done.get(candidate.key()) or evaluate_candidate(task, space, candidate, final_epochs)
        rows.append(row)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"setup": setup, "rows": rows}, indent=1) + "\n")
        scores = row["scores"]
        print(
            f"  [{index + 1:>2}/{len(candidates)} {time.perf_counter() - started:6.0f}s] {candidate.describe():<48} "
            f"zero-cost {scores['zero-cost:val_accuracy']:.3f}  {default_name} {scores[default_name + ':val_accuracy']:.3f}  "
            f"final val {scores['final:val_accuracy']:.3f} test {scores[TRUTH]:.3f}",
            flush=True,
        )

    truth_label = "held-out test accuracy"
    seed0_rows = rows  # what --out keeps (the truth there is always seed 0's), and what the int8 picks follow
    if args.truth_seeds > 1:
        seeds_file = args.out.with_suffix(".truth-seeds.json")
        seeds_setup = setup  # a seed's figures do not depend on K: a run with a larger K reuses them
        kept = json.loads(seeds_file.read_text()) if seeds_file.is_file() else {}
        kept_setup = {k: v for k, v in kept.get("setup", {}).items() if k != "truth_seeds"}
        seeds: dict[str, dict[str, dict[str, float]]] = kept.get("seeds", {}) if kept_setup == seeds_setup else {}
        print(f"\nrung 3 again with training seeds 1..{args.truth_seeds - 1} ({seeds_file}):", flush=True)
        for index, candidate in enumerate(candidates):
            figures = seeds.setdefault(candidate.key(), {})
            for seed in range(1, args.truth_seeds):
                if str(seed) not in figures:
                    figures[str(seed)] = final_seed_figures(task, space, candidate, final_epochs, seed)
                    seeds_file.write_text(json.dumps({"setup": seeds_setup, "seeds": seeds}, indent=1) + "\n")
            row_test = next(r for r in rows if r["key"] == candidate.key())["scores"][TRUTH]
            print(f"  [{index + 1:>2}/{len(candidates)} {time.perf_counter() - started:6.0f}s] {candidate.describe():<48} "
                  f"test seed 0 {row_test:.3f}  " + "  ".join(f"seed {k} {v['test']:.3f}" for k, v in sorted(figures.items()) if int(k) < args.truth_seeds),
                  flush=True)
        used = {key: {k: v for k, v in figures.items() if int(k) < args.truth_seeds} for key, figures in seeds.items()}
        rows = with_mean_truth(rows, used)
        truth_label = f"mean held-out test accuracy over {args.truth_seeds} training seeds"

    table = fidelity_table(rows)
    print(f"\nEach score against rung 3 ({truth_label} after {final_epochs} epochs), {len(rows)} candidates:")
    print(
        f"{'score':<36} {'kendall':>7} {'90% interval':>13} {'spearman':>8} {'s/cand':>7} {'cost/r3':>7} {'margin':>8} "
        f"{'promoted':>8} {'recall':>6} {'ladder':>6}"
    )
    for entry in table:
        mark = "  <- default" if entry["score"] == f"{default_name}:val_accuracy" else ""
        low, high = entry["kendall_ci"]
        print(
            f"{entry['score']:<36} {entry['kendall']:>7.3f} {f'[{low:.2f}, {high:.2f}]':>13} {entry['spearman']:>8.3f} {entry['seconds']:>7.2f} "
            f"{entry['cost_share']:>7.3f} {entry['margin']:>8.4g} {entry['promoted']:>8.2f} {entry['recall']:>6.2f} "
            f"{entry['ladder_cost']:>6.2f}{mark}"
        )
    print("columns: 90% interval = bootstrap over candidates; cost/r3 = cost per candidate as a share of rung 3's; "
          "margin = ladder_margin (score units);\n  promoted/recall/ladder = promotion simulated with that margin "
          "(see fidelity_table); final:val_accuracy vs test is the noise ceiling of any score measured on val")
    print(f"\nPromotion from the default rung ({default_name}:val_accuracy) by the quantile of pairwise errors its margin covers:")
    for quantile, margin, promoted, recall in promotion_sweep(rows, f"{default_name}:val_accuracy"):
        print(f"  quantile {quantile:.2f}: margin {margin:.4f}  promoted {promoted:.2f}  true front recalled {recall:.2f}")
    print("\nDo the distillation terms help? Val accuracy after each rung-2 variant, and its paired difference "
          "from logit-1ep (same lr and budget):")
    for entry in terms_table(rows):
        low, high = entry["difference_ci"]
        print(f"  {entry['variant']:<22} {entry['fidelity']:<30} mean val {entry['mean_val_accuracy']:.4f}  "
              f"difference {entry['difference']:+.4f} [{low:+.4f}, {high:+.4f}]")
    truth = np.array([row["scores"][TRUTH] for row in rows])
    print(f"rung 3: {np.mean([row['seconds'][TRUTH] for row in rows]):.1f} s per candidate; test accuracy "
          f"{truth.min():.3f}..{truth.max():.3f}")

    int8: list[dict[str, Any]] = []
    if args.int8 > 0:
        print(f"\nint8, rung 3 = {final_epochs} fp32 epochs then QAT with distillation vs plain PTQ (same quantizers):")
        order = np.argsort([-row["scores"][TRUTH] for row in seed0_rows])
        picks = [candidates[i] for i in order[:: max(1, len(order) // args.int8)][: args.int8]]
        cached = saved.get("int8", []) if done else []
        if [row["key"] for row in cached] == [c.key() for c in picks]:
            int8 = cached
            for row in int8:
                print(f"  int8 {_int8_line(row)}")
        else:
            int8 = int8_rows(task, space, picks, final_epochs)
        gains = [row["qat_gain_test"] for row in int8]
        print(f"  QAT gain over PTQ on test: mean {np.mean(gains):+.4f} (min {min(gains):+.4f}, max {max(gains):+.4f})")
        args.out.write_text(json.dumps({"setup": setup, "rows": seed0_rows, "int8": int8}, indent=1) + "\n")

    by_score = {entry["score"]: entry for entry in table}
    default = by_score[f"{default_name}:val_accuracy"]
    zero = by_score["zero-cost:val_accuracy"]
    best_cheap = max(
        (e for e in table if e["cost_share"] < TARGET_COST_SHARE and not e["score"].startswith("final")),
        key=lambda e: e["kendall"],
    )
    met = default["kendall"] >= TARGET_TAU and default["cost_share"] < TARGET_COST_SHARE
    int8_gain = f" qat_gain_over_ptq_test={np.mean([r['qat_gain_test'] for r in int8]):+.4f}" if int8 else ""
    print(
        f"RESULT kendall_default={default['kendall']:.3f} spearman_default={default['spearman']:.3f} "
        f"default={default_name} cost_share_default={default['cost_share']:.3f} margin_default={default['margin']:.4f} "
        f"kendall_zero_cost={zero['kendall']:.3f} best_cheap={best_cheap['score']}:{best_cheap['kendall']:.3f} "
        f"candidates={len(rows)} truth_seeds={args.truth_seeds} target_met={'yes' if met else 'no'}{int8_gain}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
