"""The bench's two modes (quick, full): the space every run shares, schedules, seeds, proxy
sizes; and the overrides and equal-compute budgets derived from a mode.

A mode is a plain dict (stored as ``meta.config`` in results.json, read back by the report).
"""

from __future__ import annotations

from typing import Any

METHODS = {  # search-cost methods: recipe and label
    "darts": ("darts_video", "DARTS"),
    "pcdarts": ("pcdarts_video", "PC-DARTS"),
    "sdas": ("sdas_video", "SDAS"),
    "sdas_pc": ("sdas_pc_video", "SDAS + partial channels"),
}
COST = {name: label for name, (_, label) in METHODS.items()}
QUALITY = {
    "hybrid": "hybrid (SDAS + evolution)",
    "sdas": "SDAS alone",
    "darts": "DARTS",
    "random": "random search",
    "evolution": "evolution alone (EvaNet-style)",
}
# the baselines that train from PyTorch's init (pytorchvideo's zeroed residual BN keeps
# x3d_xs / r2plus1d at chance on the built-in data: hybridnas/models/baselines.py)
BASELINES = {"x3d_xs_ti": "X3D-XS", "r2plus1d_18": "R(2+1)D-18", "frame2d": "2D per-frame"}

MODES: dict[str, dict[str, Any]] = {
    "quick": {
        # the space and data every search and training shares
        "space": [
            "model.stage_widths=[4,8,8]",
            "model.num_cells=3",
            "model.stem_channels=8",
            "data.size=16",
            "data.digit_px=6",
            "data.frames=4",
            "data.batch_size=16",
        ],
        "epochs": 4,
        "steps_per_epoch": 4,
        "warmup_epochs": 1,
        "cost_repeats": 3,
        "long_epochs": 12,
        # the frames sweep runs at 32 px with 8 px digits: at 16 px (or 32 px with 12 px digits)
        # the built-in generator accepts ~0.03% of 16-frame trajectories (rejection sampling),
        # hours to build the data; at 32/8 it accepts ~10%
        "frames": [4, 8, 16],
        "frames_space": ["data.size=32", "data.digit_px=8"],
        "cells": [3, 5],
        "scaling_methods": ["sdas"],
        "seeds": [0, 1],
        "proxy_clips": 32,  # training clips per proxy candidate (one stage)
        "proxy_val_clips": 64,
        "hybrid_population": 2,
        "evo_population": 4,
        "children": 2,
        "train": [],  # recipes/recipe/train_builtin.yaml as shipped (4 epochs), quick data
        "faith_proxies": {
            "stage1_w0.5": {"stage_clips": [32], "width_scale": 0.5},
            "stages2_w0.5": {"stage_clips": [32, 32], "width_scale": 0.5},
            "stage1_w1.0_x2": {"stage_clips": [64], "width_scale": 1.0},
        },
        "evo_ranks": [
            "model.stage_widths=[4,8,8]",
            "data.size=16",
            "data.digit_px=6",
            "data.frames=4",
            "evolution.population=4",
            "evolution.cycles=2",
            "evolution.children_per_cycle=2",
            "evolution.proxy.stage_clips=[32]",
            "evolution.proxy.val_clips=64",
            "evolution.proxy.batch_size=16",
            "evolution.conet_every=0",
            "evolution.faithfulness.samples=0",
        ],
    },
    "full": {
        "space": ["data.batch_size=32"],  # the shipped default space (recipes/search.yaml)
        "epochs": 8,
        "steps_per_epoch": 20,
        "warmup_epochs": 2,
        "long_epochs": 30,
        "frames": [4, 8, 16],
        "cells": [3, 5, 8],
        "scaling_methods": ["sdas", "darts"],
        "seeds": [0, 1, 2],
        "proxy_clips": 128,
        "proxy_val_clips": 128,
        "hybrid_population": 6,
        "evo_population": 8,
        "children": 2,
        "train": [],  # recipes/recipe/train_builtin.yaml as shipped
        "faith_proxies": {
            "stage1_w0.5": {"stage_clips": [128], "width_scale": 0.5},
            "stages2_w0.5": {"stage_clips": [128, 128], "width_scale": 0.5},
            "stage1_w1.0_x2": {"stage_clips": [256], "width_scale": 1.0},
        },
        "evo_ranks": [
            "evolution.cycles=4",
            "evolution.conet_every=0",
            "evolution.faithfulness.samples=0",
        ],
    },
}


def differentiable_overrides(m: dict, epochs: int | None = None) -> list[str]:
    epochs = epochs or m["epochs"]
    return [
        *m["space"],
        "stage=differentiable",
        f"search.epochs={epochs}",
        f"search.steps_per_epoch={m['steps_per_epoch']}",
        f"search.warmup_epochs={min(m['warmup_epochs'], epochs - 1)}",
    ]


def evo_overrides(m: dict, population: int, cycles: int) -> list[str]:
    return [
        f"evolution.population={population}",
        f"evolution.sample_size={min(3, population)}",
        f"evolution.cycles={cycles}",
        f"evolution.children_per_cycle={m['children']}",
        f"evolution.proxy.stage_clips=[{m['proxy_clips']}]",
        f"evolution.proxy.val_clips={m['proxy_val_clips']}",
        f"evolution.proxy.batch_size={min(16, m['proxy_clips'])}",
        "evolution.conet_every=0",
        "evolution.faithfulness.samples=0",
    ]


def budgets(m: dict) -> dict:
    """Equal compute = equal number of weight-training clips (forward + backward) per search."""
    batch = int(next(o for o in m["space"] if o.startswith("data.batch_size=")).split("=")[1])
    supernet = m["epochs"] * m["steps_per_epoch"] * batch
    half_epochs = max(2, m["epochs"] // 2)
    hybrid_super = half_epochs * m["steps_per_epoch"] * batch
    hybrid_cands = max(m["hybrid_population"], (supernet - hybrid_super) // m["proxy_clips"])
    hybrid_cycles = max(0, (hybrid_cands - m["hybrid_population"]) // m["children"])
    n_cands = supernet // m["proxy_clips"]
    evo_cycles = max(1, (n_cands - m["evo_population"]) // m["children"])
    return {
        "batch": batch,
        "clips": supernet,
        "hybrid_epochs": half_epochs,
        "hybrid_cycles": hybrid_cycles,
        "hybrid_clips": hybrid_super
        + (m["hybrid_population"] + hybrid_cycles * m["children"]) * m["proxy_clips"],
        "random_candidates": n_cands,
        "evo_cycles": evo_cycles,
        "evo_clips": (m["evo_population"] + evo_cycles * m["children"]) * m["proxy_clips"],
    }
