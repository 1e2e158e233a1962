"""Hand-designed baselines, built so they take the same clips and recipes as a genotype's network.

All map (B, C, T, H, W) clips to (B, num_classes) logits and start from random weights (no
pretrained weights can be downloaded here). pytorchvideo's builders end in a Softmax by default;
we pass ``head_activation=None`` because training uses cross-entropy on logits.

X3D-XS and R(2+1)D come from pytorchvideo's builders, whose spatial strides (stem 2, then 2 in
each of 4 stages: 32 in all) are made for 160-224 px crops, where they leave a 5x5-7x7 map
before the head. On the built-in 32 px clips the same strides leave 1x1 from the last stage on
(the 3x3 convs of the deepest blocks see only zero padding around one pixel).
``spatial_strides`` (stem, stage 1..4) sets them; ``SMALL_INPUT_STRIDES`` is R(2+1)D's own paper
layout (Tran 2018: conv1 stride 2, conv2_x none, conv3-5_x stride 2; 16 in all, 112 px -> 7x7),
which leaves 2x2 on 32 px. The width then brings the FLOPs back to the found nets' budget: X3D
``width_factor`` (2.0 in X3D-XS), R(2+1)D stem width (64 in the paper). Neither layout trains on
the built-in data's short budget yet (README, comparison table).

- X3D-XS otherwise keeps its published shape (depth factor 2.2, bottleneck factor 2.25, SE ratio
  1/16, depthwise 3x3x3 blocks, 5x3x3 stem, 2048-d head); the head's pooling follows the clip.
- R(2+1)D keeps pytorchvideo's depth-50 layout of (2+1)D bottleneck blocks with temporal stride
  (1, 1, 2, 2); its head pools adaptively, so it takes any clip shape.
- C3D (``create_c3d``) is the plain 3D CNN to beat: 3x3x3 conv-BN-ReLU blocks with pooling,
  widths w/2w/4w/8w (``c3d_width``; w = 10 is about the found nets' FLOPs on 8 x 32 x 32).
- Frame2D is a per-frame 2D CNN (three stages of two conv-BN-ReLU, widths 16/32/64),
  averaged over time: the baseline that cannot see motion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

PUBLISHED_STRIDES = (2, 2, 2, 2, 2)  # pytorchvideo's X3D / R(2+1)D: stem, stages 1-4
SMALL_INPUT_STRIDES = (2, 1, 2, 2, 2)  # R(2+1)D paper: no stride in the first stage


def check_spatial_strides(strides: Sequence[int] | None, size: int) -> tuple[int, ...]:
    """``strides`` (stem, stage 1..4; None: ``PUBLISHED_STRIDES``) as a 5-tuple, refused when
    malformed or when they would take a ``size`` px clip below one pixel."""
    out = PUBLISHED_STRIDES if strides is None else tuple(int(s) for s in strides)
    if len(out) != 5 or min(out) < 1:
        raise ValueError(
            f"model.spatial_strides needs 5 positive strides (stem, stage 1-4), got {list(out)}"
        )
    if math.prod(out) > size:
        raise ValueError(
            f"model.spatial_strides {list(out)} downsample by {math.prod(out)}, more than the "
            f"{size} px clip: use fewer strides of 2, e.g. {list(SMALL_INPUT_STRIDES)}"
        )
    return out


def create_x3d_xs(
    *,
    num_classes: int,
    frames: int,
    size: int,
    dropout: float = 0.5,
    width_factor: float = 2.0,
    spatial_strides: Sequence[int] | None = None,
) -> nn.Module:
    """X3D-XS (Feichtenhofer 2020) for (B, 3, frames, size, size) clips -> (B, num_classes)."""
    from pytorchvideo.models.x3d import create_x3d

    stem, *stages = check_spatial_strides(spatial_strides, size)
    return create_x3d(
        input_clip_length=frames,
        input_crop_size=size,
        model_num_class=num_classes,
        dropout_rate=dropout,
        width_factor=width_factor,
        depth_factor=2.2,
        stem_conv_stride=(1, stem, stem),
        stage_spatial_stride=tuple(stages),
        head_activation=None,
    )


def create_r2plus1d(
    *,
    num_classes: int,
    dropout: float = 0.5,
    width: int = 16,
    size: int = 32,
    spatial_strides: Sequence[int] | None = None,
) -> nn.Module:
    """R(2+1)D-50 (Tran 2018, pytorchvideo layout) with stem width ``width``:
    (B, 3, T, size, size) clips -> (B, num_classes) logits, any T."""
    from pytorchvideo.models.r2plus1d import create_r2plus1d as _create

    stem, *stages = check_spatial_strides(spatial_strides, size)
    return _create(
        model_num_class=num_classes,
        dropout_rate=dropout,
        stem_dim_out=width,
        stem_conv_stride=(1, stem, stem),
        stage_spatial_stride=tuple(stages),
        head_pool=nn.AdaptiveAvgPool3d,  # a fixed kernel would tie the net to one clip shape
        head_output_size=(1, 1, 1),
        head_activation=None,
    )


class Frame2D(nn.Module):
    """A 2D CNN applied to each frame, logits averaged over time: (B, C, T, H, W) -> (B, K)."""

    def __init__(
        self, num_classes: int, in_channels: int = 3, widths=(16, 32, 64), dropout: float = 0.0
    ) -> None:
        super().__init__()
        layers, c = [], in_channels
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv2d(c, w, 3, stride, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            layers += [nn.Conv2d(w, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        feats = self.features(frames).reshape(b, t, -1).mean(1)  # temporal average pool
        return self.head(feats)


C3D_STAGES = (1, 1, 2, 2)  # conv blocks per stage (C3D: 1, 1, 2, 2, 2 at 112 px)


def create_c3d(
    num_classes: int, width: int = 16, in_channels: int = 3, dropout: float = 0.0
) -> nn.Module:
    """A plain C3D-style 3D CNN (Tran 2015), sized for small clips::

        clip (B, C, T, H, W)
          -> [Conv3d 3x3x3 -> BN -> ReLU] x 1, width w     -> MaxPool (1, 2, 2)
          -> [Conv3d 3x3x3 -> BN -> ReLU] x 1, width 2w    -> MaxPool (2, 2, 2)
          -> [Conv3d 3x3x3 -> BN -> ReLU] x 2, width 4w    -> MaxPool (2, 2, 2)
          -> [Conv3d 3x3x3 -> BN -> ReLU] x 2, width 8w    -> global average pool
          -> Dropout -> Linear -> (B, num_classes) logits

    The first pool keeps time (as C3D's pool1 does); the global average pool makes it take any
    clip length and size. FLOPs grow with w^2: about 0.19M x w^2 multiply-adds on 8 x 32 x 32.
    """
    layers: list[nn.Module] = []
    c = in_channels
    pools = [(1, 2, 2), (2, 2, 2), (2, 2, 2), None]
    for s, (blocks, pool) in enumerate(zip(C3D_STAGES, pools, strict=True)):
        w = width * 2**s
        for _ in range(blocks):
            layers += [nn.Conv3d(c, w, 3, padding=1, bias=False), nn.BatchNorm3d(w), nn.ReLU()]
            c = w
        if pool is not None:
            layers.append(nn.MaxPool3d(pool, ceil_mode=True))
    layers += [
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(c, num_classes),
    ]
    return nn.Sequential(*layers)
