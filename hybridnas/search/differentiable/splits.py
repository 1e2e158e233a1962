"""Which clips the differentiable stage trains weights on and which it steps alphas on.

``search.alpha_split``:

- ``half_train`` (DARTS): the training split is cut into two disjoint halves, stratified by
  class; weights train on one, alphas step on the other. The ``search_val`` split stays
  untouched, so the evolutionary stage scores its proxies on clips the supernet never saw.
- ``search_val``: weights on the whole training split, alphas on ``search_val`` (on on-disk
  datasets a 10% carve of train, so an epoch was capped by that smaller loader).
- ``auto`` (default): ``half_train`` on on-disk datasets; ``search_val`` on the built-in one,
  which has a dedicated 1000-clip search_val split (enough for the default 24 x 32 clips an
  epoch), so its default search is unchanged.

Training a found network (tools/train.py) uses neither: it trains on the whole training split,
search_val carve included.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset, Subset

from hybridnas.data import build_dataset
from hybridnas.data.sanity import split_labels

if TYPE_CHECKING:
    from hybridnas.config import DataConfig

log = logging.getLogger("hybridnas.search")


class DataPart(Subset):
    """A subset that still answers as its dataset does (``num_classes``,
    ``save_class_index``, ``record_bad``, ``root``, ...)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("dataset", "indices"):  # unpickling: not set yet
            raise AttributeError(name)
        return getattr(self.dataset, name)


def resolve_alpha_split(data_name: str, alpha_split: str) -> str:
    """``half_train`` or ``search_val`` for ``search.alpha_split`` (``auto`` resolved)."""
    if alpha_split == "auto":
        return "search_val" if data_name == "builtin" else "half_train"
    return alpha_split


def split_halves(dataset: Dataset, seed: int) -> tuple[DataPart, DataPart]:
    """Two disjoint halves covering ``dataset``, sizes ceil(n/2) and floor(n/2), each class
    split within one clip: items grouped by class, shuffled with ``seed`` within each class,
    then dealt alternately. Deterministic, so every rank cuts the same halves."""
    labels = torch.tensor(split_labels(dataset))
    g = torch.Generator().manual_seed(seed)
    order: list[int] = []
    for c in torch.unique(labels).tolist():
        members = torch.nonzero(labels == c).flatten()
        order += members[torch.randperm(len(members), generator=g)].tolist()
    return DataPart(dataset, order[0::2]), DataPart(dataset, order[1::2])


def search_datasets(data: DataConfig, alpha_split: str = "auto") -> tuple[Dataset, Dataset, str]:
    """(weight set, alpha set, resolved alpha split) for the differentiable stage."""
    split = resolve_alpha_split(data.name, alpha_split)
    train_set = build_dataset(data.dataset, "train")
    if split == "search_val":
        return train_set, build_dataset(data.dataset, "search_val"), split
    weights, alphas = split_halves(train_set, seed=data.seed)
    return weights, alphas, split


def note_epoch_cap(
    steps_per_epoch: int,
    weight_loader: Any,
    alpha_loader: Any,
    alpha_split: str,
) -> str | None:
    """Log, once, when the epoch is shorter than wanted because a loader runs out first;
    returns the message (None when not capped)."""
    wanted = steps_per_epoch or len(weight_loader)
    available = min(len(weight_loader), len(alpha_loader))
    if available >= wanted:
        return None
    msg = (
        f"search epochs are capped at {available} steps (wanted {wanted}): the weight loader "
        f"has {len(weight_loader)} batches per rank ({len(weight_loader.dataset)} clips), the "
        f"alpha loader ({alpha_split}) {len(alpha_loader)} ({len(alpha_loader.dataset)} clips)"
    )
    log.warning(msg)
    return msg
