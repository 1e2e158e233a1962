"""Hand-designed baselines, built so they take the same clips and recipes as a genotype's network.

All map (B, C, T, H, W) clips to (B, num_classes) logits and start from random weights (no
pretrained weights can be downloaded here). pytorchvideo's builders end in a Softmax by default;
we pass ``head_activation=None`` because training uses cross-entropy on logits.

What is adapted for small clips (the built-in data is 8 x 32 x 32):

- X3D-XS keeps its published shape (width factor 2.0, depth factor 2.2, bottleneck factor 2.25,
  SE ratio 1/16, depthwise 3x3x3 blocks, 5x3x3 stem, 2048-d head); only the clip length and
  crop size (hence the head's pooling kernel) follow the data.
- R(2+1)D keeps the depth-50 layout of (2+1)D bottleneck blocks with temporal stride (1,1,2,2);
  its stem width is ``r2plus1d_width`` (default 16 instead of 64, a quarter of the channels, so it
  trains on CPU) and the head pooling kernel matches the final feature map.
- C3D (``create_c3d``) is the plain 3D CNN to beat: 3x3x3 conv-BN-ReLU blocks with pooling,
  widths w/2w/4w/8w (``c3d_width``; w = 10 is about the found nets' FLOPs on 8 x 32 x 32).
- Frame2D is a per-frame 2D CNN (three stages of two conv-BN-ReLU, widths 16/32/64),
  averaged over time: the baseline
  that cannot see motion.
"""

from __future__ import annotations

import torch
from torch import nn


def _final_size(size: int, strides: int) -> int:
    for _ in range(strides):
        size = (size + 1) // 2
    return max(size, 1)


def x3d_xs(num_classes: int, frames: int, size: int, dropout: float = 0.5) -> nn.Module:
    """X3D-XS (Feichtenhofer 2020) for (B, 3, frames, size, size) clips."""
    from pytorchvideo.models.x3d import create_x3d

    return create_x3d(
        input_clip_length=frames,
        input_crop_size=size,
        model_num_class=num_classes,
        dropout_rate=dropout,
        width_factor=2.0,
        depth_factor=2.2,
        head_activation=None,
    )


def r2plus1d(
    num_classes: int, frames: int, size: int, dropout: float = 0.5, width: int = 16
) -> nn.Module:
    """R(2+1)D-50 (Tran 2018, pytorchvideo layout) with stem width ``width``."""
    from pytorchvideo.models.r2plus1d import create_r2plus1d

    t_out = max(frames // 4, 1)  # temporal strides (1, 1, 2, 2)
    s_out = _final_size(size, 5)  # stem + 4 stages, each spatial stride 2
    return create_r2plus1d(
        model_num_class=num_classes,
        dropout_rate=dropout,
        stem_dim_out=width,
        head_pool_kernel_size=(t_out, s_out, s_out),
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
