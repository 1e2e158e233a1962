"""Deployment: torch.export and ONNX outputs match PyTorch's; the cost report is complete."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from hybridnas.export import export_all, export_onnx, export_torch
from hybridnas.models import build_model, resolve_genotype

CLIP = (3, 8, 32, 32)


def tiny_genotype_net(ops: tuple[str, str] | None = None):
    g = resolve_genotype(
        OmegaConf.create(
            {
                "genotype": "builtin",
                "num_cells": 3,
                "stage_widths": [4, 8, 8],
                "stem_channels": 8,
                "stem_stride": [1, 2, 2],
            }
        ),
        num_classes=10,
        frames=8,
        size=32,
    )
    if ops:  # put other ops on the first edges (iTGM, SE) so they are exported too
        edges = list(g.normal.edges)
        edges[0], edges[1] = (*edges[0][:2], ops[0]), (*edges[1][:2], ops[1])
        g = g.replace(normal=type(g.normal)(tuple(edges), g.normal.concat))
    torch.manual_seed(0)
    return build_model("genotype", num_classes=10, frames=8, size=32, genotype=g).eval()


def test_genotype_network_exports_and_reports(tmp_path):
    report = export_all(tiny_genotype_net(), CLIP, tmp_path)
    assert report["torch_export_max_abs_diff"] < 1e-4
    assert report["onnx_max_abs_diff"] < 1e-4
    assert report["params"] > 0 and report["gflops"] > 0 and report["cpu_ms"] > 0
    assert report["cpu_ms_1thread"] > 0 and report["cpu_threads"] >= 1
    assert (tmp_path / "model.pt2").stat().st_size > 0 and (
        tmp_path / "model.onnx"
    ).stat().st_size > 0
    json.dumps(report)


@pytest.mark.parametrize("ops", [("itgm_3x3", "se_conv1x3x3"), ("p3d_a", "dil_temporal_d4")])
def test_other_ops_export_within_tolerance(tmp_path, ops):
    model = tiny_genotype_net(ops)
    assert export_torch(model, CLIP, tmp_path / "m.pt2") < 1e-4
    assert export_onnx(model, CLIP, tmp_path / "m.onnx") < 1e-4


def test_frame2d_baseline_exports(tmp_path):
    torch.manual_seed(0)
    model = build_model("frame2d", num_classes=10, frames=8, size=32)
    assert export_onnx(model, CLIP, tmp_path / "m.onnx") < 1e-4


def test_export_tool_on_a_checkpoint(tmp_path):
    import importlib.util
    from pathlib import Path

    from hybridnas.engine.checkpoint import save_checkpoint
    from hybridnas.models import ModelSpec

    spec = ModelSpec("frame2d", 10, 8, 32)
    model = spec.build()
    save_checkpoint(
        tmp_path / "run/checkpoints/best.pt",
        {
            "model_spec": spec.to_dict(),
            "fingerprint": spec.fingerprint(),
            "weights": {"model": model.state_dict()},
            "ema": None,
        },
    )
    path = Path(__file__).resolve().parent.parent / "tools" / "export.py"
    mod_spec = importlib.util.spec_from_file_location("hn_export_tool", path)
    tool = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(tool)
    report = tool.main([str(tmp_path / "run/checkpoints/best.pt")])
    assert report["model"] == "frame2d" and report["onnx_max_abs_diff"] < 1e-4
    assert (tmp_path / "run/export/export.json").is_file()
