"""Video transforms on (C, T, H, W) clips, and mixup/cutmix on (B, C, T, H, W) batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pytorchvideo.transforms import Normalize, RandomShortSideScale, ShortSideScale
from pytorchvideo.transforms.functional import uniform_crop
from torchvision.transforms import CenterCrop, Compose, RandomCrop, RandomHorizontalFlip

KINETICS_MEAN = (0.45, 0.45, 0.45)  # pytorchvideo's Kinetics recipe values
KINETICS_STD = (0.225, 0.225, 0.225)


def _div255(x: torch.Tensor) -> torch.Tensor:
    return x / 255.0


def train_transform(
    size: int, scale: Sequence[int], mean: Sequence[float], std: Sequence[float], flip: bool
) -> Compose:
    """(C,T,H,W) 0..255 -> random short side in ``scale`` -> random ``size`` crop -> flip ->
    normalised (C,T,size,size)."""
    steps = [RandomShortSideScale(int(scale[0]), int(scale[1])), RandomCrop(size)]
    steps += [RandomHorizontalFlip()] if flip else []
    return Compose([*steps, _div255, Normalize(mean, std)])


def eval_transform(
    size: int, short_side: int, mean: Sequence[float], std: Sequence[float]
) -> Compose:
    """(C,T,H,W) 0..255 -> short side ``short_side`` -> centre ``size`` crop -> normalised."""
    return Compose([ShortSideScale(short_side), CenterCrop(size), _div255, Normalize(mean, std)])


def multi_crop(
    x: torch.Tensor,
    size: int,
    short_side: int,
    crops: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> list[torch.Tensor]:
    """(C,T,H,W) 0..255 -> ``crops`` normalised (C,T,size,size) views along the long side
    (3: left/top, centre, right/bottom as in SlowFast; 1: centre)."""
    x = ShortSideScale(short_side)(x)
    norm = Compose([_div255, Normalize(mean, std)])
    spots = [1] if crops == 1 else list(range(crops))
    if crops not in (1, 3):
        raise ValueError(f"crops must be 1 or 3, got {crops}")
    return [norm(uniform_crop(x, size, s)) for s in spots]


class VideoMixup:
    """timm's Mixup/CutMix for (B, C, T, H, W) clips.

    timm's CutMix indexes ``x[:, :, y0:y1, x0:x1]``, which on a 5D clip cuts the T and H axes
    instead of H and W. Folding time into channels, (B, C*T, H, W), makes its 4D code correct:
    the box is cut at the same place in every frame, and mixup is unchanged by the reshape.
    timm needs an even batch; a batch left odd by a skipped bad item is mixed without its last
    clip, which keeps its own (smoothed) label. Returns (clips, soft targets (B, classes)).
    """

    def __init__(self, num_classes: int, **timm_kwargs) -> None:
        from timm.data import Mixup

        self.mix = Mixup(num_classes=num_classes, **timm_kwargs)
        self.num_classes = num_classes

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from timm.data.mixup import mixup_target

        b, c, t, h, w = x.shape
        if b % 2:
            head, target = self(x[:-1], y[:-1])
            last = mixup_target(y[-1:], self.num_classes, 1.0, self.mix.label_smoothing)
            return torch.cat([head, x[-1:]]), torch.cat([target, last.to(target)])
        flat, target = self.mix(x.reshape(b, c * t, h, w).clone(), y)
        return flat.reshape(b, c, t, h, w), target
