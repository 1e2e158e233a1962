"""train.warmup_epochs may be a fraction of an epoch: the warm-up is counted in updates."""

import torch

from hybridnas.config import TrainConfig
from hybridnas.train.loop import make_scheduler


def _lrs(warmup_epochs: float, updates_per_epoch: int = 10, steps: int = 12) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    t = TrainConfig(epochs=4, lr=0.1, warmup_epochs=warmup_epochs)
    scheduler = make_scheduler(opt, t, updates_per_epoch)
    out = []
    for step in range(steps):
        scheduler.step_update(step)
        out.append(opt.param_groups[0]["lr"])
    return out


def test_a_half_epoch_warm_up_rises_over_half_an_epochs_updates():
    lrs = _lrs(0.5)
    assert lrs[0] == 0.1 * 0.01  # starts from 1% of lr
    assert all(
        a < b for a, b in zip(lrs[:5], lrs[1:6], strict=True)
    )  # rising for 5 of the 10 updates
    assert all(a > b for a, b in zip(lrs[5:-1], lrs[6:], strict=True))  # then the cosine falls
    assert max(lrs) <= 0.1


def test_no_warm_up_starts_at_the_full_lr():
    assert _lrs(0)[0] == 0.1
