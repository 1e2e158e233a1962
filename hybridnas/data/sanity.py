"""Checks on a dataset before any training: a data problem ends in one line, not a model.

``DataError`` is what the built-in tasks' settings checks and :func:`require_classes` raise;
the tools turn it into ``hybridnas: error: <message>`` (see hybridnas/errors.py).
"""

from __future__ import annotations

from collections import Counter

from torch.utils.data import Dataset, Subset


class DataError(ValueError):
    """The data settings or the data itself cannot train a classifier; names the split."""


def split_labels(dataset: Dataset) -> list[int]:
    """Every item's label without decoding a clip: video ``entries``, built-in ``labels``,
    or a ``Subset`` of either."""
    if isinstance(dataset, Subset):
        labels = split_labels(dataset.dataset)
        return [labels[i] for i in dataset.indices]
    if hasattr(dataset, "entries"):
        return [int(e.label) for e in dataset.entries]
    if hasattr(dataset, "labels"):
        return [int(v) for v in dataset.labels]
    raise TypeError(f"cannot read labels of {type(dataset).__name__} without decoding it")


def require_classes(split: str, dataset: Dataset) -> None:
    """Refuse a split with fewer than two classes, or whose labels are all one class: a
    classifier trained or scored on it reaches top-1 1.0 and means nothing.

    Raises:
        DataError: naming ``split``, its class count and its labels' counts per class.
    """
    names = list(getattr(dataset, "class_names", []))
    counts = Counter(split_labels(dataset))
    shown = ", ".join(
        f"{names[c] if 0 <= c < len(names) else c}: {n}" for c, n in sorted(counts.items())[:10]
    )
    if len(names) < 2:
        raise DataError(
            f"the {split} split has {len(names)} class(es) ({shown or 'no clips'}): a classifier "
            "needs at least two"
        )
    if len(counts) < 2:
        raise DataError(
            f"the {split} split's {sum(counts.values())} clips are all one class ({shown}) of "
            f"{len(names)}: a classifier needs clips of at least two classes"
        )
