"""tools/train.py: exact kill-and-resume, refusals (data root, other genotype / class count),
and the Kinetics400 pipeline on a generated miniature (train, resume, multi-view, ensemble)."""

from __future__ import annotations

import csv
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from hybridnas.engine.checkpoint import CheckpointError, load_checkpoint
from hybridnas.models import check_fingerprint

ROOT = Path(__file__).resolve().parent.parent

# A tiny genotype network and tiny built-in data: seconds per run on a shared CPU.
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
]


def tool(name: str):
    spec = importlib.util.spec_from_file_location(f"hn_tool_{name}", ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cfg_of(config: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "recipes"), version_base="1.3"):
        return compose(config, overrides=overrides)


def train_cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "tools" / "train.py"),
        *TINY,
        "train.epochs=2",
        "train.ckpt_every_steps=1",
        f"out_dir={out}",
        *extra,
    ]


@pytest.mark.slow
def test_killed_and_resumed_run_ends_with_the_same_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(train_cmd(tmp_path / "full"), check=True, env=env, capture_output=True)

    ckpt = tmp_path / "killed" / "checkpoints" / "last.pt"
    proc = subprocess.Popen(
        train_cmd(tmp_path / "killed"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if ckpt.is_file() and load_checkpoint(ckpt)["global_step"] >= 2:
            proc.send_signal(signal.SIGKILL)  # a real kill -9, mid-epoch
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = load_checkpoint(ckpt)["global_step"]
    assert killed_at < 6
    subprocess.run(
        train_cmd(tmp_path / "killed", "resume=true"), check=True, env=env, capture_output=True
    )

    a, b = load_checkpoint(tmp_path / "full/checkpoints/last.pt"), load_checkpoint(ckpt)
    assert a["global_step"] == b["global_step"] == 6
    for name, t in a["weights"]["model"].items():
        assert torch.equal(t, b["weights"]["model"][name]), f"{name} differs after resume"
    for name, t in a["ema"].items():
        assert torch.equal(t, b["ema"][name]), f"EMA {name} differs after resume"


def test_resume_with_another_genotype_is_refused(tmp_path):
    train = tool("train")
    train.run(
        cfg_of("train", [*TINY, "train.epochs=1", "train.steps_per_epoch=1", f"out_dir={tmp_path}"])
    )
    other = cfg_of(
        "train",
        [
            *TINY,
            "model.stage_widths=[4,8,16]",
            "train.epochs=2",
            "resume=true",
            f"out_dir={tmp_path}",
        ],
    )
    with pytest.raises(CheckpointError, match="another genotype"):
        train.run(other)


def test_fingerprint_names_what_differs():
    base = {"model": "genotype", "genotype": "g", "num_classes": 10, "frames": 8, "size": 32}
    with pytest.raises(CheckpointError, match="trained for 10 classes, this run has 400"):
        check_fingerprint(base, {**base, "num_classes": 400}, "x.pt")
    with pytest.raises(CheckpointError, match="holds a 'genotype' network, not 'x3d_xs'"):
        check_fingerprint(base, {**base, "model": "x3d_xs", "genotype": ""}, "x.pt")


def test_missing_or_empty_data_root_is_a_clear_error(tmp_path):
    train = tool("train")
    with pytest.raises(FileNotFoundError, match="needs data.root"):
        train.run(
            cfg_of("train", ["genotype=builtin", "data=kinetics400", f"out_dir={tmp_path}/a"])
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="is empty"):
        train.run(
            cfg_of(
                "train",
                [
                    "genotype=builtin",
                    "data=kinetics400",
                    f"data.root={tmp_path}/empty",
                    f"out_dir={tmp_path}/b",
                ],
            )
        )


# ---------------------------------------------------------------- Kinetics400 miniature


def make_kinetics(root: Path, classes=("abseiling", "bowling", "juggling balls")) -> Path:
    """The official layout: annotations/{train,validate,test}.csv + <id>_<start>_<end>.mp4."""
    sys.path.insert(0, str(Path(__file__).parent))
    from videos import write_video

    per_split = {"train": 4, "validate": 1, "test": 1}
    for split, n in per_split.items():
        rows = []
        for c, label in enumerate(classes):
            for k in range(n):
                yid = f"{split[:2]}{c}{k}yt_abcd"  # 11 characters, like a YouTube id
                write_video(root / split / label / f"{yid}_{10:06d}_{13:06d}.mp4", c, frames=24)
                rows.append([label, yid, 10, 13, split])
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        with (root / "annotations" / f"{split}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            w.writerows(rows)
    return root


K400 = [
    "data=kinetics400",
    "data.frames=4",
    "data.size=32",
    "data.sampling_rate=2",
    "data.fps=8",
    "data.batch_size=4",
    "data.workers=0",
    "tracking=none",
]


def test_kinetics_miniature_train_resume_multiview_ensemble(tmp_path):
    root = make_kinetics(tmp_path / "k400")
    train, evaluate = tool("train"), tool("evaluate")
    geno = [
        *K400,
        "engine=none",
        f"data.root={root}",
        "genotype=builtin",
        "model.num_cells=3",
        "model.stage_widths=[4,8,8]",
        "model.stem_channels=8",
        f"out_dir={tmp_path}/geno",
    ]
    st = train.run(cfg_of("train", [*geno, "train.epochs=1"]))
    assert st.epoch == 1 and st.spec.num_classes == 3
    st = train.run(cfg_of("train", [*geno, "train.epochs=2", "resume=true"]))
    assert st.epoch == 2 and len(st.history) == 2
    train.run(
        cfg_of(
            "train",
            [
                *K400,
                "engine=none",
                f"data.root={root}",
                "model.name=frame2d",
                "train.epochs=1",
                f"out_dir={tmp_path}/frame2d",
            ],
        )
    )

    a, b = tmp_path / "geno/checkpoints/last.pt", tmp_path / "frame2d/checkpoints/last.pt"
    ev = [*K400, f"data.root={root}", "views=2x3"]
    single = evaluate.run(cfg_of("evaluate", [*ev, f"ckpt={a}", f"out_dir={tmp_path}/ev1"]))
    assert single["videos"] == 3 and single["views"] == "2x3"
    ens = evaluate.run(cfg_of("evaluate", [*ev, f"ckpt=[{a},{b}]", f"out_dir={tmp_path}/ev2"]))
    assert set(ens["members"]) == {str(a), str(b)}
    for out in ("ev1", "ev2"):
        assert (tmp_path / out / "confusion.png").stat().st_size > 0
        assert (tmp_path / out / "per_class.csv").read_text().startswith("class,support")


def test_supernet_weights_map_onto_the_derived_network():
    from hybridnas.models import load_matching, supernet_to_network
    from hybridnas.space.network import build_network
    from hybridnas.space.supernet import Supernet, SupernetConfig, derive_genotype

    ops = ["none", "skip", "max_pool_1x3x3", "conv3d_3x3x3", "conv2plus1d_3x3x3"]
    torch.manual_seed(0)
    net = Supernet(
        SupernetConfig(op_names=ops, stage_widths=(4, 8, 8), num_cells=3, stem_channels=8)
    )
    g = derive_genotype(net, net.new_architecture())
    model = build_network(g)
    state = supernet_to_network(net.state_dict(), g, ops, steps=4)
    copied, total = load_matching(model, state)
    assert copied == total  # same widths: every tensor of the network comes from the supernet
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
