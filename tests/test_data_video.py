"""Video datasets through the real PyAV decoding path, on small generated mp4 files."""

from __future__ import annotations

import logging

import pytest
import torch
from videos import (
    decode_colour,
    write_audio_only,
    write_empty,
    write_random_bytes,
    write_truncated,
    write_video,
)

from hybridnas.data import build_dataset, build_loader, load_class_index

CLASSES = ["cat", "dog", "eel"]
BASE = {
    "frames": 4,
    "size": 32,
    "sampling_rate": 2,
    "fps": 8,
    "mean": [0.0] * 3,
    "std": [1.0] * 3,
    "search_val_fraction": 0.0,
}
N_GOOD = 6  # two good training videos per class in every layout


def _bad_files(d):
    """Four unreadable files, in the given folder; returns their paths."""
    return [
        write_random_bytes(d / "random.mp4"),
        write_truncated(d / "truncated.mp4"),
        write_empty(d / "empty.mp4"),
        write_audio_only(d / "audio.mp4"),
    ]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    """One root per layout, each with 6 good train videos, bad files/rows and a test split."""
    base = tmp_path_factory.mktemp("data")
    folder = base / "folder"
    for c, name in enumerate(CLASSES):
        for i in range(2):
            write_video(folder / "train" / name / f"v{i}.mp4", c)
        write_video(folder / "test" / name / "t0.mp4", c)
    _bad_files(folder / "train" / "eel")

    csvroot = base / "csv"
    rows = []
    for c, name in enumerate(CLASSES):
        for i in range(2):
            write_video(csvroot / "vids" / f"{name}{i}.mp4", c)
            rows.append(f"vids/{name}{i}.mp4 {name if i else c}")  # names and indices both work
    rows += [f"vids/{p.name} dog" for p in _bad_files(csvroot / "vids")]
    rows += ["vids/not_there.mp4 cat", "vids/cat0.mp4 zebra", "vids/cat0.mp4 cat extra"]
    (csvroot / "train.csv").write_text("\n".join(rows) + "\n")
    (csvroot / "classes.txt").write_text("\n".join(CLASSES) + "\n")

    kin = base / "k400"
    head = "label,youtube_id,time_start,time_end,split"
    lines = [head]
    for c, name in enumerate(CLASSES):
        for i in range(2):
            yid = f"{name}_yt{i}"
            write_video(kin / "train" / name / f"{yid}_{10 * i:06d}_{10 * i + 10:06d}.mp4", c)
            lines.append(f"{name},{yid},{10 * i},{10 * i + 10},train")
    for p in _bad_files(kin / "train" / "dog"):
        p.rename(p.with_name(f"{p.stem}_000000_000010.mp4"))
        lines.append(f"dog,{p.stem},0,10,train")
    lines += ["cat,gone_yt,0,10,train", "cat,cat_yt0,0,10"]
    (kin / "annotations").mkdir()
    (kin / "annotations" / "train.csv").write_text("\n".join(lines) + "\n")
    # classes come from train.csv, so an unknown label can only appear in another split
    val = [head, "dog,dog_yt1,10,20,validate", "zebra,cat_yt0,0,10,validate"]
    (kin / "annotations" / "validate.csv").write_text("\n".join(val) + "\n")
    return {"folder": folder, "csv": csvroot, "kinetics400": kin}


BAD = {"folder": (0, 4), "csv": (3, 4), "kinetics400": (2, 4)}  # (indexing, decoding)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("name", ["folder", "csv", "kinetics400"])
def test_layout_batches_and_bad_inputs(roots, name, workers, caplog):
    caplog.set_level(logging.WARNING, logger="hybridnas.data")
    ds = build_dataset({**BASE, "name": name, "root": str(roots[name])}, "train")
    assert ds.class_names == CLASSES and ds.num_classes == 3
    loader = build_loader(ds, batch_size=3, train=True, workers=workers, seed=1, drop_last=False)
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        seen = []
        for clips, labels in loader:
            assert clips.shape[1:] == (3, 4, 32, 32) and clips.dtype == torch.float32
            for clip, label in zip(clips, labels, strict=True):
                decoded, _ = decode_colour(clip)
                assert (decoded == int(label)).all()
                seen.append(int(label))
        assert sorted(seen) == [0, 0, 1, 1, 2, 2]  # the rest of the epoch is intact
        assert loader.last_epoch_bad == BAD[name][1]
    report = ds.bad_items_report()
    assert report["count"] == sum(BAD[name]) and report["indexing"] == BAD[name][0]
    skips = [r for r in caplog.records if r.getMessage().startswith("skipping")]
    assert len(skips) == sum(BAD[name])  # one warning each, not one per epoch


