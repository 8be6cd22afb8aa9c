"""Where task data comes from: numpy arrays, a ``paddle.io.Dataset``, or a CSV or NPZ file.

Every source ends in :func:`split_arrays` (unless the file brings its own splits), which splits the samples
into train/validation/test, stratified by class and fixed by a seed: the same seed gives the same splits in
every run and on every machine, and the three splits are disjoint. Nothing here imports Paddle.

File layouts
------------
NPZ (``numpy.savez``), one of (an optional scalar ``num_classes`` array sets the number of classes):
  - unsplit: ``labels`` (integer ``[N]``) and the model's inputs as ``inputs`` (one input) or ``inputs_0``,
    ``inputs_1``, ... (one array per ``forward`` argument, in order, each ``[N, ...]``). Split by the seed.
  - already split: ``train_labels``, ``val_labels``, ``test_labels`` and, for each split, ``<split>_inputs``
    or ``<split>_inputs_0``, ``<split>_inputs_1``, ... Used as they are.

CSV (comma-separated, UTF-8), one sample per row, a header row first:
  - a ``label`` column (integer class ids ``0 .. C-1``; the name can be changed with ``label_column``);
  - optionally a ``split`` column with ``train``, ``val`` or ``test`` in each row: the file's own split,
    used as is (otherwise the rows are split by the seed);
  - every other column is a number: the features of the one model input, in column order, read as
    float32 ``[N, F]`` and reshaped to ``[N, *sample_shape]`` when ``sample_shape`` is given (e.g.
    ``(1, 8, 8)`` for 64 pixel columns).

Errors name the array, the file and line, or the column, and say what was expected (:class:`DataError`).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from devicefit.evaluators._data import SPLIT_NAMES, DataError, Split, TaskData

DEFAULT_VAL_FRACTION = 0.15
DEFAULT_TEST_FRACTION = 0.2


def _largest_remainder(counts: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to ``counts`` that sum to ``total`` (ties go to the lower index)."""
    if counts.sum() == 0:
        return np.zeros_like(counts)
    exact = counts * (total / counts.sum())
    taken = np.floor(exact).astype(int)
    remainder = exact - taken
    order = np.argsort(-remainder, kind="stable")
    taken[order[: total - int(taken.sum())]] += 1
    return np.minimum(taken, counts)


