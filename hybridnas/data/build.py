"""``build_dataset(cfg, split)``: one entry point for the built-in and on-disk datasets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, replace
from functools import partial

from torch.utils.data import Dataset

from hybridnas.config import VideoData, dataset_config
from hybridnas.config.data import DatasetConfig
from hybridnas.data.builtin import MovingDigits
from hybridnas.data.classes import load_class_index
from hybridnas.data.layouts import LAYOUTS
from hybridnas.data.transforms import eval_transform, multi_crop, train_transform
from hybridnas.data.video import VideoDataset

SPLITS = ("train", "search_val", "val", "test")


def build_dataset(cfg: Mapping | DatasetConfig, split: str) -> Dataset:
    """The dataset ``cfg`` names (a ``BuiltinData`` or ``VideoData``, or a mapping of their
    keys) for ``split`` in {"train", "search_val", "val", "test"}.

    Items: (clip float (C, T, H, W), label int), C = 3 per stream of ``cfg["streams"]``; for a
    video dataset's "test" split with clip sampling, (clips (V, C, T, H, W), label,
    video_index) with V = test_clips x test_crops.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    data = dataset_config(cfg)
    c = asdict(data)
    if c["name"] == "builtin":
        return MovingDigits(
            split,
            seed=c["seed"],
            frames=c["frames"],
            size=c["size"],
            digit_px=c["digit_px"],
            num_train=c["num_train"],
            num_search_val=c["num_search_val"],
            num_test=c["num_test"],
            cache_dir=c["cache_dir"],
            streams=tuple(c["streams"]),
            task=c["task"],
            frame_stride=int(c["frame_stride"]),
        )
    data.require_root()
    return _video_dataset(c, split)


def whole_train_set(cfg: Mapping | DatasetConfig) -> Dataset:
    """The whole training split, the search_val carve of on-disk datasets included: what a
    found network trains on (the carve only matters to the search)."""
    data = dataset_config(cfg)
    if isinstance(data, VideoData):
        data = replace(data, search_val_fraction=0.0)
    return build_dataset(data, "train")


def _video_dataset(c: dict, split: str) -> VideoDataset:
    names = load_class_index(c["class_index"]) if c["class_index"] else None
    index = LAYOUTS[c["name"]](
        c["root"], split, names, search_val_fraction=c["search_val_fraction"], seed=c["seed"]
    )
    if not index.entries:
        raise RuntimeError(
            f"no usable video for split {split!r} in {c['root']} "
            f"({len(index.bad)} skipped while indexing)"
        )
    size, frames = c["size"], c["frames"]
    scale = c["scale"] or [round(size * 8 / 7), round(size * 10 / 7)]
    short = c["test_scale"] or size
    train = split in ("train", "search_val")
    tsn = c["sampling"] == "tsn"
    eval_mode = "center" if split == "val" else "multiview"
    mode = "tsn" if tsn else ("random" if train else eval_mode)
    tf = (
        train_transform(size, scale, c["mean"], c["std"], c["flip"])
        if train
        else eval_transform(size, short, c["mean"], c["std"])
    )
    return VideoDataset(
        index.entries,
        index.class_names,
        frames=frames,
        mode=mode,
        transform=tf,
        crop_views=partial(
            multi_crop,
            size=size,
            short_side=short,
            crops=c["test_crops"],
            mean=c["mean"],
            std=c["std"],
        ),
        sampling_rate=c["sampling_rate"] * int(c["frame_stride"]),
        fps=c["fps"],
        clip_duration=c["clip_duration"],
        segments=c["segments"] or frames,
        num_clips=c["test_clips"],
        root=str(c["root"]),
        index_bad=index.bad,
        train=train,
        streams=tuple(c["streams"]),
    )
