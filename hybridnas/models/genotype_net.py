"""The found-cell network: a genotype (from a search, or the built-in one) scaled to the data.

``model.genotype`` names a genotype.json or a search run folder (``builtin``: the one shipped in
``genotypes/``); :func:`resolve_genotype` fits its skeleton to the config and the data's clip,
and the registered ``genotype`` builder turns it into a :class:`hybridnas.space.network.Network`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from hybridnas.config import ConfigError
from hybridnas.models.registry import register_model
from hybridnas.space.genotype import Genotype, GenotypeError
from hybridnas.space.macro import DEFAULT_STREAMS, macro_fields_from_config
from hybridnas.space.network import build_network

BUILTIN_GENOTYPE = Path(__file__).resolve().parent / "genotypes" / "builtin_sdas.json"


@register_model(
    "genotype",
    spec_keys={
        "genotype": "genotype",
        "dropout": "dropout",
        "connection_weights": "connection_weights",
    },
)
def create_genotype_net(
    *,
    num_classes: int,
    genotype: Genotype | None = None,
    dropout: float = 0.0,
    connection_weights: bool = False,
) -> nn.Module:
    """The network a genotype describes, for its own clip shape
    (B, C, genotype.frames, genotype.size, genotype.size) -> (B, num_classes); C is 3, or
    ``genotype.in_channels`` for two streams::

        clip (B, C, T, H, W)
          -> stem: Conv3d (stride stem_stride) -> BN                 (B, stem_channels, ...)
          -> cell 0 .. num_cells-1: each reads the two previous cells' outputs through the
             genotype's ops on its edges; reduction cells at 1/3 and 2/3 depth halve H, W
             (and T), widths stage_widths
          -> global average pool -> Dropout -> Linear                (B, num_classes)

    ``connection_weights``: each node sums its inputs with learned sigmoid weights
    (AssembleNet; see ``hybridnas.space.cells.Cell``)."""
    if genotype is None:
        raise GenotypeError("model=genotype needs a genotype")
    return build_network(
        genotype,
        num_classes=num_classes,
        dropout=dropout,
        connection_weights=connection_weights,
    )


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
