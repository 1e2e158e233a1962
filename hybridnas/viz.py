"""Pictures of what a search found: cell drawings and the alpha heat map (PNG, matplotlib)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from hybridnas.space.genotype import CellSpec, Genotype  # noqa: E402


def draw_cell(spec: CellSpec, path: str | Path, title: str = "") -> Path:
    """Draw a cell as a DAG: inputs on the left, nodes left to right, arcs labelled by op."""
    nodes = sorted({0, 1} | {j for _, j, _ in spec.edges})
    x = {n: (0.0 if n < 2 else float(n - 1)) for n in nodes}
    y = {n: (1.0 if n == 0 else -1.0 if n == 1 else 0.0) for n in nodes}
    out = max(nodes) + 0.5
    fig, ax = plt.subplots(figsize=(2.2 * len(nodes), 3.2))
    for k, (i, j, op) in enumerate(spec.edges):
        bend = 0.25 + 0.12 * (k % 3)
        ax.annotate(
            "",
            xy=(x[j], y[j]),
            xytext=(x[i], y[i]),
            arrowprops={"arrowstyle": "->", "connectionstyle": f"arc3,rad={bend}", "color": "0.3"},
        )
        mx, my = (x[i] + x[j]) / 2, (y[i] + y[j]) / 2 + bend * abs(x[j] - x[i]) / 2
        ax.text(
            mx,
            my,
            op,
            fontsize=7,
            ha="center",
            va="center",
            bbox={"boxstyle": "round", "fc": "lightyellow", "ec": "0.7"},
        )
    for n in spec.concat:
        ax.annotate(
            "", xy=(out, 0), xytext=(x[n], y[n]), arrowprops={"arrowstyle": "->", "color": "0.7"}
        )
    labels = {0: "c_{k-2}", 1: "c_{k-1}"}
    for n in nodes:
        ax.text(
            x[n],
            y[n],
            labels.get(n, str(n)),
            ha="center",
            va="center",
            bbox={"boxstyle": "circle", "fc": "lightblue" if n > 1 else "lightgreen"},
        )
    ax.text(out, 0, "concat", ha="center", va="center", bbox={"boxstyle": "round", "fc": "wheat"})
    ax.set_xlim(-0.6, out + 0.6)
    ax.set_ylim(-1.6, 1.6)
    ax.axis("off")
    ax.set_title(title)
    return _save(fig, path)


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
    fig, axes = plt.subplots(1, cells, figsize=(4 + 0.35 * epochs * cells, 0.09 * edges * ops + 2))
    for c, ax in enumerate(axes if cells > 1 else [axes]):
        grid = history[:, c].reshape(epochs, edges * ops).T.numpy()
        im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=float(history.max()))
        ax.set_yticks(range(0, edges * ops, ops))
        ax.set_yticklabels(edge_names, fontsize=6)
        ax.set_xlabel("epoch")
        ax.set_title(["normal", "reduce"][c])
        fig.colorbar(im, ax=ax, fraction=0.04)
    fig.suptitle("softmax(alpha) per edge (rows: " + ", ".join(op_names) + ")", fontsize=7)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
