"""What a network is, as a checkpoint stores it: :class:`ModelSpec`, its fingerprint, and
:func:`build_model`, which turns its flat ``model.*`` fields into a registered builder's call.

A checkpoint carries the model's *fingerprint* (name, genotype key, classes, clip shape) so
that weights are never loaded into another net.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from hybridnas.config import ConfigError
from hybridnas.engine.checkpoint import CheckpointError
from hybridnas.models.genotype_net import resolve_genotype
from hybridnas.models.registry import list_models, model_entry
from hybridnas.space.genotype import Genotype

if TYPE_CHECKING:
    from hybridnas.config import DataConfig, ModelConfig


@dataclass
class ModelSpec:
    """What the network is; enough to rebuild it from a checkpoint alone."""

    name: str
    num_classes: int
    frames: int
    size: int
    genotype: Genotype | None = None
    dropout: float | None = None  # None: the network's own default (its builder's)
    r2plus1d_width: int = 16
    c3d_width: int = 16
    x3d_width_factor: float = 2.0
    spatial_strides: tuple[int, ...] | None = None  # X3D / R(2+1)D: stem, stages 1-4
    connection_weights: bool = False  # genotype nets: learned sigmoid weight per node input

    def build(self) -> nn.Module:
        """The network: the spec's fields are ``build_model``'s arguments, one for one."""
        return build_model(**{f.name: getattr(self, f.name) for f in fields(self)})

    def fingerprint(self) -> dict:
        return fingerprint(self.name, self.num_classes, self.frames, self.size, self.genotype)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["genotype"] = self.genotype.to_json() if self.genotype else ""
        d["spatial_strides"] = list(self.spatial_strides) if self.spatial_strides else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        g = Genotype.from_json(d["genotype"]) if d["genotype"] else None
        strides = d.get("spatial_strides")  # a list in the checkpoint's dict
        return cls(**{**d, "genotype": g, "spatial_strides": tuple(strides) if strides else None})


SPEC_FIELDS = tuple(f.name for f in fields(ModelSpec) if f.name not in ("name", "num_classes"))


def build_model(name: str, *, num_classes: int, **spec_fields: Any) -> nn.Module:
    """The registered network ``name`` for ``num_classes`` classes from ModelSpec fields
    (``frames``, ``size``, ``genotype``, ``dropout``, ``c3d_width`` ...): each builder gets the
    fields its registration reads, under its own keyword (None: the builder's default). A
    switch set for a network that has no such switch (``connection_weights`` on a baseline)
    is refused. (B, C, frames, size, size) clips -> (B, num_classes) logits."""
    unknown = set(spec_fields) - set(SPEC_FIELDS)
    if unknown:
        raise TypeError(f"build_model got {sorted(unknown)}; ModelSpec fields are {SPEC_FIELDS}")
    entry = model_entry(name)
    for key, value in spec_fields.items():
        if value is True and key not in entry.spec_keys:
            readers = [n for n in list_models() if key in model_entry(n).spec_keys]
            raise ConfigError(f"model.{key} needs model.name={'|'.join(readers)}, not {name!r}")
    kwargs = {
        keyword: spec_fields[key]
        for key, keyword in entry.spec_keys.items()
        if spec_fields.get(key) is not None
    }
    return entry.builder(num_classes=num_classes, **kwargs)


def model_spec(m: ModelConfig, data: DataConfig, num_classes: int) -> ModelSpec:
    """The network ``m`` names, for ``data``'s clips and ``num_classes`` classes."""
    model_entry(m.name)  # an unknown name is refused before a genotype is read
    g = None
    if m.name == "genotype":
        g = resolve_genotype(vars(m), num_classes=num_classes, frames=data.frames, size=data.size)
    return ModelSpec(
        m.name,
        num_classes,
        data.frames,
        data.size,
        g,
        None if m.dropout is None else float(m.dropout),
        int(m.r2plus1d_width),
        int(m.c3d_width),
        float(m.x3d_width_factor),
        tuple(m.spatial_strides) if m.spatial_strides else None,
        bool(m.connection_weights),
    )


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
