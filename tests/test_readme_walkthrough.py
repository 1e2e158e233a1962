"""The README's "Your own videos" walk-through, run as written on a generated folder of mp4s.

The commands are read out of the README's section (its first ``bash`` block), run in a folder
holding ``my_videos/`` (real mp4 files written with PyAV, one sub-folder per class), with only
the speed-ups in ``FAST`` appended: fewer search epochs, a smaller evolution, one training epoch.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from videos import write_video

from hybridnas.models import load_trained, scaled_width
from hybridnas.space.genotype import Genotype

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Your own videos"
CLASSES = ["clap", "jump", "wave"]
PER_SPLIT = {"train": 12, "val": 2, "test": 2}

FAST = {  # appended to the README's commands: minutes on a shared CPU instead of ten
    "search.py": [
        "tracking=none",
        "search.epochs=2",
        "search.warmup_epochs=0",
        "search.steps_per_epoch=2",
        "data.search_val_fraction=0.3",
        "evolution.population=2",
        "evolution.sample_size=2",
        "evolution.cycles=1",
        "evolution.children_per_cycle=1",
        "evolution.conet_every=0",
        "evolution.faithfulness.samples=0",
        "evolution.proxy.stage_clips=[16,16]",
        "evolution.proxy.val_clips=8",
    ],
    "train.py": ["tracking=none", "train.epochs=1"],
    "evaluate.py": [],
    "export.py": [],
}


def readme_commands(readme: Path = ROOT / "README.md") -> list[str]:
    """The commands of the first ``bash`` block after the section heading, continuation lines
    joined, comments dropped."""
    text = readme.read_text()
    start = text.index(SECTION)
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block, f"no bash block in README section {SECTION!r}"
    joined = block.group(1).replace("\\\n", " ")
    lines = [ln.split("#")[0].strip() for ln in joined.splitlines()]
    return [ln for ln in lines if ln]


def runnable(command: str) -> tuple[str, list[str]]:
    """(tool file name, argv): ``python tools/x.py ...`` with this interpreter and the repo's
    tools/, plus the FAST overrides."""
    argv = shlex.split(command)
    assert argv[0] == "python" and argv[1].startswith("tools/"), command
    tool = Path(argv[1]).name
    return tool, [sys.executable, str(ROOT / argv[1]), *argv[2:], *FAST[tool]]


def make_folder(root: Path) -> None:
    """root/<split>/<class>/<n>.mp4 for every split and class (a flat colour per class)."""
    for split, n in PER_SPLIT.items():
        for label, name in enumerate(CLASSES):
            for k in range(n):
                write_video(root / split / name / f"{name}{k}.mp4", label, frames=24)


def test_readme_lists_search_train_evaluate_export():
    tools = [runnable(c)[0] for c in readme_commands()]
    assert tools == ["search.py", "train.py", "evaluate.py", "export.py"]
    assert all("stage_widths" not in c for c in readme_commands())  # found widths kept


@pytest.mark.slow
def test_readme_walkthrough_runs_as_written(tmp_path):
    make_folder(tmp_path / "my_videos")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYBRIDNAS_CACHE": str(tmp_path / "cache")}
    for command in readme_commands():
        tool, argv = runnable(command)
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"

    runs = tmp_path / "runs"
    found = Genotype.load(runs / "sdas_video_folder_s0" / "genotype.json")
    train_run = runs / "train_builtin_genotype_folder_s0"
    _, spec, _ = load_trained(train_run / "checkpoints" / "last.pt")
    # model.width_mult=2 in the README: the evolution's widths, doubled, not replaced
    assert spec.genotype.stage_widths == tuple(scaled_width(w, 2) for w in found.stage_widths)
    assert spec.genotype.stem_channels == scaled_width(found.stem_channels, 2)
    assert spec.genotype.normal == found.normal and spec.genotype.reduce == found.reduce
    assert json.loads((train_run / "classes.json").read_text())["classes"] == CLASSES

    metrics = json.loads((train_run / "eval_test_1x1" / "metrics.json").read_text())
    assert metrics["videos"] == PER_SPLIT["test"] * len(CLASSES)
    assert 0.0 <= metrics["top1"] <= 1.0 and metrics["top5"] == 1.0  # 3 classes: top-5 is all
    export = json.loads((train_run / "export" / "export.json").read_text())
    # the evolution searched the clip on this dataset: training and export use the genotype's
    assert export["model"] == "genotype"
    assert export["clip_shape"] == [3, found.frames, found.size, found.size]
    assert export["onnx_max_abs_diff"] < 1e-4 and export["params"] > 0
    assert (train_run / "export" / "model.pt2").stat().st_size > 0


@pytest.mark.parametrize("name", ["folder", "csv"])
def test_data_configs_open_with_their_command_and_build(name, tmp_path):
    from hydra import compose, initialize_config_dir

    from hybridnas.config import check_config
    from hybridnas.data import build_dataset

    text = (ROOT / "recipes" / "data" / f"{name}.yaml").read_text()
    assert text.startswith(f"# python tools/train.py recipe=train_builtin data={name} ")
    root = tmp_path / "videos"
    make_folder(root)
    if name == "csv":
        for split in PER_SPLIT:
            rows = [f"{p.relative_to(root)} {p.parent.name}" for p in root.glob(f"{split}/*/*")]
            (root / f"{split}.csv").write_text("\n".join(sorted(rows)) + "\n")
    with initialize_config_dir(config_dir=str(ROOT / "recipes"), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={name}", f"data.root={root}", "genotype=builtin"])
    check_config(cfg, "train")
    assert {"frames", "sampling_rate", "fps", "size", "scale", "flip"} <= set(cfg.data)
    ds = build_dataset(cfg.data, "val")
    assert ds.class_names == CLASSES and len(ds) == PER_SPLIT["val"] * len(CLASSES)
    clip, label = ds[0]
    assert clip.shape == (3, cfg.data.frames, cfg.data.size, cfg.data.size) and label == 0
