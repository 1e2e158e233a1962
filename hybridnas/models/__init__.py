"""One entry point for every network the train/evaluate/export tools handle.

``model.name``: ``genotype`` (a found architecture, scaled by overrides) or a baseline
(``x3d_xs``, ``x3d_xs_ti``, ``r2plus1d``, ``r2plus1d_18``, ``c3d``, ``frame2d``). A checkpoint
carries the model's *fingerprint* (name, genotype key, classes, clip shape) so that weights are
never loaded into another net.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hybridnas.config import ConfigError
from hybridnas.engine.checkpoint import CheckpointError
from hybridnas.models.baselines import (
    Frame2D,
    create_c3d,
    create_r2plus1d,
    create_r2plus1d_18,
    create_x3d_xs,
)
from hybridnas.space.genotype import Genotype, GenotypeError
from hybridnas.space.macro import DEFAULT_STREAMS, macro_fields_from_config
from hybridnas.space.network import build_network

MODELS = ("genotype", "x3d_xs", "x3d_xs_ti", "r2plus1d", "r2plus1d_18", "c3d", "frame2d")
BUILTIN_GENOTYPE = Path(__file__).resolve().parent / "genotypes" / "builtin_sdas.json"


def resolve_genotype(
    model_cfg: Mapping[str, Any], *, num_classes: int, frames: int, size: int
) -> Genotype:
    """Load ``model_cfg.genotype`` (file or run folder) and scale it: the skeleton keys the
    config sets (``num_cells``, ``stage_widths``, ``stem_channels``, ``stem_stride``; null keeps
    the genotype's, see ``macro_fields_from_config``) plus the data's clip shape and classes,
    then ``model.width_mult`` on its widths (see :func:`scale_widths`)."""
    path = model_cfg.get("genotype")  # a DictConfig or a mapping (vars of a ModelConfig)
    if not path:
        raise GenotypeError("model=genotype needs genotype=<genotype.json or a search run folder>")
    g = Genotype.load(BUILTIN_GENOTYPE if path == "builtin" else path)
    g = g.replace(
        **macro_fields_from_config(model_cfg, frames=frames, size=size, num_classes=num_classes)
    )
    mult = model_cfg.get("width_mult")
    return scale_widths(g, 1.0 if mult is None else float(mult))


def check_model_streams(name: str, genotype: Genotype | None, streams: Any) -> None:
    """Refuse data whose streams (``data.streams``; None: RGB) are not the ones the network
    reads (a genotype's ``streams``; a baseline reads RGB), naming the setting to pass."""
    given = tuple(streams or DEFAULT_STREAMS)
    wanted = genotype.streams if name == "genotype" and genotype is not None else DEFAULT_STREAMS
    if given != wanted:
        raise ConfigError(
            f"the {name} network reads streams {list(wanted)} but data.streams is "
            f"{list(given)}: pass data.streams=[{','.join(wanted)}]"
        )


def scaled_width(width: int, mult: float) -> int:
    """``width * mult`` rounded half up (3 x 1.5 = 4.5 -> 5), at least 1."""
    return max(1, int(width * mult + 0.5))


def scale_widths(genotype: Genotype, mult: float) -> Genotype:
    """The genotype with its stage widths and stem channels multiplied by ``mult``
    (``model.width_mult``), each by :func:`scaled_width`; cells and depth unchanged."""
    if mult <= 0:
        raise GenotypeError(f"model.width_mult must be > 0, got {mult}")
    if mult == 1.0:
        return genotype
    return genotype.replace(
        stage_widths=tuple(scaled_width(w, mult) for w in genotype.stage_widths),
        stem_channels=scaled_width(genotype.stem_channels, mult),
    )


def build_model(
    name: str,
    *,
    num_classes: int,
    frames: int,
    size: int,
    genotype: Genotype | None = None,
    dropout: float | None = None,
    r2plus1d_width: int = 16,
    c3d_width: int = 16,
    x3d_width_factor: float = 2.0,
    spatial_strides: tuple[int, ...] | None = None,
    connection_weights: bool = False,
) -> nn.Module:
    """A network for (B, C, frames, size, size) clips -> (B, num_classes) logits; C is 3 except
    for a genotype with two streams (``genotype.in_channels``). ``connection_weights``: a genotype
    network whose nodes sum their inputs with learned sigmoid weights (AssembleNet; see
    ``hybridnas.space.cells.Cell``)."""
    if name == "genotype":
        if genotype is None:
            raise GenotypeError("model=genotype needs a genotype")
        return build_network(
            genotype,
            num_classes=num_classes,
            dropout=dropout or 0.0,
            connection_weights=connection_weights,
        )
    if connection_weights:
        raise ConfigError(f"model.connection_weights needs model.name=genotype, not {name!r}")
    if name in ("x3d_xs", "x3d_xs_ti"):  # _ti: from PyTorch's init, not pytorchvideo's
        return create_x3d_xs(
            num_classes=num_classes,
            frames=frames,
            size=size,
            dropout=0.5 if dropout is None else dropout,
            width_factor=x3d_width_factor,
            spatial_strides=spatial_strides,
            torch_init=name == "x3d_xs_ti",
        )
    if name == "r2plus1d":
        return create_r2plus1d(
            num_classes=num_classes,
            dropout=0.5 if dropout is None else dropout,
            width=r2plus1d_width,
            size=size,
            spatial_strides=spatial_strides,
        )
    if name == "r2plus1d_18":
        return create_r2plus1d_18(
            num_classes=num_classes,
            width=r2plus1d_width,
            size=size,
            spatial_strides=spatial_strides,
            dropout=0.5 if dropout is None else dropout,
        )
    if name == "c3d":
        return create_c3d(num_classes, width=c3d_width, dropout=dropout or 0.0)
    if name == "frame2d":
        return Frame2D(num_classes, dropout=dropout or 0.0)
    raise ValueError(f"unknown model {name!r}; choose one of {MODELS}")


def fingerprint(
    name: str, num_classes: int, frames: int, size: int, genotype: Genotype | None
) -> dict:
    """What a checkpoint's weights belong to; stored in every checkpoint."""
    return {
        "model": name,
        "genotype": genotype.key() if genotype is not None else "",
        "num_classes": int(num_classes),
        "frames": int(frames),
        "size": int(size),
    }


def check_fingerprint(found: dict, expected: dict, path: str | Path) -> None:
    """Refuse weights trained for another model, genotype or class count, saying which."""
    if found["model"] != expected["model"]:
        raise CheckpointError(
            f"checkpoint {path} holds a {found['model']!r} network, not {expected['model']!r}"
        )
    if found["num_classes"] != expected["num_classes"]:
        raise CheckpointError(
            f"checkpoint {path} was trained for {found['num_classes']} classes, "
            f"this run has {expected['num_classes']}"
        )
    if found["genotype"] != expected["genotype"]:
        raise CheckpointError(
            f"checkpoint {path} was trained from another genotype (cells, widths or depth "
            "differ): pass the genotype it was trained with, or start a new run"
        )


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


__all__ = [
    "MODELS",
    "Frame2D",
    "build_model",
    "check_fingerprint",
    "check_model_streams",
    "create_c3d",
    "create_r2plus1d",
    "create_r2plus1d_18",
    "create_x3d_xs",
    "fingerprint",
    "load_matching",
    "resolve_genotype",
    "scale_widths",
    "scaled_width",
    "supernet_to_network",
]
