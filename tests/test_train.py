"""tools/train.py: exact kill-and-resume, refusals (data root, another model / class count; a
resume with another genotype is in test_silent_failures), and the Kinetics400 pipeline on a
generated miniature (train, resume, multi-view, ensemble)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import torch
from helpers import cfg_of, make_kinetics, tool, train_cmd

from hybridnas.engine.checkpoint import CheckpointError, load_checkpoint
from hybridnas.models import check_fingerprint


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
        SupernetConfig(op_names=ops, steps=4, stage_widths=(4, 8, 8), num_cells=3, stem_channels=8)
    )
    g = derive_genotype(net, net.new_architecture())
    model = build_network(g)
    state = supernet_to_network(net.state_dict(), g, ops, steps=4)
    copied, total = load_matching(model, state)
    assert copied == total  # same widths: every tensor of the network comes from the supernet
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
