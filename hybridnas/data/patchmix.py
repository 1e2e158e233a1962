"""PatchMix for clips: a sample composed of spatio-temporal tubes of two clips in a grid.

A clip (C, T, H, W) is cut into a g_t x g_h x g_w grid of tubes; a *pattern* says which tubes
come from the partner clip and a *pairing rule* picks the partner within the batch. The soft
label is each clip's share of the voxels (timm's ``one_hot`` with label smoothing, as
VideoMixup's targets). The patch-level loss classifies every position of the feature map
before the head's pooling with the head's own linear layer, against the label of the tube
that position mostly comes from. ``tools/patchmix_search.py`` evolves the policy (grid,
pattern, pairing) with a fixed trained model and writes it as YAML for ``train.patchmix.policy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hybridnas.config import ConfigError
from hybridnas.config.train import PatchMixConfig
from hybridnas.data.transforms import VideoMixup

# ---------------------------------------------------------------- masks and pairs


def tube_masks(batch: int, grid: Sequence[int], pattern: str) -> torch.Tensor:
    """(B, g_t, g_h, g_w) bool: True where the tube comes from the partner clip. Every pattern
    takes about half the tubes from the partner (``random``: exactly floor/ceil half, chosen at
    random), so the mix is never trivial; the parity of checkerboard and stripes is drawn."""
    gt, gh, gw = (int(g) for g in grid)
    n = gt * gh * gw
    if pattern == "random":
        order = torch.rand(batch, n).argsort(1)
        take = torch.randint(n // 2, n - n // 2 + 1, (batch, 1))  # floor or ceil of half
        return (order < take).reshape(batch, gt, gh, gw)
    it, ih, iw = torch.meshgrid(torch.arange(gt), torch.arange(gh), torch.arange(gw), indexing="ij")
    base = {
        "checkerboard": it + ih + iw,
        "stripes_t": it,
        "stripes_h": ih,
        "stripes_w": iw,
    }[pattern]
    parity = torch.randint(0, 2, (batch, 1, 1, 1))
    return ((base[None] + parity) % 2).bool()


def expand_mask(mask: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """(B, g_t, g_h, g_w) tube mask -> (B, 1, T, H, W) voxel mask; tube i of an axis of n
    voxels covers voxels [floor(i n / g), floor((i + 1) n / g))."""
    out = mask
    for axis, n in enumerate(shape, start=1):
        g = out.shape[axis]
        idx = torch.arange(n, device=mask.device) * g // n
        out = out.index_select(axis, idx)
    return out[:, None]


def _choose(allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, B) allowed partners -> (a random allowed partner per row, whether the row had one)."""
    scores = torch.rand(allowed.shape).masked_fill(~allowed, -1.0)
    return scores.argmax(1), allowed.any(1)


def pair_indices(
    y: torch.Tensor, pairing: str, partners: Sequence[int] | None = None
) -> torch.Tensor:
    """(B,) partner index per clip, never the clip itself when B > 1. ``other_class``: a clip
    of another class; ``hardest``: one of the class ``partners[y]`` (the class the fixed model
    confuses most with y). Falling back in order hardest -> other_class -> any other clip."""
    b = len(y)
    if b < 2:
        return torch.zeros(b, dtype=torch.long)
    y = y.cpu()
    other = ~torch.eye(b, dtype=torch.bool)
    pick, _ = _choose(other)
    if pairing in ("other_class", "hardest"):
        j, ok = _choose(other & (y[:, None] != y[None, :]))
        pick = torch.where(ok, j, pick)
    if pairing == "hardest":
        want = torch.as_tensor(list(partners), dtype=torch.long)[y]
        j, ok = _choose(other & (y[None, :] == want[:, None]))
        pick = torch.where(ok, j, pick)
    return pick


# ---------------------------------------------------------------- the mixer


