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
``width_factor`` (2.0 in X3D-XS), R(2+1)D stem width (64 in the paper). With pytorchvideo's
initialisation neither layout trains on the built-in data's short budget; from PyTorch's
(:func:`reset_to_torch_init`: ``x3d_xs_ti``, ``r2plus1d_18``) they do (README, comparison).

Each builder is registered under its ``model.name`` (registry.py) and draws its block in its
docstring: X3D-XS keeps its published shape apart from the strides and width; R(2+1)D is
pytorchvideo's depth-50 layout, R(2+1)D-18 its basic-block layout; C3D is the plain 3D CNN to
beat (w = 10 is about the found nets' FLOPs on 8 x 32 x 32); Frame2D and TSM are per-frame 2D
CNNs, the baselines that cannot (Frame2D) or barely (TSM: shifted channels) see motion.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import nn

from hybridnas.compat import reset_to_torch_init
from hybridnas.models.registry import register_model

PUBLISHED_STRIDES = (2, 2, 2, 2, 2)  # pytorchvideo's X3D / R(2+1)D: stem, stages 1-4
SMALL_INPUT_STRIDES = (2, 1, 2, 2, 2)  # R(2+1)D paper: no stride in the first stage
X3D_SPEC_KEYS = {
    "frames": "frames",
    "size": "size",
    "dropout": "dropout",
    "x3d_width_factor": "width_factor",
    "spatial_strides": "spatial_strides",
}
R2PLUS1D_SPEC_KEYS = {
    "size": "size",
    "dropout": "dropout",
    "r2plus1d_width": "width",
    "spatial_strides": "spatial_strides",
}


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


@register_model("x3d_xs", spec_keys=X3D_SPEC_KEYS)
def create_x3d_xs(
    *,
    num_classes: int,
    frames: int,
    size: int,
    dropout: float = 0.5,
    width_factor: float = 2.0,
    spatial_strides: Sequence[int] | None = None,
    torch_init: bool = False,
) -> nn.Module:
    """X3D-XS (Feichtenhofer 2020) for (B, 3, frames, size, size) clips -> (B, num_classes)::

        clip (B, 3, T, H, W)
          -> stem: Conv3d 1x3x3 (stride 1, s0, s0) -> depthwise Conv3d 5x1x1 -> BN -> ReLU
          -> stage 1..4: bottleneck blocks (1x1x1 expand x2.25, depthwise 3x3x3, SE 1/16,
             Swish, 1x1x1 project) + shortcut, the first of stage i strides (1, s_i, s_i);
             widths 12/24/48/96 x width_factor, depths 3/5/11/7 (depth factor 2.2)
          -> Conv3d 1x1x1 x2.25 -> BN -> ReLU -> average pool over the last map
             -> Linear 2048 -> ReLU -> Dropout -> Linear -> logits

    ``spatial_strides`` (s0, s1..s4; None: all 2) must leave at least one pixel of ``size``.
    ``torch_init``: start from PyTorch's initialisation instead of pytorchvideo's (zeroed last
    BN in every residual branch, see :func:`reset_to_torch_init`); ``model.name=x3d_xs_ti``.
    """
    from pytorchvideo.models.x3d import create_x3d

    stem, *stages = check_spatial_strides(spatial_strides, size)
    model = create_x3d(
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
    return reset_to_torch_init(model) if torch_init else model


# X3D-XS from PyTorch's initialisation: the same builder with ``torch_init=True``, so the
# (B, 3, frames, size, size) -> (B, num_classes) block and its keywords are declared once.
create_x3d_xs_ti = register_model("x3d_xs_ti", spec_keys=X3D_SPEC_KEYS)(
    functools.partial(create_x3d_xs, torch_init=True)
)


@register_model("r2plus1d", spec_keys=R2PLUS1D_SPEC_KEYS)
def create_r2plus1d(
    *,
    num_classes: int,
    dropout: float = 0.5,
    width: int = 16,
    size: int = 32,
    spatial_strides: Sequence[int] | None = None,
) -> nn.Module:
    """R(2+1)D-50 (Tran 2018, pytorchvideo layout) with stem width ``width``:
    (B, 3, T, size, size) clips -> (B, num_classes) logits, any T::

        clip (B, 3, T, H, W)
          -> stem: Conv3d 1x7x7 (stride 1, s0, s0) -> BN -> ReLU                  width w
          -> stage 1..4: 3/4/6/3 bottleneck blocks (1x1x1 -> (2+1)D 3x3x3 -> 1x1x1)
             + shortcut, widths 4w/8w/16w/32w, first block of stage i strides
             (t_i, s_i, s_i) with t = (1, 1, 2, 2)
          -> adaptive average pool -> Dropout -> Linear -> logits

    ``spatial_strides`` (s0, s1..s4; None: all 2) must leave at least one pixel of ``size``."""
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


class Basic2plus1dBlock(nn.Module):
    """The residual branch of R(2+1)D-18's basic block: two (2+1)D convolutions (no 1x1x1
    bottleneck). pytorchvideo ships only bottleneck branches (``create_bottleneck_block``,
    ``create_2plus1d_bottleneck_block``), so this one is written here; it takes the keywords
    ``pytorchvideo.models.resnet.create_res_block`` hands its ``bottleneck`` and uses
    ``dim_in``, ``dim_out`` and ``conv_b_stride`` (the stage's stride, on the first conv)::

        x (dim_in)
          -> Conv3d 3x1x1 (stride t) -> BN -> ReLU -> Conv3d 1x3x3 (stride s)   (2+1)D, dim_out
          -> BN -> ReLU
          -> Conv3d 3x1x1 -> BN -> ReLU -> Conv3d 1x3x3                          (2+1)D, dim_out
          -> BN
          -> (create_res_block adds the shortcut, then ReLU)

    The (2+1)D convolutions' middle width is ``dim_out`` (the paper's M_i = 2.25 N for equal
    parameters with a 3x3x3 conv; fewer FLOPs here, the width sets them anyway)."""

    def __init__(
        self,
        *,
        dim_in: int,
        dim_out: int,
        conv_b_stride: Sequence[int] = (1, 1, 1),
        norm=nn.BatchNorm3d,
        activation=nn.ReLU,
        **_unused,  # create_res_block's bottleneck keywords a basic block has no use for
    ) -> None:
        super().__init__()
        from pytorchvideo.layers.convolutions import create_conv_2plus1d

        def conv(c_in: int, stride: Sequence[int]) -> nn.Module:
            return create_conv_2plus1d(
                in_channels=c_in,
                out_channels=dim_out,
                kernel_size=(3, 3, 3),
                stride=tuple(stride),
                padding=(1, 1, 1),
                norm=norm,
                activation=activation,
            )

        self.conv_a, self.norm_a = conv(dim_in, conv_b_stride), norm(dim_out)
        self.act_a = activation()
        self.conv_b, self.norm_b = conv(dim_out, (1, 1, 1)), norm(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_b(self.conv_b(self.act_a(self.norm_a(self.conv_a(x)))))


R2PLUS1D_18_DEPTHS = (2, 2, 2, 2)  # basic blocks per stage (ResNet-18)


@register_model("r2plus1d_18", spec_keys=R2PLUS1D_SPEC_KEYS)
def create_r2plus1d_18(
    *,
    num_classes: int,
    width: int = 16,
    depths: Sequence[int] = R2PLUS1D_18_DEPTHS,
    size: int = 32,
    spatial_strides: Sequence[int] | None = None,
    temporal_strides: Sequence[int] = (1, 1, 2, 2),
    dropout: float = 0.5,
) -> nn.Module:
    """R(2+1)D-18 (Tran 2018: basic (2+1)D blocks, 2 per stage) for (B, 3, T, size, size)
    clips -> (B, num_classes) logits, any T, starting from PyTorch's initialisation::

        clip (B, 3, T, H, W)
          -> stem: Conv3d 1x7x7 (stride 1, s0, s0) -> BN -> ReLU -> Conv3d 3x1x1     width w
             -> BN -> ReLU
          -> stage 1..4: depths[i] x Basic2plus1dBlock + shortcut, width w * 2^(i-1);
             the first block of stage i strides (temporal_strides[i], s_i, s_i),
             its shortcut is a strided 1x1x1 Conv3d -> BN when the shape changes
          -> global average pool -> Dropout -> Linear -> logits

    Stem, stages, shortcuts and head are pytorchvideo's (``create_res_basic_stem`` with a
    spatial-first (2+1)D conv as the paper's conv1, ``create_res_stage``, ``create_res_basic_head``
    with an adaptive pool and no Softmax); the block is :class:`Basic2plus1dBlock`. Unlike
    pytorchvideo's builders the weights then go back to PyTorch's defaults
    (:func:`reset_to_torch_init`: pytorchvideo's zeroed residual BN keeps it at chance here).
    ``spatial_strides`` (s0, s1..s4) as for :func:`create_r2plus1d`; ``depths`` (1, 1, 1, 1)
    gives an R(2+1)D-10."""
    from functools import partial

    from pytorchvideo.layers.convolutions import create_conv_2plus1d
    from pytorchvideo.models.head import create_res_basic_head
    from pytorchvideo.models.net import Net
    from pytorchvideo.models.resnet import create_res_stage
    from pytorchvideo.models.stem import create_res_basic_stem

    stem_s, *strides = check_spatial_strides(spatial_strides, size)
    if len(depths) != 4 or min(depths) < 1 or len(temporal_strides) != 4:
        raise ValueError(f"R(2+1)D-18 needs 4 stage depths >= 1, got {list(depths)}")
    blocks: list[nn.Module] = [
        create_res_basic_stem(
            in_channels=3,
            out_channels=width,
            conv_kernel_size=(3, 7, 7),
            conv_stride=(1, stem_s, stem_s),
            conv_padding=(1, 3, 3),
            conv=partial(create_conv_2plus1d, conv_xy_first=True, inner_channels=width),
            pool=None,
        )
    ]
    dim_in = width
    for i, (depth, s, t) in enumerate(zip(depths, strides, temporal_strides, strict=True)):
        dim_out = width * 2**i
        blocks.append(
            create_res_stage(
                depth=depth,
                dim_in=dim_in,
                dim_inner=dim_out,
                dim_out=dim_out,
                bottleneck=Basic2plus1dBlock,
                conv_a_stride=(1, 1, 1),
                conv_b_stride=(t, s, s),
            )
        )
        dim_in = dim_out
    blocks.append(
        create_res_basic_head(
            in_features=dim_in,
            out_features=num_classes,
            pool=nn.AdaptiveAvgPool3d,
            output_size=(1, 1, 1),
            dropout_rate=dropout,
            activation=None,
        )
    )
    return reset_to_torch_init(Net(blocks=nn.ModuleList(blocks)))


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


@register_model("c3d", spec_keys={"dropout": "dropout", "c3d_width": "width"})
def create_c3d(
    *, num_classes: int, width: int = 16, in_channels: int = 3, dropout: float = 0.0
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


@register_model("frame2d", spec_keys={"dropout": "dropout"})
def create_frame2d(
    *, num_classes: int, width: int = 16, in_channels: int = 3, dropout: float = 0.0
) -> nn.Module:
    """:class:`Frame2D` with stage widths w/2w/4w (``width``; 16 is ``model.name=frame2d``):
    (B, C, T, H, W) clips -> (B, num_classes) logits, frames never mixed before the mean::

        frames (B*T, C, H, W)
          -> [Conv2d 3x3 -> BN -> ReLU] x 2, width w      (stride 1)
          -> [Conv2d 3x3 -> BN -> ReLU] x 2, width 2w     (first conv stride 2)
          -> [Conv2d 3x3 -> BN -> ReLU] x 2, width 4w     (first conv stride 2)
          -> global average pool per frame -> mean over T -> Dropout -> Linear -> logits"""
    widths = (width, 2 * width, 4 * width)
    return Frame2D(num_classes, in_channels=in_channels, widths=widths, dropout=dropout)


class TemporalShift(nn.Module):
    """TSM's zero-FLOP temporal mixing (Lin 2019) on frame-stacked features:
    (B*T, C, H, W) -> (B*T, C, H, W); channels [0, C/div) take the next frame's values,
    [C/div, 2C/div) the previous frame's (zeros past the clip's ends), the rest stay."""

    def __init__(self, frames: int, shift_div: int = 8) -> None:
        super().__init__()
        self.frames, self.shift_div = frames, shift_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bt, c, h, w = x.shape
        x = x.reshape(bt // self.frames, self.frames, c, h, w)
        fold = max(1, c // self.shift_div)
        out = torch.zeros_like(x)
        out[:, :-1, :fold] = x[:, 1:, :fold]
        out[:, 1:, fold : 2 * fold] = x[:, :-1, fold : 2 * fold]
        out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
        return out.reshape(bt, c, h, w)


class FrameNet(nn.Module):
    """Frames through a 2D trunk, logits of the frame-averaged features:
    (B, C, T, H, W) -> trunk on (B*T, C, H, W) -> (B*T, D, h, w) -> pool -> mean over T -> (B, K).
    """

    def __init__(self, trunk: nn.Module, dim: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.trunk = trunk
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        return self.head(self.pool(self.trunk(frames)).reshape(b, t, -1).mean(1))


def create_tsm(
    *,
    num_classes: int,
    frames: int,
    width: int = 16,
    in_channels: int = 3,
    shift_div: int = 8,
    dropout: float = 0.0,
) -> nn.Module:
    """A TSM-style frame-level 2D ResNet (Lin 2019) for (B, C, frames, H, W) clips::

        frames (B*T, C, H, W)
          -> stem: Conv2d 3x3 stride 2 -> BN -> ReLU                        width w
          -> stage 1..3: one timm ``BasicBlock`` each, widths w/2w/4w, stride 1/2/2;
             TemporalShift (1/shift_div channels each way) at the start of each
             residual branch (TSM's "residual shift"), 1x1 conv + BN shortcut on a shape change
          -> global average pool per frame -> mean over T -> Dropout -> Linear -> (B, K)

    The shift is the only temporal mixing: the net sees motion across blocks at 2D cost."""
    from timm.models.resnet import BasicBlock

    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, width, 3, 2, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    ]
    c = width
    for i, stride in enumerate((1, 2, 2)):
        w = width * 2**i
        down = None
        if stride != 1 or c != w:
            down = nn.Sequential(nn.Conv2d(c, w, 1, stride, bias=False), nn.BatchNorm2d(w))
        block = BasicBlock(c, w, stride=stride, downsample=down)
        block.conv1 = nn.Sequential(TemporalShift(frames, shift_div), block.conv1)
        layers.append(block)
        c = w
    return FrameNet(nn.Sequential(*layers), c, num_classes, dropout)
