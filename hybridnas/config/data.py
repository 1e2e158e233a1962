"""The data schema: ``data.*`` as ``BuiltinData`` (the generated moving digits) or
``VideoData`` (videos on disk: folder, csv or kinetics400 layouts), and ``DataConfig``, one of
them plus how the loaders batch it. ``VideoData.require_root`` is the one data-root check."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig

from hybridnas.config.base import ConfigError, check_choices, plain

Stream = Literal["rgb", "motion"]
Task = Literal["which_moves", "motion_code", "flash_gap"]
VideoLayout = Literal["folder", "csv", "kinetics400"]
Sampling = Literal["clip", "tsn"]
# Keys of a recipe's data section that configure the loader, not the dataset.
LOADER_KEYS = ("batch_size", "workers")


@dataclass(frozen=True)
class BuiltinData:
    """The built-in moving digits: made on first use from scikit-learn's digits, cached."""

    name: Literal["builtin"] = "builtin"
    root: None = None  # the built-in data has no folder
    seed: int = 0  # which clips are generated (fixed, independent of the run seed)
    streams: tuple[str, ...] = ("rgb",)  # rgb, motion (frame differences), stacked on channels
    frames: int = 8
    frame_stride: int = 1  # every n-th frame of the sampling (a genotype's clip.frame_stride)
    size: int = 32
    digit_px: int = 12
    task: Task = "which_moves"  # motion_code, flash_gap: harder temporal labels (builtin.py)
    num_train: int = 1500
    num_search_val: int = 1000  # >= search.steps_per_epoch x batch_size
    num_test: int = 500
    cache_dir: str | None = None  # default $HYBRIDNAS_CACHE or ~/.cache/hybridnas

    def __post_init__(self) -> None:
        object.__setattr__(self, "streams", tuple(self.streams))
        check_choices(self, "data")


@dataclass(frozen=True)
class VideoData:
    """Videos on disk in one of the layouts (``hybridnas.data.layouts``) under ``root``."""

    name: VideoLayout = "folder"
    root: str | None = None  # required: the dataset folder
    seed: int = 0  # carves search_val from train (fixed, independent of the run seed)
    streams: tuple[str, ...] = ("rgb",)
    frames: int = 8  # frames per clip, taken uniformly from its window
    frame_stride: int = 1
    size: int = 112  # square crop side
    sampling: Sampling = "clip"
    segments: int | None = None  # TSN segments; default one frame per segment (= frames)
    sampling_rate: int = 4  # frame stride at the nominal fps
    fps: float = 30.0
    clip_duration: float | None = None  # seconds; default frames * sampling_rate / fps
    test_clips: int = 10  # multi-view test: clips x crops (evaluate.py views= sets these)
    test_crops: int = 3
    scale: tuple[int, int] | None = None  # train short side range; default [8/7, 10/7] x size
    test_scale: int | None = None  # eval short side; default size
    flip: bool = True
    mean: tuple[float, ...] = (0.45, 0.45, 0.45)  # pytorchvideo's Kinetics recipe values
    std: tuple[float, ...] = (0.225, 0.225, 0.225)
    search_val_fraction: float = 0.1
    class_index: str | None = None  # classes.json from a run: fixes class -> index

    def __post_init__(self) -> None:
        for name in ("streams", "mean", "std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.scale is not None:
            object.__setattr__(self, "scale", tuple(self.scale))
        check_choices(self, "data")

    def require_root(self) -> Path:
        """The dataset folder; FileNotFoundError when none is given, absent or empty."""
        if not self.root:
            raise FileNotFoundError(f"data={self.name} needs data.root=<folder with the videos>")
        path = Path(self.root)
        if not path.exists():
            raise FileNotFoundError(f"data.root={self.root} does not exist")
        if path.is_dir() and not any(path.iterdir()):
            raise FileNotFoundError(f"data.root={self.root} is empty: no annotations or videos")
        return path


DatasetConfig = BuiltinData | VideoData


def dataset_config(node: Mapping[str, Any] | DictConfig | DatasetConfig) -> DatasetConfig:
    """The typed dataset config of a ``data`` node or mapping (loader keys ignored, null
    values keeping the default); an unknown key or name is a ConfigError naming it."""
    if isinstance(node, BuiltinData | VideoData):
        return node
    d = {k: v for k, v in plain(node).items() if k not in LOADER_KEYS and v is not None}
    name = d.get("name", "builtin")
    cls = BuiltinData if name == "builtin" else VideoData
    known = sorted(set().union(*({f.name for f in fields(c)} for c in (BuiltinData, VideoData))))
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"unknown data config keys {unknown} for data={name}; known: {known}")
    if cls is VideoData and name not in ("folder", "csv", "kinetics400"):
        raise ConfigError(f"unknown dataset {name!r}: builtin, folder, csv, kinetics400")
    return cls(**d)


@dataclass(frozen=True)
class DataConfig:
    """``data.*``: the dataset (``BuiltinData`` or ``VideoData``; a mapping is converted)
    and how the loaders batch it."""

    dataset: DatasetConfig = field(default_factory=BuiltinData)
    batch_size: int = 32
    workers: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", dataset_config(self.dataset))

    def get(self, key: str, default: Any = None) -> Any:
        """A dataset key, as a mapping's ``get`` (``data.get("streams")``)."""
        return getattr(self.dataset, key, default)

    @property
    def resolved(self) -> dict[str, Any]:
        """The dataset keys as a plain dict."""
        return asdict(self.dataset)

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def frames(self) -> int:
        return self.dataset.frames

    @property
    def size(self) -> int:
        return self.dataset.size

    @property
    def seed(self) -> int:
        """Which clips are generated or carved (not the run seed)."""
        return self.dataset.seed

    @classmethod
    def from_cfg(cls, node: Any) -> DataConfig:
        """From the ``data`` node; an unknown dataset key fails here."""
        d = plain(node)
        loader = {k: d[k] for k in LOADER_KEYS if k in d}
        return cls(dataset=dataset_config(d), **loader)
