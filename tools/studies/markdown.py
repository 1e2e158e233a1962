"""Small pieces the report sections share: number formatting, Markdown tables, figures."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class ReportInput:
    """What every section's report reads: results.json's meta and items, the mode's config,
    the bench folder (shortened to $BENCH in commands) and the report folder for figures."""

    meta: dict
    items: dict
    out: str
    dst: Path

    @property
    def cfg(self) -> dict:
        return self.meta.get("config", {})

    def section(self, name: str, ok: bool = True) -> list[dict]:
        """The records of one section (with ``ok``: only those that exited 0)."""
        return [
            v
            for v in self.items.values()
            if v.get("section") == name and (not ok or v.get("rc") == 0)
        ]


def fmt(x: Any, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.{nd}f}"


def mean_sd(xs: list[float]) -> tuple[float | None, float | None]:
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, ax, path: Path, *, legend_size: int = 8) -> None:
    """Grid, legend, tight layout, 90 dpi PNG; the figure is closed."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    pyplot().close(fig)


def short(cmd: str, out: str) -> str:
    """The command with the python path and the bench folder shortened for the report."""
    parts = cmd.split(" ")
    if parts and parts[0].endswith("python") or parts and "python" in Path(parts[0]).name:
        parts[0] = "python"
    return " ".join(parts).replace(out, "$BENCH")


def last_error(rec: dict) -> str:
    """The last line naming an error in a run's log (why it failed), else a pointer to it."""
    try:
        lines = Path(rec["log"]).read_text(errors="replace").splitlines()
    except (KeyError, OSError):
        return "see its log"
    errs = [ln.strip() for ln in lines if "Error" in ln and not ln.startswith("Error executing")]
    return f"`{errs[-1][:160]}`" if errs else "see its log"
