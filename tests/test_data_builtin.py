"""The built-in moving-digits dataset: deterministic, cached, and it needs motion."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hybridnas.data import MovingDigits, build_dataset, build_loader

SMALL = {"num_train": 40, "num_search_val": 20, "num_test": 20}


def test_defaults_shape_and_normalisation(tmp_path):
    ds = build_dataset({"name": "builtin", "cache_dir": str(tmp_path), **SMALL}, "train")
    clip, label = ds[0]
    assert clip.shape == (3, 8, 32, 32) and clip.dtype == torch.float32
    assert 0 <= label < 10 and ds.num_classes == 10 and len(ds) == 40
    x, y = next(iter(build_loader(ds, batch_size=8, train=True)))
    assert x.shape == (8, 3, 8, 32, 32) and y.shape == (8,)


def test_identical_across_builds_and_cached(tmp_path, monkeypatch):
    a = MovingDigits("train", seed=3, cache_dir=tmp_path / "a", **SMALL)
    b = MovingDigits("train", seed=3, cache_dir=tmp_path / "b", **SMALL)
    assert torch.equal(a.clips, b.clips) and torch.equal(a.labels, b.labels)
    c = MovingDigits("train", seed=4, cache_dir=tmp_path / "a", **SMALL)
    assert not torch.equal(a.clips, c.clips)
    monkeypatch.setenv("HYBRIDNAS_CACHE", str(tmp_path / "env"))
    MovingDigits("test", seed=3, **SMALL)
    files = list((tmp_path / "env").iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"  # atomic write leaves no temp file
    d = MovingDigits("train", seed=3, **SMALL)  # now read back from the cache
    assert torch.equal(a.clips, d.clips)


def test_splits_use_disjoint_source_images(tmp_path):
    ids = [
        set(MovingDigits(s, cache_dir=tmp_path, **SMALL).source_ids.tolist())
        for s in ("train", "search_val", "test")
    ]
    assert not ids[0] & ids[1] and not ids[0] & ids[2] and not ids[1] & ids[2]


def test_one_digit_moves_one_stays(tmp_path):
    ds = MovingDigits("train", cache_dir=tmp_path, **SMALL)
    for clip in ds.clips[:10]:
        static = (clip == clip[0]).all(0)  # pixels that never change
        assert (clip[0][static] > 0).sum() > 10  # the still digit
        assert (~static).sum() > 10  # the moving digit
        assert ((clip > 0).flatten(1).sum(1) > 40).all()  # both digits in every frame


def _net(conv, bn, w, stride):
    return nn.Sequential(
        conv(3, w, 3, stride=stride, padding=1), bn(w), nn.ReLU(),
        conv(w, 2 * w, 3, stride=stride, padding=1), bn(2 * w), nn.ReLU(),
        conv(2 * w, 4 * w, 3, stride=2, padding=1), bn(4 * w), nn.ReLU(),
    )  # fmt: skip


class PerFrame2D(nn.Module):
    """TSN-style: the same 2D CNN on each frame, pooled over space, logits averaged over time."""

    def __init__(self, w: int = 16) -> None:
        super().__init__()
        self.f, self.head = _net(nn.Conv2d, nn.BatchNorm2d, w, 2), nn.Linear(4 * w, 10)

    def forward(self, x):
        b, c, t, h, w = x.shape
        feats = self.f(x.transpose(1, 2).reshape(b * t, c, h, w)).mean((2, 3))
        return self.head(feats).view(b, t, 10).mean(1)


class Small3D(nn.Module):
    def __init__(self, w: int = 16) -> None:
        super().__init__()
        self.f, self.head = _net(nn.Conv3d, nn.BatchNorm3d, w, (1, 2, 2)), nn.Linear(4 * w, 10)

    def forward(self, x):
        return self.head(self.f(x).mean((2, 3, 4)))


def _train_and_test(model, x, y, xt, yt, epochs=6, lr=2e-2, bs=16):
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr, weight_decay=1e-4)
    steps = epochs * -(-len(x) // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(bs):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        return (model(xt).argmax(1) == yt).float().mean().item()


@pytest.mark.slow
def test_3d_beats_per_frame_2d(tmp_path):
    """The point of the dataset: which digit moves is invisible frame by frame.

    Sized for the test budget: 20x20 canvas, native 8 px digits, 4 frames, 800 training clips,
    8 epochs, and 1000 test clips, so that test-set noise (about 1.5 points per model) stays
    well inside the margin. Frame by frame a 2D model is left with a coin flip between the two
    digits and weak cues (with more frames or epochs it drifts up to 0.5 and past it: a still
    digit must dodge the moving one's whole path, so where a digit sits tells a little).
    Measured on 2 CPU cores over init seeds 0-4 (the seed, the thread count and the machine
    change the float sums and so the training): 1 thread 2D 0.415-0.456, 3D 0.555-0.640,
    margin 0.137-0.198; 2 threads 2D 0.404-0.452, 3D 0.530-0.632, margin 0.085-0.210. Seed 0,
    which this test uses: margin 0.168 (1 thread), 0.174 (2 threads). The assert is 5 points,
    below every margin seen, and 2D below 0.5 (its highest seen: 0.456)."""
    kw = {"frames": 4, "size": 20, "digit_px": 8, "cache_dir": tmp_path}
    sizes = {"num_train": 800, "num_search_val": 10, "num_test": 1000}
    tr, te = (MovingDigits(s, **kw, **sizes) for s in ("train", "test"))
    x, xt = (torch.stack([d[i][0] for i in range(len(d))]) for d in (tr, te))
    torch.manual_seed(0)
    acc2 = _train_and_test(PerFrame2D(), x, tr.labels, xt, te.labels, epochs=8)
    torch.manual_seed(0)
    acc3 = _train_and_test(Small3D(), x, tr.labels, xt, te.labels, epochs=8)
    print(f"moving digits: per-frame 2D {acc2:.3f}, 3D {acc3:.3f}, margin {acc3 - acc2:+.3f}")
    assert acc2 < 0.5  # frame by frame: no better than a coin flip between the two digits
    assert acc3 >= acc2 + 0.05


def test_impossible_digit_layouts_are_refused_not_looped():
    import numpy as np

    from hybridnas.data.builtin import _place

    with pytest.raises(ValueError, match="data.digit_px=12 is too large for data.size=16"):
        _place(np.random.default_rng(0), 8, 16, 12)
    with pytest.raises(ValueError, match="lower data.frames"):
        _place(np.random.default_rng(0), 64, 20, 9)


def test_motion_code_clips_follow_their_class_code(tmp_path):
    """The digit moves exactly between the frames where its class's code says 1, and every
    code has the same number of moves (only their order in time tells the classes apart)."""
    from hybridnas.data.builtin import motion_codes

    ds = MovingDigits("train", cache_dir=tmp_path, task="motion_code", **SMALL)
    codes = motion_codes(8)
    assert codes.shape == (10, 7) and len({tuple(c) for c in codes}) == 10
    assert len(set(codes.sum(1).tolist())) == 1
    assert ds.class_names == ["".join(map(str, c)) for c in codes]
    assert len(set(ds.labels.tolist())) > 5
    for clip, label in zip(ds.clips[:20], ds.labels[:20], strict=True):
        moved = [int(not torch.equal(clip[t], clip[t + 1])) for t in range(7)]
        assert moved == codes[label].tolist()


def test_motion_code_is_cached_apart_and_bad_tasks_are_refused(tmp_path):
    a = MovingDigits("test", cache_dir=tmp_path, **SMALL)
    b = MovingDigits("test", cache_dir=tmp_path, task="motion_code", **SMALL)
    assert not torch.equal(a.clips, b.clips) and len(list(tmp_path.iterdir())) == 2
    with pytest.raises(ValueError, match="config key 'data.task' must be one of"):
        build_dataset({"name": "builtin", "cache_dir": str(tmp_path), "task": "rhythm"}, "train")
    with pytest.raises(ValueError, match="needs data.frames >= 6"):
        MovingDigits("test", cache_dir=tmp_path, task="motion_code", frames=4, **SMALL)


def test_flash_gap_clips_show_the_digit_in_two_frames_their_gap_apart(tmp_path):
    ds = MovingDigits("train", cache_dir=tmp_path, task="flash_gap", frames=16, size=16, **SMALL)
    assert ds.class_names[0] == "gap6" and ds.class_names[-1] == "gap15"
    assert len(set(ds.labels.tolist())) > 5
    for clip, label in zip(ds.clips, ds.labels, strict=True):
        lit = (clip.flatten(1) > 0).any(1).nonzero().flatten().tolist()
        assert len(lit) == 2 and lit[1] - lit[0] == int(label) + 6
        assert torch.equal(clip[lit[0]], clip[lit[1]])  # the same digit at the same place
    with pytest.raises(ValueError, match="needs data.frames >= 11"):
        MovingDigits("test", cache_dir=tmp_path, task="flash_gap", frames=8, **SMALL)
