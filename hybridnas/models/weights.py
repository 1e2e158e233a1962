"""Weights into a network: a trained checkpoint (:func:`load_trained`), a start from another
run (:func:`init_weights`: a train.py checkpoint or a search's supernet), and the renaming of a
supernet's weights to a fixed network's. Checkpoints are read with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from hybridnas.engine.checkpoint import (
    CheckpointError,
    DivergedError,
    check_finite,
    load_checkpoint,
)
from hybridnas.models.spec import ModelSpec
from hybridnas.space.genotype import Genotype


def load_trained(path: str | Path, device: str | torch.device = "cpu", ema: bool = True):
    """(model in eval mode, ModelSpec, checkpoint dict) from a train.py checkpoint; the EMA
    weights when the run kept them and ``ema`` is true."""
    ckpt = load_checkpoint(path, map_location=device)
    if "model_spec" not in ckpt:
        raise CheckpointError(f"checkpoint {path} was not written by tools/train.py")
    spec = ModelSpec.from_dict(ckpt["model_spec"])
    model = spec.build()
    weights = ckpt["ema"] if ema and ckpt.get("ema") else ckpt["weights"]["model"]
    try:
        check_finite(weights, f"checkpoint {path} is unusable")
    except DivergedError as err:
        raise CheckpointError(f"{err}: the run that wrote it diverged") from None
    model.load_state_dict(weights)
    return model.to(device).eval(), spec, ckpt


def init_weights(model: torch.nn.Module, spec: ModelSpec, init_from: str | Path) -> None:
    """Start from ``init_from``: a train.py checkpoint or a search run (its supernet), copying
    every tensor whose name and shape match (fine-tuning to new classes drops the head)."""
    src = Path(init_from)
    if src.is_dir():
        src = src / "checkpoints" / "search_last.pt"
    ckpt = load_checkpoint(src)
    if "model_spec" in ckpt:
        state = ckpt["ema"] or ckpt["weights"]["model"]
    else:  # a supernet from tools/search.py
        from omegaconf import OmegaConf

        scfg = OmegaConf.load(src.parent.parent / "config.yaml")
        if spec.genotype is None:
            raise CheckpointError("init_from a supernet needs model=genotype")
        state = supernet_to_network(
            ckpt["weights"]["model"], spec.genotype, list(scfg.model.op_names), scfg.model.steps
        )
    copied, total = load_matching(model, state)
    print(f"[hybridnas] init_from {src}: {copied}/{total} tensors copied (name and shape match)")


def load_matching(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[int, int]:
    """Copy the tensors of ``state`` whose name and shape match; returns (copied, total)."""
    own = model.state_dict()
    keep = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(keep, strict=False)
    return len(keep), len(own)


def supernet_to_network(state: dict, genotype: Genotype, op_names: list[str], steps: int) -> dict:
    """Rename a supernet's weights to the network's names: the op a genotype kept on edge
    (i, j) lives at ``cells.c.mixed_ops.<edge index>.ops.<op index>`` in the supernet and at
    ``cells.c.ops.<position in the cell's edge list>`` in the network."""
    from hybridnas.space.cells import edge_list

    edges = edge_list(steps)
    out = {k: v for k, v in state.items() if ".mixed_ops." not in k}
    reductions = genotype.reduction_indices()
    for c in range(genotype.num_cells):
        spec = genotype.reduce if c in reductions else genotype.normal
        for pos, (i, j, op) in enumerate(spec.edges):
            if (i, j) not in edges or op not in op_names:
                continue
            src = f"cells.{c}.mixed_ops.{edges.index((i, j))}.ops.{op_names.index(op)}."
            for k, v in state.items():
                if k.startswith(src):
                    out[f"cells.{c}.ops.{pos}." + k[len(src) :]] = v
    return out
