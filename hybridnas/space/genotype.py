"""The genotype: the one object every stage after the supernet speaks.

A genotype is a versioned JSON document::

    {
      "format": "hybridnas.genotype", "version": 1,
      "cells": {
        "normal": {"edges": [[0, 2, "conv3d_3x3x3"], [1, 2, "skip"], ...], "concat": [2, 3, 4, 5]},
        "reduce": {"edges": [...], "concat": [2, 3, 4, 5]}
      },
      "stem": {"channels": 24, "kernel": [3, 3, 3], "stride": [1, 1, 1]},
      "stage_widths": [8, 16, 32],
      "num_cells": 5,
      "reduction_stride": [1, 2, 2],
      "clip": {"channels": 3, "frames": 8, "size": 32},
      "num_classes": 10
    }

Nodes 0 and 1 of a cell are its two inputs (the outputs of the two previous cells); nodes
2, 3, ... are intermediate nodes; an edge ``[i, j, op]`` feeds node i into node j through op,
and needs ``i < j``. The cell output concatenates the ``concat`` nodes. Stage ``s`` uses
``stage_widths[s]`` channels per node; reduction cells sit at 1/3 and 2/3 of the depth.

Version 2 adds ``"streams"``, the input streams in clip-channel order (one or two of
``rgb``, ``motion``), e.g. ``"streams": ["rgb", "motion"], "clip": {"channels": 6, ...}``: each
stream has its own stem of the ``stem`` shape, and the streams feed the first cell's two inputs
(see network.py). A genotype with only the RGB stream is written as version 1, as before;
version-1 documents load as RGB-only genotypes.

Version 3 adds ``clip.frame_stride`` (every n-th frame of the data's sampling; see macro.py),
written only when it is not 1, so a genotype without one keeps its version and bytes.

Version 4 adds multi-branch edges (NSE): an edge's op may be two or more distinct ops joined by
``+`` (``[0, 2, "conv3d_3x3x3+p3d_c"]``), which the network mixes with learned, normalised
weights (``hybridnas.ops.registry.MultiBranch``); written only when a cell has such an edge.

Loading validates everything and names the offending field in a ``GenotypeError``. Genotypes
are shared files, so loading is bounded before anything is allocated: the file is at most
``MAX_JSON_BYTES`` and nested at most ``MAX_JSON_DEPTH`` deep, and every size is checked
against ``LIMITS`` (well above what any recipe uses) before a range or a network is built.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hybridnas.ops import list_ops
from hybridnas.ops.registry import is_edge_op, is_multi_branch
from hybridnas.space.macro import (
    MACRO_FIELDS,
    MacroSpec,
    reads_macro,
    split_macro,
    stream_problem,
)

FORMAT = "hybridnas.genotype"
VERSION = 4  # the newest version this code reads; 1 is still read (and written when RGB-only)
STREAMS_VERSION = 2  # the first version that records streams
FRAME_STRIDE_VERSION = 3  # the first version that records clip.frame_stride
MULTI_BRANCH_VERSION = 4  # the first version whose edges may hold several ops ("a+b")
CELL_TYPES = ("normal", "reduce")


#: Bounds on what a genotype may ask for, checked before anything is allocated. The largest
#: recipe (finetune_kinetics400) uses 4-node cells, 8 cells, widths up to 192, 16 frames of 224
#: px and 400 classes; the limits leave an order of magnitude or more over that.
LIMITS = {
    "nodes": 16,  # intermediate nodes per cell (node indices 2..17)
    "edges": 256,  # edges per cell
    "num_cells": 64,
    "width": 4096,  # stage widths and stem channels
    "kernel": 31,  # stem kernel and strides, per axis
    "channels": 12,  # clip channels (3 per stream)
    "frames": 512,
    "size": 1024,
    "num_classes": 100_000,
}
MAX_JSON_BYTES = 1 << 20  # a genotype is a few KB; meta included, far below 1 MiB
MAX_JSON_DEPTH = 32  # a genotype nests 5 deep (cells.normal.edges[k][i]); meta a little more


class GenotypeError(ValueError):
    """A genotype document is malformed; the message names the field."""


@dataclass(frozen=True)
class CellSpec:
    """One cell type: edges ``(from_node, to_node, op)`` and the nodes concatenated at the end."""

    edges: tuple[tuple[int, int, str], ...]
    concat: tuple[int, ...]

    def inputs_of(self, node: int) -> list[tuple[int, str]]:
        """The ``(from_node, op)`` pairs feeding ``node``, in document order."""
        return [(i, op) for i, j, op in self.edges if j == node]

    def to_dict(self) -> dict[str, Any]:
        return {"edges": [[i, j, op] for i, j, op in self.edges], "concat": list(self.concat)}


@reads_macro
@dataclass(frozen=True, init=False)
class Genotype:
    """A whole network architecture: two cell types plus the macro skeleton (``macro``).

    The skeleton's fields read through: ``g.stage_widths`` is ``g.macro.stage_widths``, and
    ``Genotype(normal, reduce, stage_widths=..., frames=...)`` builds the ``MacroSpec``.
    """

    normal: CellSpec
    reduce: CellSpec
    macro: MacroSpec = MacroSpec()
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __init__(
        self,
        normal: CellSpec,
        reduce: CellSpec,
        macro: MacroSpec | None = None,
        meta: Mapping[str, Any] | None = None,
        **macro_fields: Any,
    ) -> None:
        unknown = set(macro_fields) - set(MACRO_FIELDS)
        if unknown:
            raise TypeError(f"Genotype got unexpected field(s) {sorted(unknown)}")
        macro = macro or MacroSpec()
        if macro_fields:
            macro = replace(macro, **macro_fields)
        for name, value in (("normal", normal), ("reduce", reduce), ("macro", macro)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "meta", {} if meta is None else meta)

    def cell(self, cell_type: str) -> CellSpec:
        return self.normal if cell_type == "normal" else self.reduce

    def reduction_indices(self) -> tuple[int, ...]:
        """Positions of reduction cells: 1/3 and 2/3 of the depth, as in DARTS."""
        return reduction_indices(self.num_cells)

    def replace(self, **changes: Any) -> Genotype:
        """A copy with some fields (cells, meta or skeleton fields) changed, validated."""
        macro_changes, rest = split_macro(changes)
        new = replace(self, macro=replace(rest.pop("macro", self.macro), **macro_changes), **rest)
        validate(new.to_dict())
        return new

    def to_dict(self) -> dict[str, Any]:
        macro = self.macro.to_dict()
        version = document_version(macro)
        if self.has_multi_branch():
            version = max(version, MULTI_BRANCH_VERSION)
        return {
            "format": FORMAT,
            "version": version,
            "cells": {"normal": self.normal.to_dict(), "reduce": self.reduce.to_dict()},
            **macro,
            "meta": dict(self.meta),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def has_multi_branch(self) -> bool:
        """Whether an edge of either cell holds several ops (``a+b``)."""
        return any(is_multi_branch(op) for c in (self.normal, self.reduce) for _, _, op in c.edges)

    def key(self) -> str:
        """A canonical string identifying the architecture (meta excluded), for deduplication."""
        doc = self.to_dict()
        doc.pop("meta")
        for cell in doc["cells"].values():
            cell["edges"] = sorted(cell["edges"], key=lambda e: (e[1], e[0], e[2]))
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    def save(self, path: str | os.PathLike) -> None:
        """Write the JSON atomically (a reader never sees half a genotype)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            f.write(self.to_json())
            tmp = f.name
        os.replace(tmp, path)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Genotype:
        validate(doc)
        cells = {
            name: CellSpec(
                edges=tuple((int(i), int(j), str(op)) for i, j, op in doc["cells"][name]["edges"]),
                concat=tuple(int(n) for n in doc["cells"][name]["concat"]),
            )
            for name in CELL_TYPES
        }
        return cls(
            normal=cells["normal"],
            reduce=cells["reduce"],
            macro=MacroSpec.from_dict(doc),
            meta=dict(doc.get("meta", {})),
        )

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        """Parse and validate a genotype document of at most ``MAX_JSON_BYTES`` and
        ``MAX_JSON_DEPTH`` nesting levels."""
        if len(text) > MAX_JSON_BYTES:
            raise GenotypeError(
                f"genotype is {len(text)} characters, over the {MAX_JSON_BYTES}-byte limit"
            )
        depth = json_depth(text)
        if depth > MAX_JSON_DEPTH:
            raise GenotypeError(
                f"genotype JSON nests {depth} deep, over the limit of {MAX_JSON_DEPTH}"
            )
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise GenotypeError(f"genotype is not valid JSON: {err}") from err
        except ValueError as err:  # e.g. an integer of more digits than Python converts
            raise GenotypeError(f"genotype is not valid JSON: {err}") from None
        return cls.from_dict(doc)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Genotype:
        """Read a genotype JSON file (or ``genotype.json`` inside a run folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / "genotype.json"
        if not path.is_file():
            raise GenotypeError(f"genotype file not found: {path}")
        try:
            with path.open("rb") as f:  # read one byte past the limit, never the whole file
                data = f.read(MAX_JSON_BYTES + 1)
            if len(data) > MAX_JSON_BYTES:
                raise GenotypeError(f"file is over the {MAX_JSON_BYTES}-byte limit of a genotype")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as err:
                raise GenotypeError(f"genotype is not UTF-8 text ({err.reason})") from None
            return cls.from_json(text)
        except GenotypeError as err:
            raise GenotypeError(f"{path}: {err}") from None


def document_version(macro_doc: Mapping[str, Any]) -> int:
    """The oldest version that holds these skeleton keys (older readers keep reading them)."""
    if "frame_stride" in macro_doc["clip"]:
        return FRAME_STRIDE_VERSION
    return STREAMS_VERSION if "streams" in macro_doc else 1


def json_depth(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest (strings skipped), in linear time.

    Hand-written because ``json.loads`` has no depth limit: it recurses until Python's
    recursion limit and fails with a RecursionError. Strings are blanked by a regex and the
    brackets counted by numpy, so a 1 MiB text takes milliseconds."""
    import re

    import numpy as np

    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", text)
    steps = np.frombuffer(bare.encode("utf-8", "replace"), np.uint8)
    opens = (steps == ord("[")) | (steps == ord("{"))
    closes = (steps == ord("]")) | (steps == ord("}"))
    level = np.cumsum(opens.astype(np.int64) - closes)
    return int(level.max()) if len(level) else 0