@dataclass
class PatchMix:
    """Mix a batch (B, C, T, H, W) by tubes; call returns (clips, soft targets (B, classes)).

    After a call, ``voxel_mask`` (B, 1, T, H, W) and the pair's labels stay for
    ``extra_loss``, which reads the feature map captured by ``attach``'s hook on the head."""

    num_classes: int
    grid: tuple[int, int, int] = (2, 2, 2)
    pattern: str = "random"
    pairing: str = "random"
    patch_loss: float = 0.5
    label_smoothing: float = 0.1
    partners: tuple[int, ...] | None = None
    voxel_mask: torch.Tensor | None = field(default=None, repr=False)
    labels: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)
    features: torch.Tensor | None = field(default=None, repr=False)
    classifier: nn.Linear | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, cfg: PatchMixConfig, num_classes: int, label_smoothing: float) -> PatchMix:
        return cls(
            num_classes,
            cfg.grid,
            cfg.pattern,
            cfg.pairing,
            float(cfg.patch_loss),
            label_smoothing,
            cfg.partners,
        )

    def mix(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mixed clips, partner index (B,), voxel mask (B, 1, T, H, W) True = partner)."""
        j = pair_indices(y, self.pairing, self.partners).to(x.device)
        tubes = tube_masks(len(y), self.grid, self.pattern).to(x.device)
        mask = expand_mask(tubes, x.shape[2:])
        return torch.where(mask, x[j], x), j, mask

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mixed, j, mask = self.mix(x, y)
        share = mask.flatten(1).float().mean(1)  # the partner's share of the voxels
        self.voxel_mask, self.labels = mask, (y, y[j])
        return mixed, soft_targets(y, y[j], share, self.num_classes, self.label_smoothing)

    def attach(self, model: nn.Module) -> None:
        """Capture the head's input (the map before pooling) on every training forward."""
        head = getattr(model, "head", None)
        linears = (
            [m for m in head.modules() if isinstance(m, nn.Linear)] if head is not None else []
        )
        if not linears:
            raise ConfigError(
                "train.patchmix.patch_loss > 0 needs a model with a linear `head`: set it to 0"
            )
        self.classifier = linears[-1]

        def grab(module: nn.Module, inputs: tuple) -> None:
            if module.training:
                self.features = inputs[0]

        head.register_forward_pre_hook(grab)

    def extra_loss(self) -> torch.Tensor | float:
        """``patch_loss`` x the patch-level cross-entropy of the last mixed batch (0 if off)."""
        if not self.patch_loss or self.features is None or self.labels is None:
            return 0.0
        feats, self.features = self.features, None
        if feats.dim() != 5:
            raise ConfigError(
                "train.patchmix.patch_loss > 0 needs the (B, C, T, H, W) map before the head, "
                f"got {tuple(feats.shape)}: set it to 0"
            )
        return self.patch_loss * patch_level_loss(
            feats, self.classifier, self.voxel_mask, *self.labels, self.label_smoothing
        )


def soft_targets(
    y: torch.Tensor,
    y_partner: torch.Tensor,
    share: torch.Tensor,
    num_classes: int,
    smoothing: float,
) -> torch.Tensor:
    """(B, classes): (1 - share) x own label + share x partner's, each smoothed as timm's."""
    from timm.data.mixup import one_hot

    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    own = one_hot(y, num_classes, on, off)
    other = one_hot(y_partner, num_classes, on, off)
    s = share.to(own.dtype)[:, None]
    return own * (1 - s) + other * s


def position_labels(
    voxel_mask: torch.Tensor, size: Sequence[int], y: torch.Tensor, y_partner: torch.Tensor
) -> torch.Tensor:
    """(B, T', H', W') label of each feature position: the clip most of its receptive block
    (the voxel mask average-pooled to T' x H' x W') comes from; ties go to the clip's own."""
    frac = F.adaptive_avg_pool3d(voxel_mask.float(), tuple(size))[:, 0]
    shape = (-1, 1, 1, 1)
    return torch.where(frac > 0.5, y_partner.view(shape), y.view(shape))


def patch_level_loss(
    feats: torch.Tensor,
    classifier: nn.Linear,
    voxel_mask: torch.Tensor,
    y: torch.Tensor,
    y_partner: torch.Tensor,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy of the head's linear layer at every position of ``feats`` (B, C, T', H',
    W') against ``position_labels``, averaged over positions and clips."""
    logits = classifier(feats.float().movedim(1, -1))  # (B, T', H', W', classes)
    labels = position_labels(voxel_mask, feats.shape[2:], y, y_partner)
    return F.cross_entropy(logits.flatten(0, 3), labels.flatten(), label_smoothing=smoothing)


def build_mixer(t: Any, num_classes: int, model: nn.Module) -> VideoMixup | PatchMix | None:
    """The batch mixer ``train.*`` (a TrainConfig) asks for: PatchMix (hooked on ``model``
    when it has a patch-level loss), timm's mixup/cutmix, or none."""
    if t.mix == "patchmix":
        mixer = PatchMix.from_config(t.patchmix, num_classes, t.label_smoothing)
        if mixer.patch_loss:
            mixer.attach(model)  # the patch-level loss reads the map before the head's pool
        return mixer
    if t.mixup > 0 or t.cutmix > 0:
        return VideoMixup(
            num_classes,
            mixup_alpha=t.mixup,
            cutmix_alpha=t.cutmix,
            label_smoothing=t.label_smoothing,
        )
    return None
