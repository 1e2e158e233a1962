"""Evaluation the way papers report it: top-1/top-5 over videos, single- or multi-view
(clips x crops, softmax scores averaged), per-class report, confusion matrix, ensembles."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from torch import nn


@torch.no_grad()
def predict(
    model: nn.Module, loader, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities per video (N, K) and labels (N,), in the loader's order.

    Single-view batches are (clips (B, C, T, H, W), labels); multi-view batches are
    (clips (B, V, C, T, H, W), labels, video_index): the V views' softmax scores are averaged.
    """
    model.eval()
    scores, labels = [], []
    for batch in loader:
        x, y = batch[0].to(device), batch[1]
        if x.dim() == 6:
            b, v = x.shape[:2]
            p = model(x.flatten(0, 1)).float().softmax(1).reshape(b, v, -1).mean(1)
        else:
            p = model(x).float().softmax(1)
        scores.append(p.cpu())
        labels.append(y.cpu())
    return torch.cat(scores), torch.cat(labels)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Share of rows whose label is among the k highest scores; scores (N, K), labels (N,)."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return float((top == labels[:, None]).any(1).float().mean())


def confusion_matrix(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K, K) counts, rows = true class, columns = predicted class."""
    k = scores.shape[1]
    idx = labels * k + scores.argmax(1)
    return torch.bincount(idx, minlength=k * k).reshape(k, k)


def per_class_report(cm: torch.Tensor, class_names: list[str]) -> list[dict]:
    """Per class: support, recall (= per-class top-1), precision, F1, from a confusion matrix."""
    rows = []
    for i, name in enumerate(class_names):
        tp, support, predicted = float(cm[i, i]), float(cm[i].sum()), float(cm[:, i].sum())
        recall = tp / support if support else 0.0
        precision = tp / predicted if predicted else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(
            {
                "class": name,
                "support": int(support),
                "recall": recall,
                "precision": precision,
                "f1": f1,
            }
        )
    return rows


def write_report(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def plot_confusion(
    cm: torch.Tensor, class_names: list[str], path: str | Path, title: str = ""
) -> Path:
    """Row-normalised confusion matrix as a PNG (labels shown up to 40 classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(class_names)
    norm = cm.float() / cm.sum(1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(min(4 + 0.35 * k, 20),) * 2)
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    if k <= 40:
        ax.set_xticks(range(k), class_names, rotation=90, fontsize=7)
        ax.set_yticks(range(k), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def ensemble_scores(member_scores: list[torch.Tensor]) -> torch.Tensor:
    """Average of the members' class probabilities (EvaNet-style ensemble), each (N, K)."""
    shapes = {tuple(s.shape) for s in member_scores}
    if len(shapes) != 1:
        raise ValueError(f"ensemble members scored different shapes: {sorted(shapes)}")
    return torch.stack(member_scores).mean(0)
