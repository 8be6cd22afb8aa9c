"""Train the digits-ViT teacher and write ``teacher.pdparams`` and ``teacher.json``.

Usage::

    python -m devicefit.examples.digits_vit.train_teacher [--epochs N] [--seed S] [--out DIR]

Training sees the training split only. The validation split is printed for monitoring; the test split is
evaluated once, after training, for the report in ``teacher.json``. Nothing is chosen from either: the
weights written are those of the last epoch. With the same seed on the same machine, the run is
deterministic (``paddle.seed`` for initialization and dropout, a NumPy ``Generator`` for shuffling and
augmentation).

The recipe: AdamW (lr 1e-3, weight decay 0.05 on weight matrices), batch 32, linear warm-up for 5 epochs
then cosine decay to 0 over 100 epochs, dropout 0.2, label smoothing 0.1. About 5 minutes on 2 CPU cores.

Measured with seed 0 (validation accuracy, on which the choice was made; test in brackets): batch 64,
94.5% (94.2%); batch 64 with random one-pixel shifts, 62.5% (68.5%): on 8x8 digits that fill the frame,
a shift crops strokes and moves them across the 2x2 patch grid, and the model underfits; batch 32, 95.0%
(97.0%), the default. Seed 1 with the default recipe: 95.5% (96.5%). The shift augmentation stays
available (``--max-shift``) but is off.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from devicefit.examples.digits_vit.data import DigitsSplits, Split, load_digits_splits
from devicefit.examples.digits_vit.model import (
    TEACHER_DIR,
    TEACHER_METADATA_NAME,
    TEACHER_WEIGHTS_NAME,
    DigitsViT,
    ViTConfig,
    accuracy,
    paddle,
)


@dataclass(frozen=True)
class TrainingRecipe:
    """Hyperparameters of a teacher training run.

    Attributes:
        epochs: Passes over the training split.
        batch_size: Images per optimizer step.
        learning_rate: Peak learning rate of AdamW.
        weight_decay: AdamW decoupled weight decay, applied to weight matrices only.
        warmup_epochs: Epochs of linear warm-up from 0 to the peak learning rate.
        dropout: Dropout rate of the model during training.
        label_smoothing: Label smoothing of the cross-entropy loss.
        max_shift: Largest random shift of an image, in pixels, per axis (0 disables augmentation).
        seed: Seed of initialization, dropout, shuffling and augmentation.
        split_seed: Seed of the train/val/test split (keep 0: the rest of the project uses it).
    """

    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 5
    dropout: float = 0.2
    label_smoothing: float = 0.1
    max_shift: int = 0
    seed: int = 0
    split_seed: int = 0


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Return the learning-rate multiplier at ``step``: linear warm-up, then cosine decay to 0.

    Args:
        step: Optimizer step, counted from 0.
        warmup_steps: Steps of linear warm-up.
        total_steps: Steps of the whole run.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def random_shift(
    images: np.ndarray, max_shift: int, background: float, rng: np.random.Generator
) -> np.ndarray:
    """Shift each image by a random whole number of pixels per axis, filling with the background value.

    Args:
        images: Float32 array ``[N, C, H, W]``.
        max_shift: Largest shift per axis, in pixels; shifts are drawn uniformly from ``-max_shift..max_shift``.
        background: Value of an empty (blank) pixel after standardization.
        rng: Source of the shifts.

    Returns:
        A new float32 array of the same shape.
    """
    if max_shift <= 0:
        return images.copy()
    _, _, height, width = images.shape
    pad = max_shift
    padded = np.pad(
        images, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant", constant_values=background
    )
    shifts = rng.integers(-max_shift, max_shift + 1, size=(len(images), 2))
    shifted = np.empty_like(images)
    for index, (dy, dx) in enumerate(shifts):
        top, left = pad + dy, pad + dx
        shifted[index] = padded[index, :, top : top + height, left : left + width]
    return shifted


def _decayed_parameter_names(model: DigitsViT) -> set[str]:
    """Names of the parameters that get weight decay: weight matrices and the conv kernel."""
    excluded = {p.name for p in (getattr(model, "cls_token", None), model.pos_embed) if p is not None}
    return {
        param.name
        for param in model.parameters()
        if len(param.shape) >= 2 and param.name not in excluded
    }


def build_optimizer(
    model: DigitsViT, recipe: TrainingRecipe, steps_per_epoch: int
) -> tuple[paddle.optimizer.Optimizer, paddle.optimizer.lr.LRScheduler]:
    """Build AdamW with a per-step warm-up + cosine schedule.

    Returns:
        The optimizer and its learning-rate scheduler (call ``scheduler.step()`` after each step).
    """
    warmup_steps = recipe.warmup_epochs * steps_per_epoch
    total_steps = recipe.epochs * steps_per_epoch
    scheduler = paddle.optimizer.lr.LambdaDecay(
        learning_rate=recipe.learning_rate,
        lr_lambda=lambda step: warmup_cosine_factor(step, warmup_steps, total_steps),
    )
    decayed = _decayed_parameter_names(model)
    optimizer = paddle.optimizer.AdamW(
        learning_rate=scheduler,
        parameters=model.parameters(),
        weight_decay=recipe.weight_decay,
        apply_decay_param_fun=lambda name: name in decayed,
    )
    return optimizer, scheduler


def train_one_epoch(
    model: DigitsViT,
    optimizer: paddle.optimizer.Optimizer,
    scheduler: paddle.optimizer.lr.LRScheduler,
    train: Split,
    recipe: TrainingRecipe,
    background: float,
    rng: np.random.Generator,
) -> float:
    """Run one epoch over the shuffled, augmented training split.

    Returns:
        The mean training loss of the epoch (with label smoothing and dropout).
    """
    model.train()
    order = rng.permutation(len(train.labels))
    images = random_shift(train.images[order], recipe.max_shift, background, rng)
    labels = train.labels[order]
    total_loss = 0.0
    for start in range(0, len(labels), recipe.batch_size):
        batch_images = paddle.to_tensor(images[start : start + recipe.batch_size])
        batch_labels = paddle.to_tensor(labels[start : start + recipe.batch_size])
        logits = model(batch_images)
        loss = paddle.nn.functional.cross_entropy(
            logits, batch_labels, label_smoothing=recipe.label_smoothing
        )
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        scheduler.step()
        total_loss += float(loss) * len(batch_labels)
    return total_loss / len(labels)


def train_teacher(
    recipe: TrainingRecipe,
    splits: DigitsSplits,
    config: ViTConfig | None = None,
    log: Callable[[str], None] = print,
    log_every: int = 5,
) -> tuple[DigitsViT, float]:
    """Train a teacher on ``splits.train`` and return it in eval mode with the training time.

    Args:
        recipe: Hyperparameters.
        splits: The data; only ``train`` is learned from, ``val`` is logged.
        config: Model shape; defaults to :class:`ViTConfig` with the recipe's dropout.
        log: Where progress lines go.
        log_every: Print a progress line every this many epochs (and after the first and last).

    Returns:
        The trained model (in eval mode) and the training time in seconds.
    """
    paddle.seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    model_config = config if config is not None else ViTConfig(dropout=recipe.dropout)
    model = DigitsViT(model_config)
    steps_per_epoch = math.ceil(len(splits.train.labels) / recipe.batch_size)
    optimizer, scheduler = build_optimizer(model, recipe, steps_per_epoch)
    background = (0.0 - splits.pixel_mean) / splits.pixel_std
    started = time.perf_counter()
    for epoch in range(1, recipe.epochs + 1):
        loss = train_one_epoch(model, optimizer, scheduler, splits.train, recipe, background, rng)
        if epoch == 1 or epoch % log_every == 0 or epoch == recipe.epochs:
            model.eval()
            val_acc = accuracy(model, splits.val.images, splits.val.labels)
            log(
                f"epoch {epoch:4d}/{recipe.epochs}  loss {loss:.4f}  val acc {val_acc:.4f}  "
                f"lr {scheduler.get_lr():.2e}  elapsed {time.perf_counter() - started:6.1f} s"
            )
    model.eval()
    return model, time.perf_counter() - started


def teacher_metadata(
    model: DigitsViT, recipe: TrainingRecipe, splits: DigitsSplits, training_seconds: float
) -> dict[str, Any]:
    """Build the content of ``teacher.json``: configuration, recipe, accuracies and provenance."""
    model.eval()
    accuracies = {
        name: accuracy(model, split.images, split.labels)
        for name, split in (("train", splits.train), ("val", splits.val), ("test", splits.test))
    }
    return {
        "config": model.config.to_dict(),
        "seed": recipe.seed,
        "split_seed": recipe.split_seed,
        "epochs": recipe.epochs,
        "recipe": asdict(recipe),
        "split_sizes": {
            "train": len(splits.train.labels),
            "val": len(splits.val.labels),
            "test": len(splits.test.labels),
        },
        "accuracy": accuracies,
        "num_parameters": int(sum(int(np.prod(p.shape)) for p in model.parameters())),
        "training_seconds": round(training_seconds, 1),
        "paddle_version": paddle.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def save_teacher(model: DigitsViT, metadata: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``teacher.pdparams`` and ``teacher.json`` into ``out_dir``.

    Returns:
        The paths of the weights and of the metadata.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / TEACHER_WEIGHTS_NAME
    metadata_path = out_dir / TEACHER_METADATA_NAME
    paddle.save(model.state_dict(), str(weights_path))
    metadata_path.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return weights_path, metadata_path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    defaults = TrainingRecipe()
    parser = argparse.ArgumentParser(
        prog="python -m devicefit.examples.digits_vit.train_teacher",
        description="Train the digits-ViT teacher on the training split and save it.",
    )
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--out", type=Path, default=TEACHER_DIR, help="output folder (default: the example's folder)"
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument(
        "--max-shift",
        type=int,
        default=defaults.max_shift,
        help="random shift augmentation, pixels per axis (0: none, the default)",
    )
    parser.add_argument("--log-every", type=int, default=5, help="epochs between progress lines")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Train, evaluate and save the teacher; return the process exit code."""
    args = parse_args(argv)
    recipe = replace(
        TrainingRecipe(),
        epochs=args.epochs,
        seed=args.seed,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        max_shift=args.max_shift,
    )
    splits = load_digits_splits(recipe.split_seed)
    print(
        f"training the digits-ViT teacher: {len(splits.train.labels)} train / "
        f"{len(splits.val.labels)} val images, recipe {asdict(recipe)}",
        flush=True,
    )
    model, seconds = train_teacher(
        recipe, splits, log=lambda line: print(line, flush=True), log_every=args.log_every
    )
    metadata = teacher_metadata(model, recipe, splits, seconds)
    weights_path, metadata_path = save_teacher(model, metadata, Path(args.out))
    acc = metadata["accuracy"]
    print(
        f"done in {seconds:.0f} s: train {acc['train']:.4f}  val {acc['val']:.4f}  "
        f"test {acc['test']:.4f}\nwrote {weights_path}\nwrote {metadata_path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