def reduction_indices(num_cells: int) -> tuple[int, ...]:
    """Cell positions that reduce: 1/3 and 2/3 of the depth (a 1- or 2-cell net has one)."""
    if num_cells < 3:
        return (num_cells // 2,) if num_cells == 2 else ()
    return (num_cells // 3, 2 * num_cells // 3)


def num_stages(num_cells: int) -> int:
    return len(reduction_indices(num_cells)) + 1


# ---------------------------------------------------------------- validation


def _require(doc: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(doc, Mapping):
        raise GenotypeError(f"{where} must be an object, got {type(doc).__name__}")
    if key not in doc:
        raise GenotypeError(f"missing key '{where}.{key}'" if where else f"missing key '{key}'")
    return doc[key]


def _short(value: Any) -> str:
    """``repr(value)`` cut to one short line: a hostile value may be megabytes long."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _positive_int(value: Any, where: str, limit: str | None = None) -> int:
    """``value`` if a positive integer, at most ``LIMITS[limit]`` when ``limit`` is given."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise GenotypeError(f"'{where}' must be an integer, got {_short(value)}")
    if value <= 0:
        raise GenotypeError(f"'{where}' must be positive, got {_short(value)}")
    if limit and value > LIMITS[limit]:
        raise GenotypeError(
            f"'{where}' = {_short(value)} is over the limit of {LIMITS[limit]} "
            "(hybridnas.space.genotype.LIMITS)"
        )
    return value


def _triple(value: Any, where: str) -> None:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise GenotypeError(f"'{where}' must be a list of 3 integers, got {_short(value)}")
    for k, v in enumerate(value):
        _positive_int(v, f"{where}[{k}]", "kernel")


def _validate_cell(cell: Any, name: str, version: int) -> None:
    where = f"cells.{name}"
    edges = _require(cell, "edges", where)
    concat = _require(cell, "concat", where)
    if not isinstance(edges, list | tuple) or not edges:
        raise GenotypeError(f"'{where}.edges' must be a non-empty list")
    if len(edges) > LIMITS["edges"]:
        raise GenotypeError(
            f"'{where}.edges' has {len(edges)} edges, over the limit of {LIMITS['edges']}"
        )
    last_node = LIMITS["nodes"] + 1
    fed = {0, 1}
    for k, edge in enumerate(edges):
        ew = f"{where}.edges[{k}]"
        if not isinstance(edge, list | tuple) or len(edge) != 3:
            raise GenotypeError(f"'{ew}' must be [from_node, to_node, op], got {_short(edge)}")
        i, j, op = edge
        if (
            isinstance(i, bool)
            or not isinstance(i, int)
            or isinstance(j, bool)
            or not isinstance(j, int)
        ):
            raise GenotypeError(f"'{ew}' nodes must be integers, got {_short(edge)}")
        if j > last_node:
            raise GenotypeError(
                f"'{ew}': node {_short(j)} is over the limit of {LIMITS['nodes']} intermediate "
                f"nodes (indices up to {last_node})"
            )
        if i < 0 or j < 2:
            raise GenotypeError(f"'{ew}' = {edge!r}: nodes 0, 1 are inputs; edges end at node >= 2")
        if i >= j:
            raise GenotypeError(
                f"'{ew}' = {edge!r}: node {j} is fed by node {i}, which is not an earlier node"
            )
        if not isinstance(op, str) or not is_edge_op(op):
            raise GenotypeError(
                f"'{ew}': unknown op {_short(op)}; known ops: {', '.join(list_ops())} "
                "(or 2+ distinct of them but none, joined by '+')"
            )
        if is_multi_branch(op) and version < MULTI_BRANCH_VERSION:
            raise GenotypeError(
                f"'{ew}': multi-branch op {_short(op)} needs 'version' {MULTI_BRANCH_VERSION}"
            )
        fed.add(j)
    last = max(fed)
    missing = sorted(set(range(2, last + 1)) - fed)
    if missing:
        raise GenotypeError(f"'{where}': node(s) {missing} have no incoming edge")
    used_as_input = {e[0] for e in edges}
    if not isinstance(concat, list | tuple) or not concat or len(concat) > last_node:
        raise GenotypeError(
            f"'{where}.concat' must be a non-empty list of nodes, at most {last_node}"
        )
    for n in concat:
        if isinstance(n, bool) or not isinstance(n, int) or n not in fed or n < 2:
            raise GenotypeError(
                f"'{where}.concat' names {_short(n)}, which is not an intermediate node"
            )
    dangling = sorted(n for n in fed - {0, 1} if n not in concat and n not in used_as_input)
    if dangling:
        raise GenotypeError(f"'{where}': node(s) {dangling} feed nothing (dangling)")


def validate(doc: Mapping[str, Any]) -> None:
    """Check a genotype document; raise ``GenotypeError`` naming the first bad field."""
    if not isinstance(doc, Mapping):
        raise GenotypeError(f"genotype must be a JSON object, got {type(doc).__name__}")
    fmt = doc.get("format", FORMAT)
    if fmt != FORMAT:
        raise GenotypeError(f"'format' is {fmt!r}, expected {FORMAT!r}")
    version = _require(doc, "version", "")
    if isinstance(version, bool) or version not in range(1, VERSION + 1):
        raise GenotypeError(
            f"'version' {version!r} is not supported (this hybridnas reads 1 to {VERSION})"
        )
    cells = _require(doc, "cells", "")
    for name in CELL_TYPES:
        _validate_cell(_require(cells, name, "cells"), name, version)
    stem = _require(doc, "stem", "")
    _positive_int(_require(stem, "channels", "stem"), "stem.channels", "width")
    _triple(_require(stem, "kernel", "stem"), "stem.kernel")
    _triple(_require(stem, "stride", "stem"), "stem.stride")
    num_cells = _positive_int(_require(doc, "num_cells", ""), "num_cells", "num_cells")
    widths = _require(doc, "stage_widths", "")
    if not isinstance(widths, list | tuple) or len(widths) != num_stages(num_cells):
        raise GenotypeError(
            f"'stage_widths' must list {num_stages(num_cells)} widths for {num_cells} cells, "
            f"got {_short(widths)}"
        )
    for k, w in enumerate(widths):
        _positive_int(w, f"stage_widths[{k}]", "width")
    _triple(_require(doc, "reduction_stride", ""), "reduction_stride")
    clip = _require(doc, "clip", "")
    for key in ("channels", "frames", "size"):
        _positive_int(_require(clip, key, "clip"), f"clip.{key}", key)
    if "frame_stride" in clip:
        if version < FRAME_STRIDE_VERSION:
            raise GenotypeError(f"'clip.frame_stride' needs 'version' {FRAME_STRIDE_VERSION}")
        _positive_int(clip["frame_stride"], "clip.frame_stride", "frames")
    _positive_int(_require(doc, "num_classes", ""), "num_classes", "num_classes")
    _validate_streams(doc, version)


def _validate_streams(doc: Mapping[str, Any], version: int) -> None:
    if version < STREAMS_VERSION:
        if "streams" in doc:
            raise GenotypeError(f"'streams' needs 'version' {STREAMS_VERSION}, got {version}")
        return
    if version >= FRAME_STRIDE_VERSION and "streams" not in doc:
        return  # a version-3 document without streams is RGB-only
    problem = stream_problem(_require(doc, "streams", ""), doc["clip"]["channels"])
    if problem:
        raise GenotypeError(f"'streams' {problem}")
