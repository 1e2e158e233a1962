"""``build_dataset(cfg, split)``: one entry point for the built-in and on-disk datasets."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from torch.utils.data import Dataset

from hybridnas.data.builtin import MovingDigits
from hybridnas.data.classes import load_class_index
from hybridnas.data.layouts import LAYOUTS
from hybridnas.data.transforms import (
    KINETICS_MEAN,
    KINETICS_STD,
    eval_transform,
    multi_crop,
    train_transform,
)
from hybridnas.data.video import VideoDataset

SPLITS = ("train", "search_val", "val", "test")

DEFAULTS = {
    "name": "builtin",
    "root": None,
    "frames": 8,
    "frame_stride": 1,  # every n-th frame of the sampling (a genotype's clip.frame_stride)
    "size": None,  # builtin: 32; video: 112
    "seed": 0,
    "streams": ["rgb"],  # and/or "motion" (frame differences), stacked on channels in order
    # builtin
    "num_train": 1500,
    "num_search_val": 500,
    "num_test": 500,
    "digit_px": 12,
    "task": "which_moves",  # or "motion_code", "flash_gap": harder temporal labels (builtin.py)
    "cache_dir": None,  # default $HYBRIDNAS_CACHE or ~/.cache/hybridnas
    # video: sampling
    "sampling": "clip",  # "clip" | "tsn"
    "segments": None,  # TSN segments; default one frame per segment (= frames)
    "sampling_rate": 4,  # frame stride at the nominal fps
    "fps": 30.0,
    "clip_duration": None,  # seconds; default frames * sampling_rate / fps
    "test_clips": 10,
    "test_crops": 3,
    # video: transforms
    "scale": None,  # train short side range; default [8/7, 10/7] x size
    "test_scale": None,  # eval short side; default size
    "flip": True,
    "mean": list(KINETICS_MEAN),
    "std": list(KINETICS_STD),
    # video: splits and classes
    "search_val_fraction": 0.1,
    "class_index": None,  # JSON from save_class_index: fixes class -> index
}

# Keys of a recipe's data section that configure the loader, not the dataset.
LOADER_KEYS = ("batch_size", "workers")


def resolve(cfg: Mapping) -> dict:
    """cfg (dict or DictConfig) over DEFAULTS; unknown keys are an error (typos)."""
    cfg = {k: v for k, v in cfg.items() if k not in LOADER_KEYS}
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown data config keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **{k: v for k, v in cfg.items() if v is not None}}
    if out["size"] is None:
        out["size"] = 32 if out["name"] == "builtin" else 112
    return out


def build_dataset(cfg: Mapping, split: str) -> Dataset:
    """The dataset ``cfg["name"]`` for ``split`` in {"train", "search_val", "val", "test"}.

    Items: (clip float (C, T, H, W), label int), C = 3 per stream of ``cfg["streams"]``; for a
    video dataset's "test" split with clip sampling, (clips (V, C, T, H, W), label,
    video_index) with V = test_clips x test_crops.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    c = resolve(cfg)
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
    if c["name"] not in LAYOUTS:
        raise ValueError(f"unknown dataset {c['name']!r}: builtin, {', '.join(LAYOUTS)}")
    if not c["root"]:
        raise ValueError(f"dataset {c['name']!r} needs data.root")
    return _video_dataset(c, split)


def whole_train_set(cfg: Mapping) -> Dataset:
    """The whole training split, the search_val carve of on-disk datasets included: what a
    found network trains on (the carve only matters to the search)."""
    return build_dataset({**cfg, "search_val_fraction": 0.0}, "train")


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
    if c["sampling"] not in ("clip", "tsn"):
        raise ValueError(f"sampling must be 'clip' or 'tsn', got {c['sampling']!r}")
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
