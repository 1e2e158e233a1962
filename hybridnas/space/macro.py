"""The macro skeleton of a network: everything but its two cell types.

``MacroSpec`` is declared once and held by both a ``Genotype`` (``genotype.macro``) and a
``SupernetConfig`` (``config.macro``); ``macro_fields_from_config`` is the one place it is
read from a Hydra tree. In a genotype document its fields are the ``stem``, ``stage_widths``,
``num_cells``, ``reduction_stride``, ``clip`` and ``num_classes`` keys (see genotype.py)::

    stem: Conv3d(in_channels -> stem_channels, stem_kernel, stem_stride) -> BN
    num_cells cells; stage s (between reductions) uses stage_widths[s] channels per node;
    reduction cells at 1/3 and 2/3 of the depth stride by reduction_stride
    clips (in_channels, frames, size, size) -> num_classes logits

``frame_stride`` (TinyVideoNets' frame stride): the clip takes every n-th frame of the data's
sampling, so ``frames`` frames span ``frames x frame_stride``; the network does not see it, the
data pipeline does (``clip.frame_stride`` in a genotype document, present when not 1).

``streams`` names the input streams (``STREAMS``): ``("rgb",)`` by default; with two streams the
clip holds them stacked on channels (``in_channels / len(streams)`` each, in order) and every
stream has its own stem of the shape above (see network.py).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from hybridnas.config import BuiltinData, SpaceConfig

Triple = tuple[int, int, int]
_SPACE, _DATA = SpaceConfig(), BuiltinData()  # the skeleton's defaults: the default search's
STREAMS = ("rgb", "motion")  # rgb frames; motion: frame differences (hybridnas.data.streams)
DEFAULT_STREAMS = ("rgb",)
CHANNELS_PER_STREAM = 3  # what the data layer gives each stream


@dataclass(frozen=True)
class MacroSpec:
    """Stage widths, depth, stem, reduction stride, clip shape and classes of a network."""

    stage_widths: tuple[int, ...] = _SPACE.stage_widths
    num_cells: int = _SPACE.num_cells
    stem_channels: int = _SPACE.stem_channels
    stem_kernel: Triple = (3, 3, 3)
    stem_stride: Triple = _SPACE.stem_stride
    reduction_stride: Triple = _SPACE.reduction_stride
    in_channels: int = 3
    frames: int = _DATA.frames
    size: int = _DATA.size
    num_classes: int = 10
    streams: tuple[str, ...] = DEFAULT_STREAMS
    frame_stride: int = 1

    def __post_init__(self) -> None:
        for name in ("stage_widths", "stem_kernel", "stem_stride", "reduction_stride", "streams"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        """The skeleton's keys of a genotype document, in document order; ``streams`` only when
        they are not the default RGB stream (a version-1 document has none)."""
        doc = {
            "stem": {
                "channels": self.stem_channels,
                "kernel": list(self.stem_kernel),
                "stride": list(self.stem_stride),
            },
            "stage_widths": list(self.stage_widths),
            "num_cells": self.num_cells,
            "reduction_stride": list(self.reduction_stride),
            "clip": {"channels": self.in_channels, "frames": self.frames, "size": self.size},
            "num_classes": self.num_classes,
        }
        if self.frame_stride != 1:
            doc["clip"]["frame_stride"] = self.frame_stride
        if self.streams != DEFAULT_STREAMS:
            doc["streams"] = list(self.streams)
        return doc

    @classmethod
    def from_dict(cls, doc: Any) -> MacroSpec:
        """From a (validated) genotype document."""
        stem, clip = doc["stem"], doc["clip"]
        return cls(
            stage_widths=tuple(int(w) for w in doc["stage_widths"]),
            num_cells=int(doc["num_cells"]),
            stem_channels=int(stem["channels"]),
            stem_kernel=tuple(stem["kernel"]),
            stem_stride=tuple(stem["stride"]),
            reduction_stride=tuple(doc["reduction_stride"]),
            in_channels=int(clip["channels"]),
            frames=int(clip["frames"]),
            size=int(clip["size"]),
            num_classes=int(doc["num_classes"]),
            streams=tuple(doc.get("streams", DEFAULT_STREAMS)),
            frame_stride=int(clip.get("frame_stride", 1)),
        )

    @classmethod
    def from_config(cls, model: Any, data: Any, num_classes: int) -> MacroSpec:
        """The skeleton a search config describes (keys it leaves out keep their defaults)."""
        fields = macro_fields_from_config(
            model,
            frames=data.frames,
            size=data.size,
            num_classes=num_classes,
            streams=data.get("streams"),
        )
        return cls(**fields)


MACRO_FIELDS = tuple(f.name for f in fields(MacroSpec))
# the model.* keys of a config that set a macro field (a null value sets nothing)
CONFIG_KEYS = ("stage_widths", "num_cells", "stem_channels", "stem_stride", "reduction_stride")
SCALARS = ("num_cells", "stem_channels")


def macro_fields_from_config(
    model: Any, *, frames: int, size: int, num_classes: int, streams: Any = None
) -> dict[str, Any]:
    """The macro fields a config sets: ``model.{stage_widths, num_cells, stem_channels,
    stem_stride, reduction_stride}`` where present and not null (a search config
    sets them all; a training config's null keeps the genotype's), the clip shape
    (``data.frames``, ``data.size``), ``num_classes`` (the dataset's) and, when given,
    ``streams`` (``data.streams``) with the input channels they stack to."""
    out: dict[str, Any] = {}
    for key in CONFIG_KEYS:
        value = model.get(key)
        if value is not None:
            out[key] = int(value) if key in SCALARS else tuple(int(v) for v in value)
    if streams is not None:
        out["streams"] = tuple(str(s) for s in streams)
        out["in_channels"] = CHANNELS_PER_STREAM * len(out["streams"])
    return {**out, "frames": frames, "size": size, "num_classes": num_classes}


def stream_problem(streams: Any, in_channels: int | None = None) -> str | None:
    """Why ``streams`` is not a valid stream list (one or two distinct names of ``STREAMS``
    whose clip channels ``in_channels`` split evenly), or None when it is."""
    if isinstance(streams, str) or not isinstance(streams, list | tuple) or not streams:
        return f"must be a list of 1 or 2 stream names from {list(STREAMS)}, got {streams!r}"
    unknown = [s for s in streams if s not in STREAMS]
    if unknown:
        return f"names unknown stream(s) {unknown}; known streams: {list(STREAMS)}"
    if len(streams) > 2 or len(set(streams)) != len(streams):
        return f"must list 1 or 2 distinct streams, got {list(streams)}"
    if in_channels is not None and in_channels % len(streams):
        return f"{len(streams)} streams cannot split {in_channels} clip channels evenly"
    return None


def split_macro(changes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(macro fields, the rest) of a keyword dict."""
    macro = {k: v for k, v in changes.items() if k in MACRO_FIELDS}
    return macro, {k: v for k, v in changes.items() if k not in MACRO_FIELDS}


def reads_macro(cls: type) -> type:
    """Class decorator: ``obj.<field>`` reads ``obj.macro.<field>`` for every macro field."""
    for name in MACRO_FIELDS:
        prop = property(lambda self, n=name: getattr(self.macro, n), doc=f"``macro.{name}``")
        setattr(cls, name, prop)
    return cls


def round_width(width: float, divisor: int = 4) -> int:
    """Nearest multiple of divisor (at least divisor)."""
    return max(divisor, int(width / divisor + 0.5) * divisor)
