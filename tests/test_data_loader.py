"""Sampler determinism, sharding and resume; collate of bad items; mixup/cutmix on 5D clips."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from hybridnas.data import BadItem, ResumableDistributedSampler, VideoMixup, build_loader


class Numbers(Dataset):
    """Item i is (tensor [i], i); items in ``bad`` come back as BadItem."""

    def __init__(self, n: int, bad=()) -> None:
        self.n, self.bad = n, set(bad)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if i in self.bad:
            return BadItem(i, f"item{i}", "broken")
        return torch.tensor([float(i)]), i


def _order(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_same_seed_same_order_and_epochs_differ():
    make = lambda seed: ResumableDistributedSampler(Numbers(50), batch_size=4, seed=seed)  # noqa: E731
    assert _order(make(0), 0) == _order(make(0), 0)
    assert _order(make(0), 0) != _order(make(0), 1)
    assert _order(make(0), 0) != _order(make(1), 0)
    assert sorted(_order(make(0), 3)) == list(range(50))


def test_ranks_get_disjoint_shards_covering_the_data():
    shards = [
        _order(ResumableDistributedSampler(Numbers(48), batch_size=4, num_replicas=3, rank=r), 2)
        for r in range(3)
    ]
    assert all(len(s) == 16 for s in shards)
    assert sorted(sum(shards, [])) == list(range(48))


def test_resume_at_a_batch_continues_at_the_same_data():
    ds = Numbers(40)
    full = build_loader(ds, batch_size=4, train=True, seed=7, rank=1, world_size=2)
    full.sampler.set_epoch(5)
    batches = [y.tolist() for _, y in full]
    resumed = build_loader(ds, batch_size=4, train=True, seed=7, rank=1, world_size=2)
    resumed.sampler.set_epoch(5)
    resumed.sampler.set_start_batch(3)
    assert len(resumed) == len(batches) - 3
    assert [y.tolist() for _, y in resumed] == batches[3:]


def test_bad_items_dropped_and_counted_with_workers():
    ds = Numbers(20, bad={2, 3, 11})
    loader = build_loader(ds, batch_size=4, train=False, workers=2)
    seen = [i for _, y in loader for i in y.tolist()]
    assert seen == [i for i in range(20) if i not in {2, 3, 11}]
    assert loader.last_epoch_bad == 3


def test_cutmix_box_is_the_same_in_every_frame():
    torch.manual_seed(0)
    mix = VideoMixup(num_classes=5, mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0)
    x = torch.stack([torch.zeros(3, 8, 16, 16), torch.ones(3, 8, 16, 16)])
    out, target = mix(x, torch.tensor([0, 1]))
    assert out.shape == x.shape and target.shape == (2, 5)
    box = out[0] == 1  # where clip 0 received clip 1's pixels
    assert box.any() and (box == box[:1, :1]).all()  # one box, same in every channel and frame
    rows, cols = box[0, 0].any(1), box[0, 0].any(0)
    assert box[0, 0].sum() == rows.sum() * cols.sum()  # and it is a rectangle in (H, W)
    lam = 1 - box[0, 0].float().mean()
    assert torch.allclose(target[0], torch.tensor([lam, 1 - lam, 0, 0, 0]), atol=1e-5)


def test_mixup_on_clips():
    mix = VideoMixup(num_classes=3, mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.0)
    x = torch.stack([torch.zeros(3, 4, 8, 8), torch.ones(3, 4, 8, 8)])
    out, target = mix(x, torch.tensor([0, 2]))
    assert torch.allclose(out[0], torch.full_like(out[0], float(target[0, 2])), atol=1e-6)


def test_mixup_odd_batch_after_a_skip():
    mix = VideoMixup(num_classes=3, mixup_alpha=1.0, label_smoothing=0.0)
    out, target = mix(torch.rand(3, 3, 4, 8, 8), torch.tensor([0, 1, 2]))
    assert out.shape == (3, 3, 4, 8, 8) and target[2].tolist() == [0.0, 0.0, 1.0]