def stratified_split_indices(
    labels: np.ndarray, *, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint train/val/test indices into ``labels``, stratified by class and fixed by ``seed``.

    The test split gets ``round(N * test_fraction)`` samples and the validation split
    ``round(N * val_fraction)``, shared out between classes in proportion to their sizes; each class's
    samples are drawn in an order given by a ``numpy.random.Generator`` seeded with ``seed``.

    Args:
        labels: Integer class of every sample, ``[N]``.
        val_fraction: Share of the samples for validation, in (0, 1).
        test_fraction: Share of the samples for the held-out test, in (0, 1); together with
            ``val_fraction`` below 1.
        seed: Seed of the split.

    Returns:
        The train, val and test indices, each sorted ascending.

    Raises:
        DataError: A fraction is out of range, or a split would be empty.
    """
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in (0, 1) with a sum below 1"
        )
    labels = np.asarray(labels)
    total = labels.shape[0]
    classes, class_of = np.unique(labels, return_inverse=True)
    rng = np.random.default_rng(seed)
    members = [rng.permutation(np.flatnonzero(class_of == c)) for c in range(len(classes))]
    sizes = np.array([len(m) for m in members])
    test_counts = _largest_remainder(sizes, int(round(total * test_fraction)))
    val_counts = _largest_remainder(sizes - test_counts, int(round(total * val_fraction)))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLIT_NAMES}
    for indices, n_test, n_val in zip(members, test_counts, val_counts):
        parts["test"].append(indices[:n_test])
        parts["val"].append(indices[n_test : n_test + n_val])
        parts["train"].append(indices[n_test + n_val :])
    result = {name: np.sort(np.concatenate(chunks)).astype(np.int64) for name, chunks in parts.items()}
    for name in SPLIT_NAMES:
        if result[name].size == 0:
            raise DataError(
                f"the {name} split would be empty: {total} samples with val_fraction {val_fraction} and "
                f"test_fraction {test_fraction}"
            )
    return result["train"], result["val"], result["test"]


def _as_input_tuple(inputs: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    if isinstance(inputs, np.ndarray):
        return (inputs,)
    arrays = tuple(np.asarray(x) for x in inputs)
    if not arrays:
        raise DataError("inputs: expected one array per model input, got none")
    return arrays


def _check_labels(labels: np.ndarray, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(f"{name} must be 1-D (one class id per sample), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
            return labels.astype(np.int64)
        raise DataError(f"{name} must hold integer class ids, got dtype {labels.dtype}")
    return labels.astype(np.int64, copy=False)


def split_arrays(
    inputs: np.ndarray | Sequence[np.ndarray],
    labels: np.ndarray,
    *,
    num_classes: int | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> TaskData:
    """Split whole-data-set arrays into a :class:`TaskData` (see :func:`stratified_split_indices`).

    Args:
        inputs: The model's inputs: one array, or one per ``forward`` argument, each ``[N, ...]``.
        labels: Integer class ids ``[N]`` (``[N, 1]`` and whole-number floats are accepted).
        num_classes: Number of classes; by default the largest label plus one.
        val_fraction: Share of the samples for validation.
        test_fraction: Share of the samples for the held-out test.
        seed: Seed of the split.

    Raises:
        DataError: Lengths disagree, labels are not class ids, a split would be empty, or a label is
            outside ``[0, num_classes)``; the message names the array.
    """
    arrays = _as_input_tuple(inputs)
    labels = _check_labels(labels, "labels")
    for index, array in enumerate(arrays):
        if array.ndim == 0 or array.shape[0] != labels.shape[0]:
            samples = array.shape[0] if array.ndim else "no"
            raise DataError(f"inputs[{index}] has {samples} samples but labels has {labels.shape[0]}")
    if labels.size == 0:
        raise DataError("labels is empty: there are no samples to split")
    if labels.min() < 0:
        raise DataError(f"labels must be class ids >= 0, found {int(labels.min())}")
    classes = int(labels.max()) + 1 if num_classes is None else num_classes
    train, val, test = stratified_split_indices(labels, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    return TaskData(
        train=Split(tuple(a[train] for a in arrays), labels[train]),
        val=Split(tuple(a[val] for a in arrays), labels[val]),
        test=Split(tuple(a[test] for a in arrays), labels[test]),
        num_classes=classes,
    )


def _length(dataset: Any) -> int | None:
    """``len(dataset)``, or ``None`` for a dataset without one (``paddle.io.IterableDataset`` raises)."""
    try:
        return len(dataset)
    except (TypeError, RuntimeError, NotImplementedError):
        return None


def arrays_from_dataset(dataset: Any, *, max_samples: int | None = None) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Read a dataset whose items are ``(input_0, ..., input_k, label)`` into stacked arrays.

    A map-style dataset (``len`` and integer indexing, such as ``paddle.io.Dataset``) is read in index
    order; an iterable one (``paddle.io.IterableDataset``) needs ``max_samples``, which bounds the read.
    A label may be a scalar or a one-element array.

    Raises:
        DataError: Items of different arity or shape, an iterable dataset without ``max_samples``, or no items.
    """
    length = _length(dataset)
    if length is not None and hasattr(dataset, "__getitem__"):
        count = length if max_samples is None else min(length, max_samples)
        items = (dataset[i] for i in range(count))
    elif hasattr(dataset, "__iter__"):
        if max_samples is None:
            raise DataError("dataset is iterable without a length: pass max_samples to bound how much is read")
        count = max_samples
        items = iter(dataset)
    else:
        raise DataError(f"dataset must be a map-style or iterable dataset, got {type(dataset).__name__}")
    fields: list[list[np.ndarray]] = []
    for position, item in zip(range(count), items):
        parts = list(item) if isinstance(item, (tuple, list)) else [item]
        if len(parts) < 2:
            raise DataError(f"dataset item {position} has {len(parts)} field(s); expected (input..., label)")
        if not fields:
            fields = [[] for _ in parts]
        if len(parts) != len(fields):
            raise DataError(f"dataset item {position} has {len(parts)} fields; item 0 had {len(fields)}")
        for field, value in zip(fields, parts):
            field.append(np.asarray(value))
    if not fields:
        raise DataError("dataset is empty")
    stacked = []
    for index, field in enumerate(fields[:-1]):
        shapes = {a.shape for a in field}
        if len(shapes) != 1:
            raise DataError(f"dataset input {index} has items of different shapes: {sorted(shapes)[:3]}")
        stacked.append(np.stack(field))
    for position, value in enumerate(fields[-1]):
        if value.size != 1:
            raise DataError(f"dataset item {position}: the last field (the label) has shape {value.shape}; expected one class id")
    labels = _check_labels(np.array([value.reshape(-1)[0] for value in fields[-1]]), "dataset labels")
    return tuple(stacked), labels


def from_dataset(
    dataset: Any,
    *,
    num_classes: int | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
    max_samples: int | None = None,
) -> TaskData:
    """A :class:`TaskData` from a ``paddle.io.Dataset`` (see :func:`arrays_from_dataset`, :func:`split_arrays`)."""
    inputs, labels = arrays_from_dataset(dataset, max_samples=max_samples)
    return split_arrays(
        inputs, labels, num_classes=num_classes, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )


def _npz_inputs(archive: Any, prefix: str) -> tuple[np.ndarray, ...] | None:
    if prefix + "inputs" in archive:
        return (archive[prefix + "inputs"],)
    arrays = []
    for index in range(1024):
        name = f"{prefix}inputs_{index}"
        if name not in archive:
            break
        arrays.append(archive[name])
    return tuple(arrays) or None


def load_npz(
    path: str | Path,
    *,
    num_classes: int | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> TaskData:
    """A :class:`TaskData` from an NPZ file (layout in the module docstring).

    A scalar ``num_classes`` array in the file overrides the ``num_classes`` argument.

    Raises:
        DataError: An unreadable file, missing arrays (named), or any check of :func:`split_arrays` /
            :class:`TaskData`.
    """
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    with archive:
        names = set(archive.files)
        if "num_classes" in names:
            num_classes = int(archive["num_classes"])
        if "labels" in names:
            inputs = _npz_inputs(archive, "")
            if inputs is None:
                raise DataError(f"{path}: has 'labels' but no 'inputs' (or 'inputs_0', 'inputs_1', ...)")
            return split_arrays(
                inputs, archive["labels"], num_classes=num_classes, val_fraction=val_fraction,
                test_fraction=test_fraction, seed=seed,
            )
        if not any(f"{s}_labels" in names for s in SPLIT_NAMES):
            raise DataError(
                f"{path}: expected 'labels' and 'inputs' (split by the seed), or 'train_labels', 'val_labels' and "
                f"'test_labels' with their inputs; found {', '.join(sorted(names))}"
            )
        splits = {}
        for split_name in SPLIT_NAMES:
            if f"{split_name}_labels" not in names:
                raise DataError(f"{path}: no '{split_name}_labels' array (found: {', '.join(sorted(names))})")
            inputs = _npz_inputs(archive, f"{split_name}_")
            if inputs is None:
                raise DataError(f"{path}: has '{split_name}_labels' but no '{split_name}_inputs' (or '_inputs_0', ...)")
            splits[split_name] = Split(inputs, _check_labels(archive[f"{split_name}_labels"], f"{split_name}_labels"))
    largest = max(int(s.labels.max()) for s in splits.values() if len(s))
    return TaskData(num_classes=num_classes or largest + 1, **splits)


def load_csv(
    path: str | Path,
    *,
    label_column: str = "label",
    sample_shape: Sequence[int] | None = None,
    num_classes: int | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> TaskData:
    """A :class:`TaskData` from a CSV file (layout in the module docstring).

    Raises:
        DataError: No label column, a cell that is not a number (with its line and column), rows of
            different length, features that do not fit ``sample_shape``, or any check of
            :func:`split_arrays` / :class:`TaskData`.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: the file is empty (a header row is expected)")
        header = [name.strip() for name in header]
        if label_column not in header:
            raise DataError(f"{path}: no '{label_column}' column in the header {header}")
        label_at = header.index(label_column)
        split_at = header.index("split") if "split" in header else None
        feature_at = [i for i in range(len(header)) if i not in (label_at, split_at)]
        if not feature_at:
            raise DataError(f"{path}: no feature columns besides '{label_column}'")
        features, labels, split_of = [], [], []
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{path} line {line}: {len(row)} cells, the header has {len(header)}")
            try:
                features.append([float(row[i]) for i in feature_at])
            except ValueError:
                bad = next(i for i in feature_at if not _is_number(row[i]))
                raise DataError(f"{path} line {line}: column '{header[bad]}' is not a number: {row[bad]!r}") from None
            label_text = row[label_at].strip()
            if not _is_number(label_text) or float(label_text) != int(float(label_text)):
                raise DataError(f"{path} line {line}: '{label_column}' must be an integer class id, got {label_text!r}")
            labels.append(int(float(label_text)))
            if split_at is not None:
                split_of.append(row[split_at].strip())
    if not labels:
        raise DataError(f"{path}: no data rows after the header")
    matrix = np.asarray(features, dtype=np.float32)
    if sample_shape is not None:
        shape = tuple(int(s) for s in sample_shape)
        if int(np.prod(shape)) != matrix.shape[1]:
            raise DataError(f"{path}: {matrix.shape[1]} feature columns do not fill sample_shape {shape}")
        matrix = matrix.reshape((matrix.shape[0], *shape))
    label_array = np.asarray(labels, dtype=np.int64)
    if split_at is None:
        return split_arrays(
            matrix, label_array, num_classes=num_classes, val_fraction=val_fraction, test_fraction=test_fraction,
            seed=seed,
        )
    where = np.asarray(split_of)
    unknown = sorted(set(split_of) - set(SPLIT_NAMES))
    if unknown:
        raise DataError(f"{path}: column 'split' must be train, val or test, found {unknown[:3]}")
    splits = {name: Split((matrix[where == name],), label_array[where == name]) for name in SPLIT_NAMES}
    return TaskData(num_classes=num_classes or int(label_array.max()) + 1, **splits)


def reshape_to_input_spec(data: TaskData, input_spec: Sequence[Any]) -> TaskData:
    """Reshape flat feature rows (a CSV's ``[N, F]``) to a single-input model's per-sample shape.

    When the model takes one input whose spec fixes every axis but the batch, and each split's one input
    array is ``[N, F]`` with ``F`` the product of those axes, the arrays are reshaped to ``[N, *axes]``.
    Anything else is returned unchanged (:func:`~devicefit.evaluators.check_input_spec` then says what
    does not fit).
    """
    if len(input_spec) != 1 or len(data.train.inputs) != 1:
        return data
    axes = [int(d) if d is not None else -1 for d in list(input_spec[0].shape)[1:]]
    if not axes or any(d < 0 for d in axes):
        return data
    size = int(np.prod(axes))
    splits = {}
    for name, split in data.splits().items():
        array = split.inputs[0]
        if array.ndim != 2 or array.shape[1] != size or len(axes) == 1:
            return data
        splits[name] = Split((array.reshape((array.shape[0], *axes)),), split.labels)
    return TaskData(num_classes=data.num_classes, **splits)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_task_data(
    path: str | Path,
    *,
    num_classes: int | None = None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
    label_column: str = "label",
    sample_shape: Sequence[int] | None = None,
) -> TaskData:
    """A :class:`TaskData` from a ``.npz`` or ``.csv`` file, chosen by the suffix (layouts in the module docstring).

    ``label_column`` and ``sample_shape`` apply to CSV files only.

    Raises:
        DataError: Unknown suffix, missing file, a CSV-only option for an NPZ file, or any check of the loader.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        if label_column != "label" or sample_shape is not None:
            raise DataError(f"{path}: label_column and sample_shape apply to CSV files only")
        return load_npz(path, num_classes=num_classes, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    if suffix == ".csv":
        return load_csv(
            path, label_column=label_column, sample_shape=sample_shape, num_classes=num_classes,
            val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
        )
    raise DataError(f"{path}: expected a .npz or .csv file, got '{path.suffix}'")
