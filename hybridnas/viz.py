"""Pictures of what a search found: cell drawings and the alpha heat map (PNG, matplotlib)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from hybridnas.space.genotype import CellSpec, Genotype  # noqa: E402


def draw_cell(spec: CellSpec, path: str | Path, title: str = "") -> Path:
    """Draw a cell as a DAG: the two inputs on the left, nodes left to right, arcs labelled."""
    nodes = sorted({0, 1} | {j for _, j, _ in spec.edges})
    pos = {n: (0.0, 1.0 - 2.0 * n) if n < 2 else (float(n - 1), 0.0) for n in nodes}
    out = (max(nodes) + 0.2, 0.0)
    fig, ax = plt.subplots(figsize=(2.4 * len(nodes), 4.0))
    for i, j, op in spec.edges:
        _arc(ax, pos[i], pos[j], op, bend=0.35 if i >= 2 else 0.0)
    for n in spec.concat:
        _arc(ax, pos[n], out, "", bend=-0.3 if n != max(spec.concat) else 0.0, color="0.75")
    names = {0: "c[k-2]", 1: "c[k-1]"}
    for n in nodes:
        face = "lightgreen" if n < 2 else "lightblue"
        ax.text(*pos[n], names.get(n, str(n)), ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "circle", "fc": face})  # fmt: skip
    ax.text(*out, "concat", ha="center", va="center", bbox={"boxstyle": "round", "fc": "wheat"})
    ax.set_xlim(-0.7, out[0] + 0.7)
    ax.set_ylim(-1.8, 1.4 + 0.15 * len(nodes))
    ax.axis("off")
    ax.set_title(title)
    return _save(fig, path)


def _arc(ax, src, dst, label: str, bend: float, color: str = "0.3") -> None:
    style = {"arrowstyle": "->", "connectionstyle": f"arc3,rad={bend}", "color": color,
             "shrinkA": 14, "shrinkB": 14}  # fmt: skip
    ax.annotate("", xy=dst, xytext=src, arrowprops=style)
    if label:
        # midpoint of matplotlib's arc3 quadratic Bezier, where the label belongs
        dx, dy = dst[0] - src[0], dst[1] - src[1]
        mx = (src[0] + dst[0]) / 2 + 0.5 * bend * dy
        my = (src[1] + dst[1]) / 2 - 0.5 * bend * dx
        ax.text(mx, my, label, fontsize=7, ha="center", va="center",
                bbox={"boxstyle": "round", "fc": "lightyellow", "ec": "0.7"})  # fmt: skip


def draw_genotype(genotype: Genotype, folder: str | Path) -> list[Path]:
    """``cell_normal.png`` and ``cell_reduce.png`` in ``folder``."""
    folder = Path(folder)
    return [
        draw_cell(genotype.cell(t), folder / f"cell_{t}.png", f"{t} cell")
        for t in ("normal", "reduce")
    ]


def plot_alpha_history(
    history: torch.Tensor, op_names: list[str], edge_names: list[str], path: str | Path
) -> Path:
    """Heat map of softmaxed alphas over epochs.

    history: (epochs, 2, E, num_ops) -> one panel per cell type, rows = edge x op, columns = epochs.
    """
    epochs, cells, edges, ops = history.shape
    fig, axes = plt.subplots(1, cells, figsize=(5 + 0.5 * epochs * cells, 0.1 * edges * ops + 2))
    rows = [f"{e} {o}" for e in edge_names for o in op_names]
    for c, ax in enumerate(axes if cells > 1 else [axes]):
        grid = history[:, c].reshape(epochs, edges * ops).T.numpy()
        lo, hi = float(history.min()), float(history.max())
        im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=lo, vmax=hi)
        ax.set_yticks(range(edges * ops))
        ax.set_yticklabels(rows, fontsize=4)
        for boundary in range(ops, edges * ops, ops):
            ax.axhline(boundary - 0.5, color="white", linewidth=0.5)
        ax.set_xlabel("epoch")
        ax.set_title(["normal", "reduce"][c])
        fig.colorbar(im, ax=ax, fraction=0.04)
    fig.suptitle("softmax(alpha) per edge and op over epochs", fontsize=9)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
