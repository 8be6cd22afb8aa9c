"""Benchmark: how long one candidate takes to become a deployable model, for the ViT and BERT examples.

For each shipped example (digits-vit, digits-bert) and three candidate sizes (the teacher's size, about
half, about a quarter), it times, ``--repeats`` times each:

- materialize: cut the teacher into the student (importance is measured once beforehand, reported apart);
- export: ``paddle.jit.save`` of the student (fp32 program);
- convert: Paddle Lite's ``opt`` for ``x86`` and for ``arm``, through the real Lite worker.

and once per example the int8 post-training quantization (PaddleSlim, ``avg``, 256 calibration samples)
of the full-size candidate plus its ``arm`` conversion, with the validation accuracy of the fp32 and the
int8 program (simulated quantization in Paddle). It prints a table of medians (seconds) and, as
its last line, ``RESULT materialize_s=<median> export_s=<median> convert_s=<median> total_s=<median>``
over the six example/size cells.

Run: ``.venv/bin/python bench/space_materialize.py [--repeats 3]``. Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import zlib  # noqa: F401  (before Paddle: see devicefit.spaces._paddle)
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXAMPLES = ("digits-vit", "digits-bert")
CALIBRATION_SAMPLES = 256


def _sizes(layout: Any) -> dict[str, Any]:
    """Three candidates of the example: the teacher's size, about half, about a quarter of its width/depth."""
    from devicefit.spaces import Candidate

    n, heads, ffn, hidden = layout.num_layers, layout.num_heads, layout.ffn_size, layout.hidden_size
    full = layout.full_candidate()
    half = Candidate(tuple(range(n)), (max(1, heads // 2),) * n, (ffn // 2,) * n, hidden=hidden * 3 // 4)
    quarter = Candidate(tuple(range(max(1, n // 2))), (max(1, heads // 2),) * max(1, n // 2), (ffn // 4,) * max(1, n // 2), hidden=hidden // 2)
    return {"full": full, "half": half, "quarter": quarter}


def _accuracy(logits: Any, labels: Any) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def _timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its table and RESULT line; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per cell (default 3)")
    args = parser.parse_args(argv)

    from devicefit.spaces._paddle import import_paddle

    import_paddle()
    from devicefit.evaluators._lite_client import LiteWorker
    from devicefit.examples import load_example
    from devicefit.spaces import Candidate, TransformerSpace, export_inference_model, program_logits
    from devicefit.spaces._precision import FP32_DIR

    rows = []
    cells: dict[str, list[float]] = {"materialize": [], "export": [], "convert": [], "total": []}
    extra = []
    with tempfile.TemporaryDirectory(prefix="devicefit-bench-") as scratch, LiteWorker() as lite:
        lite.hello()
        root = Path(scratch)
        for example in EXAMPLES:
            task = load_example(example)
            calibration = task.data.train.take(slice(0, CALIBRATION_SAMPLES))
            space_s, space = _timed(lambda: TransformerSpace(task.teacher, calibration.inputs, calibration.labels))
            importance_s, _ = _timed(lambda: space.importance)
            extra.append(f"{example}: layout + self-check {space_s:.2f} s, importance {importance_s:.2f} s ({space.layout.family})")
            for size, candidate in _sizes(space.layout).items():
                timings: dict[str, list[float]] = {"materialize": [], "export": [], "x86": [], "arm": []}
                nb_bytes = 0
                for repeat in range(args.repeats):
                    folder = root / example / size / str(repeat)
                    seconds, student = _timed(lambda: space.materialize(candidate))
                    timings["materialize"].append(seconds)
                    seconds, artifact = _timed(lambda: export_inference_model(student, task.input_spec, folder))
                    timings["export"].append(seconds)
                    for places in ("x86", "arm"):
                        seconds, result = _timed(lambda: lite.convert(artifact.model_file, artifact.params_file, places, folder / places))
                        timings[places].append(seconds)
                        nb_bytes = result.total_bytes if places == "arm" else nb_bytes
                medians = {name: statistics.median(values) for name, values in timings.items()}
                convert = medians["x86"] + medians["arm"]
                total = medians["materialize"] + medians["export"] + convert
                for name, value in (("materialize", medians["materialize"]), ("export", medians["export"]), ("convert", convert), ("total", total)):
                    cells[name].append(value)
                parameters = space.layout.parameter_count(candidate)
                rows.append((example, size, candidate.key(), parameters, medians, convert, total, nb_bytes))
            full = space.full_candidate()
            student = space.materialize(full)
            int8 = Candidate(full.layers, full.heads, full.ffn, "int8", calibration="avg")
            ptq_s, artifact = _timed(lambda: space.deploy(student, int8, task.input_spec, root / example / "int8"))
            arm_s, result = _timed(lambda: lite.convert(artifact.model_file, artifact.params_file, "arm", root / example / "int8" / "arm"))
            val = task.data.val
            fp32_accuracy = _accuracy(program_logits(artifact.directory / FP32_DIR, val.inputs), val.labels)
            int8_accuracy = _accuracy(program_logits(artifact.scoring_dir, val.inputs), val.labels)
            extra.append(
                f"{example}: int8 (avg, {CALIBRATION_SAMPLES} samples) export + PTQ {ptq_s:.2f} s, arm convert {arm_s:.2f} s, "
                f"arm .nb {result.total_bytes} bytes; val accuracy fp32 {fp32_accuracy:.4f} -> int8 {int8_accuracy:.4f}"
            )

    header = f"{'example':<12} {'size':<8} {'candidate':<34} {'params':>8} {'materialize':>11} {'export':>8} {'x86':>7} {'arm':>7} {'total':>7} {'arm .nb':>9}"
    print(f"median of {args.repeats} runs, seconds")
    print(header)
    print("-" * len(header))
    for example, size, key, parameters, medians, convert, total, nb_bytes in rows:
        print(
            f"{example:<12} {size:<8} {key:<34} {parameters:>8} {medians['materialize']:>11.3f} {medians['export']:>8.3f} "
            f"{medians['x86']:>7.3f} {medians['arm']:>7.3f} {total:>7.3f} {nb_bytes:>9}"
        )
    for line in extra:
        print(line)
    summary = " ".join(f"{name}_s={statistics.median(values):.3f}" for name, values in cells.items())
    print(f"RESULT {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
