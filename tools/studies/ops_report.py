"""The "Ops" section of BENCHMARKS.md, from ``ops.json`` in the report folder
(written by ``python tools/bench.py ops``)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

REFERENCE_OP = "conv3d_3x3x3"
MODE_TITLES = {
    "forward_b1": "inference, 1 clip",
    "forward": "forward, batch",
    "train": "forward+backward, batch",
}


def _sums(doc: dict[str, Any], threads: int) -> dict[tuple[str, str, str], float]:
    """ms per clip summed over the default shapes, per (version, op, mode)."""
    total: dict[tuple[str, str, str], float] = defaultdict(float)
    for r in doc["rows"]:
        if r["threads"] == threads:
            total[(r["version"], r["op"], r["mode"])] += r["ms_per_clip"]
    return total


def _cost(doc: dict[str, Any], op: str, key: str) -> float:
    return sum(c[key] for k, c in doc["costs"].items() if k.split("|")[0] == op)


def _cell(sums: dict, op: str, mode: str, mflops: float, ref: dict[str, float]) -> str:
    new, old = sums.get(("new", op, mode)), sums.get(("old", op, mode))
    if new is None:
        return "-"
    speed = f" ({old / new:.1f}x)" if old else ""
    if mflops > 0:
        rel = (new / mflops) / (ref[mode] / ref["mflops"])
        return f"{new:.3f}{speed}, {rel:.2f}/MF"
    return f"{new:.3f}{speed}, {new / ref[mode]:.2f}x"


def _table(doc: dict[str, Any], threads: int) -> list[str]:
    sums = _sums(doc, threads)
    modes = [m for m in MODE_TITLES if ("new", REFERENCE_OP, m) in sums]
    ref = {m: sums[("new", REFERENCE_OP, m)] for m in modes}
    ref["mflops"] = _cost(doc, REFERENCE_OP, "mflops")
    head = " | ".join(MODE_TITLES[m] for m in modes)
    lines = [f"| op | MFLOPs | params | {head} |", "|---" * (3 + len(modes)) + "|"]
    ops = sorted({op for _, op, _ in sums})
    for op in ops:
        mflops, params = _cost(doc, op, "mflops"), int(_cost(doc, op, "params"))
        cells = " | ".join(_cell(sums, op, m, mflops, ref) for m in modes)
        lines.append(f"| {op} | {mflops:.2f} | {params} | {cells} |")
    return lines


def _network_lines(doc: dict[str, Any]) -> list[str]:
    lines = []
    for n in doc.get("networks", []):
        old = n.get("old")
        versus = (
            f", the code at `{doc['against']}` {old:.2f} ms: **{old / n['new']:.2f}x faster**, "
            f"outputs equal to {n['max_abs_diff']:.1e} (same weights)"
            if old
            else ""
        )
        lines.append(
            f"- `{doc['genotype']}` network, batch 1, {n['threads']} thread(s): "
            f"{n['new']:.2f} ms per clip{versus}."
        )
    return lines


def ops_section(dst: Path) -> list[str]:
    """Markdown lines of the section, or none without ops.json."""
    path = dst / "ops.json"
    if not path.is_file():
        return []
    doc = json.loads(path.read_text())
    against = f' and the code at `{doc["against"]}` ("before")' if doc.get("against") else ""
    lines = [
        "## Ops\n",
        f"Made by `python tools/bench.py ops --against {doc.get('against') or 'COMMIT'}`: every "
        f"registered op at the five (channels, stride, input) places the default supernet gives "
        f"an edge ({', '.join(doc['shapes'])}), this code{against} built side by side in one "
        f"process and timed in {doc['rounds']} interleaved rounds (load average at the end "
        f"{', '.join(f'{x:.1f}' for x in doc['load'])}; compare ratios, not milliseconds). "
        f"Each cell: ms per clip summed over the five places, (speed-up over before), then ms "
        f"per MFLOP relative to {REFERENCE_OP} (/MF) for ops with FLOPs, or time relative to "
        f"{REFERENCE_OP} (x) for ops without. Batch = {doc['batch']} clips except the "
        f"inference column (1 clip). Per-shape rows are in [ops.json](ops.json).\n",
        *_network_lines(doc),
        "",
    ]
    for threads in sorted({r["threads"] for r in doc["rows"]}):
        lines += [f"**{threads} thread(s)**\n", *_table(doc, threads), ""]
    notes = dst / "ops_reading.md"
    if notes.is_file():
        lines += [notes.read_text().strip(), ""]
    return lines
