"""PatchMix for clips: soft labels sum to 1 and equal the tube (voxel) shares, the patterns
and pairings do what they say, the patch-level loss labels positions by their tube, every new
config key is refused in one line, and a real training run goes through the train loop."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hybridnas.config import ConfigError, TrainConfig, TrainRun, check_config
from hybridnas.config.train import PATTERNS
from hybridnas.data.patchmix import (
    PatchMix,
    expand_mask,
    pair_indices,
    patch_level_loss,
    position_labels,
    tube_masks,
)

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "genotype=builtin",
    "model.num_cells=3",
    "model.stage_widths=[4,8,8]",
    "model.stem_channels=8",
    "model.stem_stride=[1,2,2]",
    "data.num_train=64",
    "data.num_test=16",
    "data.batch_size=8",
    "train.steps_per_epoch=3",
    "tracking=none",
    "engine=none",
    "threads=1",
]


def cfg_of(overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "recipes"), version_base="1.3"):
        return compose("train", overrides=overrides)


def identity_clips(b: int, t: int = 5, h: int = 7, w: int = 9) -> torch.Tensor:
    """(B, 2, T, H, W): clip i is the constant i, so a voxel says which clip it came from."""
    return torch.arange(b, dtype=torch.float)[:, None, None, None, None].expand(b, 2, t, h, w)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("grid", [(2, 2, 2), (3, 2, 4), (4, 3, 3)])
def test_labels_sum_to_one_and_match_the_tube_shares(pattern, grid):
    torch.manual_seed(0)
    b, k = 12, 12  # one class per clip: the partner's label weight is its voxel share
    x, y = identity_clips(b), torch.arange(b)
    mixer = PatchMix(k, grid, pattern, "random", label_smoothing=0.0)
    mixed, target = mixer(x, y)
    assert torch.allclose(target.sum(1), torch.ones(b))
    for i in range(b):
        sources = mixed[i, 0].flatten().long()
        share = torch.bincount(sources, minlength=b).float() / sources.numel()
        assert torch.allclose(target[i], share, atol=1e-6), (i, target[i], share)
        assert (share > 0).sum() == 2 and share[i] > 0  # two clips, its own among them
        assert 0.2 <= share[i] <= 0.8  # about half: no trivial mix


def test_smoothed_labels_still_sum_to_one():
    torch.manual_seed(1)
    x, y = torch.randn(7, 3, 8, 16, 16), torch.randint(0, 10, (7,))
    _, target = PatchMix(10, (2, 2, 2), label_smoothing=0.1)(x, y)
    assert torch.allclose(target.sum(1), torch.ones(7)) and target.min() > 0


def test_stripes_and_checkerboard_are_what_they_say():
    torch.manual_seed(0)
    stripes = tube_masks(16, (4, 2, 2), "stripes_t")
    assert (stripes == stripes[:, :, :1, :1]).all()  # constant within a time slab
    assert (stripes[:, 1:] != stripes[:, :-1]).all()  # alternating along time
    board = tube_masks(16, (2, 2, 2), "checkerboard")
    assert (board.flatten(1).sum(1) == 4).all()
    assert (board[:, 0, 0, 0] != board[:, 0, 0, 1]).all() and (
        board[:, 0, 0, 0] == board[:, 1, 1, 0]
    ).all()
    rnd = tube_masks(200, (3, 1, 1), "random")
    assert set(rnd.flatten(1).sum(1).tolist()) == {1, 2}


def test_tubes_cover_uneven_axes():
    mask = torch.tensor([[[[True, False, True]]]])  # (1, 1, 1, 3): g_w = 3
    voxels = expand_mask(mask, (2, 3, 7))[0, 0, 0, 0]
    assert voxels.tolist() == [True, True, True, False, False, True, True]


def test_pairings():
    torch.manual_seed(0)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    for _ in range(20):
        assert (pair_indices(y, "random") != torch.arange(8)).all()
        assert (y[pair_indices(y, "other_class")] != y).all()
        partners = (1, 2, 3, 0)
        assert (y[pair_indices(y, "hardest", partners)] == torch.tensor(partners)[y]).all()
    lone = torch.tensor([5, 5, 5])  # no other class in the batch: falls back to another clip
    assert (pair_indices(lone, "other_class") != torch.arange(3)).all()


def test_position_labels_follow_the_tubes():
    mask = tube_masks(1, (2, 2, 2), "checkerboard")
    voxels = expand_mask(mask, (8, 16, 16))
    labels = position_labels(voxels, (2, 2, 2), torch.tensor([3]), torch.tensor([7]))
    assert torch.equal(labels[0] == 7, mask[0])
    coarse = position_labels(voxels, (1, 1, 1), torch.tensor([3]), torch.tensor([7]))
    assert coarse.item() == 3  # a tie (half and half) stays with the clip's own label


def test_patch_loss_is_low_only_for_the_right_labels():
    classifier = torch.nn.Linear(2, 2, bias=False)
    classifier.weight.data = torch.eye(2) * 10
    mask = tube_masks(1, (2, 1, 1), "stripes_t")
    voxels = expand_mask(mask, (4, 4, 4))
    own, other = torch.tensor([0]), torch.tensor([1])
    feats = torch.nn.functional.one_hot(mask.long(), 2).float().movedim(-1, 1)  # (1, 2, 2, 1, 1)
    right = patch_level_loss(feats, classifier, voxels, own, other)
    wrong = patch_level_loss(feats, classifier, voxels, other, own)
    assert right < 1e-3 and wrong > 5


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.patchmix.grid=[0,2,2]", "train.patchmix.grid must be 3 tube counts"),
        ("train.patchmix.grid=[2,9,2]", "train.patchmix.grid must be 3 tube counts"),
        ("train.patchmix.grid=[2,2]", "train.patchmix.grid must be 3 tube counts"),
        ("train.patchmix.grid=[1,1,1]", "train.patchmix.grid must have at least 2 tubes"),
        ("train.patchmix.pattern=diagonal", "train.patchmix.pattern' must be one of"),
        ("train.patchmix.pairing=nearest", "train.patchmix.pairing' must be one of"),
        ("train.mix=mixup", "train.mix' must be one of"),
    ],
)
def test_choices_and_ranges_are_refused_by_check_config_or_the_dataclass(override, message):
    cfg = cfg_of(["genotype=builtin", override])
    with pytest.raises(ConfigError, match=message) as err:
        check_config(cfg, "train")
        TrainRun.from_cfg(cfg)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patchmix": {"patch_loss": -0.1}}, r"train.patchmix.patch_loss must be in \[0, 10\]"),
        ({"patchmix": {"patch_loss": 11}}, r"train.patchmix.patch_loss must be in \[0, 10\]"),
        ({"patchmix": {"grid": [1, 2, 2], "pattern": "stripes_t"}}, "stripes_t needs at least 2"),
        ({"patchmix": {"pairing": "hardest"}}, "hardest needs a policy"),
        ({"patchmix": {"pattern": "diagonal"}}, "train.patchmix.pattern must be one of"),
        ({"patchmix": {"pairing": "nearest"}}, "train.patchmix.pairing must be one of"),
        ({"patchmix": {"policy": "/nonexistent.yaml"}}, "train.patchmix.policy=/nonexistent"),
        ({"patchmix": {"grids": [2, 2, 2]}}, "unknown config key 'train.patchmix.grids'"),
        ({"mix": "cutmix"}, "'train.mix' must be one of"),
        ({"mix": "patchmix", "mixup": 0.8}, "train.mix=patchmix replaces timm's mixup/cutmix"),
    ],
)
def test_every_new_key_out_of_range_is_refused_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message) as err:
        TrainConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_policy_file_replaces_the_keys(tmp_path):
    path = tmp_path / "policy.yaml"
    policy = {"grid": [1, 2, 2], "pattern": "stripes_h", "pairing": "hardest"}
    OmegaConf.save({"policy": {**policy, "partners": list(range(1, 10)) + [0]}}, path)
    cfg = TrainConfig(mix="patchmix", patchmix={"policy": str(path), "grid": [4, 4, 4]})
    assert cfg.patchmix.grid == (1, 2, 2) and cfg.patchmix.pairing == "hardest"
    assert cfg.patchmix.partners[9] == 0


def test_patchmix_trains_through_the_real_loop(tmp_path):
    spec = importlib.util.spec_from_file_location("hn_tool_train", ROOT / "tools" / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    cfg = cfg_of(
        [*TINY, "train.epochs=1", "train.mix=patchmix", "train.patchmix.patch_loss=1.0"]
        + [f"out_dir={tmp_path / 'run'}"]
    )
    st = train.run(cfg)
    mixer = st.mixup
    assert isinstance(mixer, PatchMix) and mixer.voxel_mask is not None
    assert st.global_step == 3 and torch.isfinite(torch.tensor(st.history[-1]["train/loss"]))
    # the hook saw the (B, C, T', H', W') map and the patch loss reaches the head's weights
    x = torch.randn(4, 3, 8, 32, 32)
    st.model.train()
    mixed, _ = mixer(x, torch.tensor([0, 1, 2, 3]))
    st.model(mixed)
    loss = mixer.extra_loss()
    loss.backward()
    assert loss > 0 and mixer.classifier.weight.grad.abs().sum() > 0


def search_tool():
    spec = importlib.util.spec_from_file_location(
        "hn_patchmix_search", ROOT / "tools" / "patchmix_search.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


class ShareReader(torch.nn.Module):
    """Reads a clip whose voxels hold their source's class index: log of each class's share."""

    num_classes = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        counts = torch.nn.functional.one_hot(x[:, 0].flatten(1).long(), self.num_classes).sum(1)
        return (counts.float() / counts.sum(1, keepdim=True)).clamp_min(1e-9).log()


def test_search_fitness_is_zero_for_a_model_that_reads_the_shares_exactly():
    search = search_tool()
    y = torch.arange(32) % 4
    clips = y[:, None, None, None, None].float().expand(32, 1, 4, 8, 8)
    policy = search.Policy((2, 2, 2), "checkerboard", "other_class")
    exact = search.fitness(policy, ShareReader(), clips, y, [1, 2, 3, 0], seed=0)
    blind = search.fitness(policy, lambda x: torch.zeros(len(x), 4), clips, y, [1, 2, 3, 0], seed=0)
    assert abs(exact) < 1e-5 and blind < -0.3


def test_search_mutations_stay_valid_and_canonical():
    import random

    search = search_tool()
    rng = random.Random(0)
    p = search.random_policy(rng)
    for _ in range(200):
        child = search.mutate(p, rng)
        assert child.valid() and child == child.canonical() and child != p
        p = child
    assert search.Policy((3, 4, 2), "stripes_w", "random").canonical().grid == (1, 1, 2)
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.1, 0.4]])
    assert search.confusion_partners(probs, torch.tensor([0, 1, 2]), 3) == [1, 2, 0]
