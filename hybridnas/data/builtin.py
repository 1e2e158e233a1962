"""The built-in dataset: moving digits, a video task that a per-frame 2D model cannot solve.

Each clip shows two different handwritten digits (scikit-learn's bundled ``load_digits``, so
nothing is downloaded) on a black canvas: one bounces around, the other stays still. The label
is the digit that moves. A single frame shows both digits and nothing says which one moves, so
a model that looks at frames one at a time is capped near 50%; a model that sees time can do
far better. Train, search-validation and test clips are drawn from disjoint source images.

A second task, ``task="motion_code"``, labels the *rhythm* of the motion instead: one digit
moves in some frames and rests in others, and the class is which of ten move/rest codes it
follows (every code has the same number of moves, so neither a single frame, nor the mean of
per-frame features, nor the total displacement tells the classes apart; only the order of
moves in time does). The digit's identity is irrelevant to the label.

A third, ``task="flash_gap"``, asks how far apart in time two things happened: the canvas is
black except in two frames, where one digit flashes at the same place; the class is the gap
between the two flashes, one of the ten longest the clip holds (6 to 15 frames in 16). Every
clip has two flashes, so a model must see both within one temporal receptive field to tell a
gap of 14 from a gap of 15.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from hybridnas.config import choices
from hybridnas.config.data import BuiltinData, Task
from hybridnas.data.bad import BadItemLog
from hybridnas.data.classes import save_class_index
from hybridnas.data.sanity import DataError
from hybridnas.data.streams import add_streams, check_streams

SPLITS = ("train", "search_val", "test")
TASKS = choices(Task)
_DATA = BuiltinData()  # the defaults, declared in hybridnas/config/data.py
TEMPORAL_CLASSES = 10  # classes of motion_code and flash_gap
# Mean and std of a pixel over the built-in clips (scaled to [0, 1]), measured once at the
# defaults; fixed so that every split and every cache file normalises the same way.
MEAN, STD = 0.086, 0.22
_VERSION = 1  # bump when the generator changes, so old cache files are not reused


def default_cache_dir() -> Path:
    """``$HYBRIDNAS_CACHE`` if set, else ``~/.cache/hybridnas``."""
    return Path(os.environ.get("HYBRIDNAS_CACHE", Path.home() / ".cache" / "hybridnas"))


def _source_images(digit_px: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 8x8 digits upsampled to (N, digit_px, digit_px) uint8, and labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images).float()[:, None] / 16.0
    x = F.interpolate(x, size=(digit_px, digit_px), mode="bilinear", align_corners=False)
    x = (x[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return x, digits.target.astype(np.int64)


def _split_sources(labels: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Disjoint source-image indices per split (60/20/20, per class so every split has all)."""
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        a, b = int(0.6 * len(idx)), int(0.8 * len(idx))
        for split, chunk in zip(SPLITS, (idx[:a], idx[a:b], idx[b:]), strict=True):
            parts[split].append(chunk)
    return {s: np.concatenate(p) for s, p in parts.items()}


def _bounce(rng: np.random.Generator, frames: int, span: int) -> np.ndarray:
    """(frames, 2) integer top-left positions of a digit moving at constant speed in
    [0, span], reflecting off the canvas edges."""
    pos = rng.integers(0, span + 1, 2).astype(np.int64)
    vel = rng.choice(np.array([-3, -2, 2, 3]), 2)
    out = np.empty((frames, 2), np.int64)
    for t in range(frames):
        out[t] = pos
        pos = pos + vel
        for k in range(2):
            if pos[k] < 0 or pos[k] > span:
                pos[k] = -pos[k] if pos[k] < 0 else 2 * span - pos[k]
                vel[k] = -vel[k]
    return out


_MAX_PLACEMENT_TRIES = 20_000  # the defaults need a handful; past this the config cannot work


def _place(rng: np.random.Generator, frames: int, canvas: int, digit: int):
    """Still position (2,) and moving trajectory (frames, 2) whose boxes never overlap, so
    both digits are fully visible in every frame (rejection sampling)."""
    span = canvas - digit
    if span < digit:
        raise DataError(
            f"data.digit_px={digit} is too large for data.size={canvas}: two digits side by "
            f"side need data.size >= 2 x data.digit_px"
        )
    for _ in range(_MAX_PLACEMENT_TRIES):
        still = rng.integers(0, span + 1, 2)
        moving = _bounce(rng, frames, span)
        if np.all(np.abs(moving - still).max(axis=1) >= digit):
            return still, moving
    raise DataError(
        f"cannot keep a moving and a still {digit}px digit apart over {frames} frames on a "
        f"{canvas}px canvas ({_MAX_PLACEMENT_TRIES} tries): lower data.frames or "
        "data.digit_px, or raise data.size"
    )


