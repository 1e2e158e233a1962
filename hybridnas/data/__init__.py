"""Video data: the built-in moving-digits dataset and Kinetics-style video datasets.

Entry points: :func:`build_dataset` (cfg, split) -> Dataset and :func:`build_loader`.
"""

from hybridnas import compat as _compat  # noqa: F401  (before pytorchvideo.transforms)
from hybridnas.data.bad import BadItem
from hybridnas.data.build import build_dataset, whole_train_set
from hybridnas.data.builtin import MovingDigits
from hybridnas.data.classes import load_class_index, save_class_index
from hybridnas.data.loader import ResumableDistributedSampler, build_loader, collate_skip_bad
from hybridnas.data.transforms import VideoMixup
from hybridnas.data.video import VideoDataset

__all__ = [
    "BadItem",
    "MovingDigits",
    "ResumableDistributedSampler",
    "VideoDataset",
    "VideoMixup",
    "build_dataset",
    "build_loader",
    "collate_skip_bad",
    "load_class_index",
    "save_class_index",
    "whole_train_set",
]