def test_multiview_views_cover_video(roots):
    cfg = {**BASE, "name": "folder", "root": str(roots["folder"])}
    ds = build_dataset(cfg, "test")
    clips, label, index = ds[1]
    assert clips.shape == (30, 3, 4, 32, 32) and label == 1 and index == 1
    first, last = decode_colour(clips[0])[1], decode_colour(clips[-1])[1]
    assert first[0] == 0 and last[-1] == 23  # views run from the first to the last frame
    loader = build_loader(ds, batch_size=2, train=False)
    batches = list(loader)
    assert [b[0].shape[:2] for b in batches] == [(2, 30), (1, 30)]
    assert torch.cat([b[2] for b in batches]).tolist() == [0, 1, 2]


@pytest.mark.parametrize("split", ["train", "val"])
def test_tsn_covers_whole_video(roots, split):
    cfg = {
        **BASE,
        "name": "kinetics400",
        "root": str(roots["kinetics400"]),
        "frames": 8,
        "sampling": "tsn",
    }
    ds = build_dataset(cfg, split)
    clip, label = ds[0]
    assert clip.shape == (3, 8, 32, 32)
    _, t = decode_colour(clip)
    assert (t // 3 == torch.arange(8).numpy()).all()  # one frame in each third of 24 frames


def test_kinetics_val_skips_unknown_label(roots):
    ds = build_dataset({**BASE, "name": "kinetics400", "root": str(roots["kinetics400"])}, "val")
    assert [e.label for e in ds.entries] == [1]
    assert "unknown label 'zebra'" in str(ds.bad_items_report()["items"])
    clip, label = ds[0]
    assert clip.shape == (3, 4, 32, 32) and (decode_colour(clip)[0] == 1).all()


def test_search_val_is_a_disjoint_carve_of_train(roots):
    cfg = {**BASE, "name": "folder", "root": str(roots["folder"]), "search_val_fraction": 0.5}
    train = build_dataset(cfg, "train")
    sval = build_dataset(cfg, "search_val")
    a, b = {e.path for e in train.entries}, {e.path for e in sval.entries}
    full = build_dataset({**cfg, "search_val_fraction": 0.0}, "train")
    assert a and b and not a & b and a | b == {e.path for e in full.entries}
    assert {e.path for e in build_dataset(cfg, "search_val").entries} == b


def test_class_index_roundtrip_and_reuse(roots, tmp_path):
    ds = build_dataset({**BASE, "name": "csv", "root": str(roots["csv"])}, "train")
    ds.save_class_index(tmp_path / "classes.json")
    assert load_class_index(tmp_path / "classes.json") == CLASSES
    (tmp_path / "two.json").write_text('{"classes": ["dog", "cat"]}')
    cfg = {
        **BASE,
        "name": "kinetics400",
        "root": str(roots["kinetics400"]),
        "class_index": str(tmp_path / "two.json"),
    }
    ds = build_dataset(cfg, "train")
    assert ds.class_names == ["dog", "cat"] and {e.label for e in ds.entries} == {0, 1}


def test_no_usable_clip_is_a_clear_error(roots, tmp_path):
    (tmp_path / "train.csv").write_text("nothing.mp4 0\nx.mp4 1 2\n")
    with pytest.raises(RuntimeError, match=str(tmp_path)):
        build_dataset({**BASE, "name": "csv", "root": str(tmp_path)}, "train")
    broken = tmp_path / "broken"
    _bad_files(broken / "train" / "cat")
    ds = build_dataset({**BASE, "name": "folder", "root": str(broken)}, "train")
    with pytest.raises(RuntimeError, match="no usable clip in .*broken"):
        list(build_loader(ds, batch_size=2, train=True))