def _check_fits(digit: int, canvas: int) -> None:
    if digit > canvas:
        raise DataError(f"data.digit_px={digit} is larger than the {canvas}px canvas")


def motion_codes(frames: int) -> np.ndarray:
    """The ``motion_code`` task's ten classes: (10, frames - 1) 0/1 codes, 1 = the digit moves
    between frames t and t + 1. Each code has the same number of moves; the ten are a fixed
    draw (independent of the data seed) from all such codes."""
    steps = frames - 1
    moves = (steps + 1) // 2
    codes = [c for c in itertools.combinations(range(steps), moves)]
    if len(codes) < TEMPORAL_CLASSES:
        raise DataError(f"data.task=motion_code needs data.frames >= 6, got {frames}")
    pick = np.random.default_rng(2026).choice(len(codes), TEMPORAL_CLASSES, replace=False)
    out = np.zeros((TEMPORAL_CLASSES, steps), np.int64)
    for row, k in enumerate(sorted(pick)):
        out[row, list(codes[k])] = 1
    return out


def make_code_clips(
    images: np.ndarray,
    pool: np.ndarray,
    n: int,
    rng: np.random.Generator,
    frames: int,
    canvas: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``n`` motion-code clips: uint8 (n, frames, canvas, canvas), labels (n,) = code.

    One digit (any class) bounces at a constant speed, but only takes a step between frames
    where its class's code says 1; otherwise it stays where it is."""
    digit = images.shape[-1]
    _check_fits(digit, canvas)
    codes = motion_codes(frames)
    clips = np.zeros((n, frames, canvas, canvas), np.uint8)
    target = rng.integers(0, TEMPORAL_CLASSES, n)
    for i in range(n):
        img = images[rng.choice(pool)]
        code = codes[target[i]]
        path = _bounce(rng, int(code.sum()) + 1, canvas - digit)
        where = np.concatenate([[0], np.cumsum(code)])  # step taken by each frame
        for t in range(frames):
            y, x = path[where[t]]
            clips[i, t, y : y + digit, x : x + digit] = img
    return torch.from_numpy(clips), torch.from_numpy(target.astype(np.int64))


def gap_lengths(frames: int) -> list[int]:
    """The flash_gap task's classes: the ten longest gaps a clip of ``frames`` holds."""
    return list(range(frames - TEMPORAL_CLASSES, frames))


def make_gap_clips(
    images: np.ndarray,
    pool: np.ndarray,
    n: int,
    rng: np.random.Generator,
    frames: int,
    canvas: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``n`` flash-gap clips: uint8 (n, frames, canvas, canvas), labels (n,): the index
    of the gap in ``gap_lengths(frames)``.

    A digit (any class) shows at one random place in frames t0 and t0 + gap only, with the
    gap uniform over the ten longest (``gap_lengths``) and t0 uniform over the starts that keep
    both flashes in the clip."""
    if frames <= TEMPORAL_CLASSES:
        need = TEMPORAL_CLASSES + 1
        raise DataError(f"data.task=flash_gap needs data.frames >= {need}, got {frames}")
    digit = images.shape[-1]
    _check_fits(digit, canvas)
    clips = np.zeros((n, frames, canvas, canvas), np.uint8)
    target = rng.integers(0, TEMPORAL_CLASSES, n)
    gaps = gap_lengths(frames)
    for i in range(n):
        gap = int(gaps[target[i]])
        t0 = int(rng.integers(0, frames - gap))
        y, x = rng.integers(0, canvas - digit + 1, 2)
        clips[i, [t0, t0 + gap], y : y + digit, x : x + digit] = images[rng.choice(pool)]
    return torch.from_numpy(clips), torch.from_numpy(target.astype(np.int64))


def make_clips(
    images: np.ndarray,
    labels: np.ndarray,
    pool: np.ndarray,
    n: int,
    rng: np.random.Generator,
    frames: int,
    canvas: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``n`` clips from source images ``pool``.

    Returns clips uint8 (n, frames, canvas, canvas) and labels int64 (n,) = moving digit.
    """
    digit = images.shape[-1]
    by_class = [pool[labels[pool] == c] for c in range(10)]
    clips = np.zeros((n, frames, canvas, canvas), np.uint8)
    target = rng.integers(0, 10, n)
    for i in range(n):
        other = (target[i] + rng.integers(1, 10)) % 10  # a different digit, uniform
        mov_img = images[rng.choice(by_class[target[i]])]
        still_img = images[rng.choice(by_class[other])]
        still, moving = _place(rng, frames, canvas, digit)
        for t in range(frames):
            (ys, xs), (ym, xm) = still, moving[t]
            clips[i, t, ys : ys + digit, xs : xs + digit] = still_img
            clips[i, t, ym : ym + digit, xm : xm + digit] = mov_img
    return torch.from_numpy(clips), torch.from_numpy(target.astype(np.int64))


def build_moving_digits(
    seed: int,
    sizes: dict[str, int],
    frames: int,
    canvas: int,
    digit_px: int,
    task: str = "which_moves",
) -> dict[str, dict[str, torch.Tensor]]:
    """All splits, deterministic for ``seed``: {split: {"clips": uint8 (N,T,H,W), "labels"}}."""
    check_task(task)
    rng = np.random.default_rng(seed)
    images, labels = _source_images(digit_px)
    pools = _split_sources(labels, rng)
    out = {}
    for split in SPLITS:
        if task == "which_moves":  # the only task whose label is the digit's class
            clips, target = make_clips(
                images, labels, pools[split], sizes[split], rng, frames, canvas
            )
        else:
            render = _TEMPORAL_RENDERERS[task]
            clips, target = render(images, pools[split], sizes[split], rng, frames, canvas)
        out[split] = {"clips": clips, "labels": target, "sources": torch.from_numpy(pools[split])}
    return out


_TEMPORAL_RENDERERS = {"motion_code": make_code_clips, "flash_gap": make_gap_clips}


def class_names_of(task: str, frames: int) -> list[str]:
    """The class names of ``task``: digits, move/rest codes ("0110101") or gaps ("gap6")."""
    if task == "motion_code":
        return ["".join(map(str, c)) for c in motion_codes(frames)]
    if task == "flash_gap":
        return [f"gap{g}" for g in gap_lengths(frames)]
    return [str(d) for d in range(10)]


def check_task(task: str) -> str:
    """``task`` if it is one of TASKS, else a one-line ValueError."""
    if task not in TASKS:
        raise DataError(f"unknown data.task {task!r}; expected one of {TASKS}")
    return task


def load_or_build(
    cache_dir: str | os.PathLike | None,
    seed: int,
    sizes: dict[str, int],
    frames: int,
    canvas: int,
    digit_px: int,
    task: str = "which_moves",
) -> dict[str, dict[str, torch.Tensor]]:
    """Load the cached build for these arguments, or build it and write it atomically
    (temp file + rename: concurrent first uses never see a half-written cache)."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    key = "-".join(f"{sizes[s]}" for s in SPLITS)
    name = "moving_digits" if check_task(task) == "which_moves" else task
    path = cache / f"{name}_v{_VERSION}_seed{seed}_n{key}_t{frames}_hw{canvas}_d{digit_px}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)
    data = build_moving_digits(seed, sizes, frames, canvas, digit_px, task)
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(data, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return data


class MovingDigits(BadItemLog, Dataset):
    """Moving-digit clips. Items: (clip float (3, T, H, W) normalised, label int); with
    ``streams`` other than ``("rgb",)``, (3 * len(streams), T, H, W) (see streams.py).
    ``task``: "which_moves" (label = the moving digit), "motion_code" (label = the move/rest
    code the digit follows) or "flash_gap" (label = the gap between two flashes); see
    ``class_names_of``. ``frame_stride`` n: clips of ``frames x n`` rendered frames, every
    n-th kept (T = ``frames``)."""

    num_classes = 10  # every task has ten classes

    def __init__(
        self,
        split: str = "train",
        *,
        seed: int = _DATA.seed,
        frames: int = _DATA.frames,
        size: int = _DATA.size,
        digit_px: int = _DATA.digit_px,
        num_train: int = _DATA.num_train,
        num_search_val: int = _DATA.num_search_val,
        num_test: int = _DATA.num_test,
        cache_dir: str | os.PathLike | None = None,
        streams: tuple[str, ...] = _DATA.streams,
        task: str = _DATA.task,
        frame_stride: int = _DATA.frame_stride,
    ) -> None:
        split = {"val": "test"}.get(split, split)
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS} or 'val'")
        sizes = {"train": num_train, "search_val": num_search_val, "test": num_test}
        rendered = frames * frame_stride
        data = load_or_build(cache_dir, seed, sizes, rendered, size, digit_px, task)[split]
        self.class_names = class_names_of(task, rendered)
        self.frame_stride = frame_stride
        self.split = split
        self.clips, self.labels = data["clips"], data["labels"]
        self.source_ids = data["sources"]  # which load_digits images this split drew from
        self.streams = check_streams(streams)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Clip (3, T, H, W) float, normalised with the fixed MEAN/STD (its streams stacked on
        channels); label int."""
        clip = (self.clips[index][:: self.frame_stride].float() / 255.0 - MEAN) / STD
        rgb = clip[None].expand(3, -1, -1, -1).contiguous()
        return add_streams(rgb, self.streams), int(self.labels[index])

    def save_class_index(self, path: str | os.PathLike) -> None:
        """Write the class names/indices (JSON) for the run folder."""
        save_class_index(self.class_names, path)
