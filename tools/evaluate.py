"""Evaluate trained checkpoints: top-1/top-5, single- or multi-view, per-class report,
confusion matrix, and an ensemble when several checkpoints are given.

    python tools/evaluate.py ckpt=runs/<run>/checkpoints/best.pt
    python tools/evaluate.py ckpt=runs/<run>/checkpoints/best.pt \
        data=kinetics400 data.root=/data/k400 views=10x3
    python tools/evaluate.py ckpt='[runs/a/checkpoints/best.pt,runs/b/checkpoints/best.pt]' \
        data=kinetics400 data.root=/data/k400 views=10x3

Writes ``out_dir``: metrics.json, per_class.csv and confusion.png (for the ensemble when
several checkpoints are given, plus each member's top-1/top-5 in metrics.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, ListConfig

import hybridnas  # noqa: F401  (compat shims before pytorchvideo)
from hybridnas.config import ConfigError, check_config
from hybridnas.engine.checkpoint import CheckpointError
from hybridnas.errors import exit_on_user_error


def parse_views(views: str) -> tuple[int, int]:
    """'10x3' -> (10 clips, 3 crops)."""
    try:
        clips, crops = (int(v) for v in str(views).lower().split("x"))
    except ValueError:
        raise ConfigError(f"views must look like CLIPSxCROPS (1x1, 10x3), got {views!r}") from None
    return clips, crops


def build_eval_loader(cfg: DictConfig, clips: int, crops: int):
    from hybridnas.config import check_data_root
    from hybridnas.data import build_dataset, build_loader

    check_data_root(cfg)
    multi = (clips, crops) != (1, 1)
    if multi and (cfg.data.name == "builtin" or cfg.split != "test"):
        raise ConfigError("multi-view testing needs a video dataset and split=test")
    dcfg = dict(cfg.data)
    if cfg.data.name != "builtin":
        dcfg |= {"test_clips": clips, "test_crops": crops}
    # the video "test" split is always multi-view; 1x1 there is one centre clip, one crop
    dataset = build_dataset(dcfg, cfg.split)
    batch = max(1, cfg.data.batch_size // (clips * crops))
    return dataset, build_loader(dataset, batch_size=batch, train=False, workers=cfg.data.workers)


def searched_clip(cfg: DictConfig, path: str) -> DictConfig:
    """``cfg`` with data.frames, data.size and data.frame_stride of the checkpoint's genotype
    when the evolution searched its clip on this dataset (meta ``clip_searched``): scored as
    trained."""
    from hybridnas.engine.checkpoint import load_checkpoint
    from hybridnas.models import ModelSpec

    ckpt = load_checkpoint(path, map_location="cpu")
    spec = ModelSpec.from_dict(ckpt["model_spec"]) if "model_spec" in ckpt else None
    g = spec.genotype if spec is not None else None
    if g is None or g.meta.get("clip_searched") != cfg.data.name:
        return cfg
    cfg = cfg.copy()
    cfg.data.frames, cfg.data.size, cfg.data.frame_stride = g.frames, g.size, g.frame_stride
    return cfg


def warn_clip_shape(path: str, trained: tuple[int, int], cfg: DictConfig) -> bool:
    """Warn (stderr) when the data gives clips of another frames x size than the checkpoint was
    trained on: the network runs, but its scores no longer measure the trained model."""
    given = (int(cfg.data.frames), int(cfg.data.size or 32))
    if given == trained:
        return False
    print(
        f"hybridnas: warning: {path} was trained on {trained[0]}x{trained[1]}x{trained[1]} "
        f"clips (frames x size x size), the data gives {given[0]}x{given[1]}x{given[1]} "
        f"(data.frames={given[0]}, data.size={given[1]}); pass data.frames={trained[0]} "
        f"data.size={trained[1]} to score it as trained",
        file=sys.stderr,
    )
    return True


def run(cfg: DictConfig) -> dict:
    from hybridnas.models import check_fingerprint, check_model_streams, load_trained
    from hybridnas.train import evaluation as ev

    check_config(cfg, "evaluate")
    if not cfg.ckpt:
        raise ConfigError("evaluate needs ckpt=<checkpoint> or ckpt='[a.pt,b.pt]' for an ensemble")
    paths = (
        [str(p) for p in cfg.ckpt] if isinstance(cfg.ckpt, ListConfig | list) else [str(cfg.ckpt)]
    )
    clips, crops = parse_views(cfg.views)
    device = torch.device(
        "cuda"
        if cfg.device == "auto" and torch.cuda.is_available()
        else "cpu"
        if cfg.device == "auto"
        else cfg.device
    )
    cfg = searched_clip(cfg, paths[0])
    dataset, loader = build_eval_loader(cfg, clips, crops)
    names = list(getattr(dataset, "class_names", [str(i) for i in range(dataset.num_classes)]))

    members, first = {}, None
    for path in paths:
        model, spec, _ = load_trained(path, device, ema=cfg.ema)
        check_model_streams(spec.name, spec.genotype, cfg.data.get("streams"))
        warn_clip_shape(path, (spec.frames, spec.size), cfg)
        if spec.num_classes != len(names):
            raise CheckpointError(
                f"checkpoint {path} was trained for {spec.num_classes} classes; "
                f"data {cfg.data.name} split {cfg.split} has {len(names)}"
            )
        if first is not None:  # ensemble members must score the same classes and clips
            check_fingerprint(
                {**spec.fingerprint(), "model": first["model"], "genotype": ""},
                {**first, "genotype": ""},
                path,
            )
        first = first or spec.fingerprint()
        members[path] = ev.predict(model, loader, device)
        del model

    labels = next(iter(members.values()))[1]
    scores = ev.ensemble_scores([s for s, _ in members.values()])
    out = Path(cfg.out_dir or Path(paths[0]).parent.parent / f"eval_{cfg.split}_{clips}x{crops}")
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        "top1": ev.topk_accuracy(scores, labels, 1),
        "top5": ev.topk_accuracy(scores, labels, 5),
        "videos": len(labels),
        "views": f"{clips}x{crops}",
        "split": cfg.split,
        "checkpoints": paths,
    }
    if len(paths) > 1:
        metrics["members"] = {
            p: {"top1": ev.topk_accuracy(s, y, 1), "top5": ev.topk_accuracy(s, y, 5)}
            for p, (s, y) in members.items()
        }
    cm = ev.confusion_matrix(scores, labels)
    ev.write_report(ev.per_class_report(cm, names), out / "per_class.csv")
    title = (
        f"{'ensemble of ' + str(len(paths)) if len(paths) > 1 else 'top-1'} {metrics['top1']:.3f}"
    )
    ev.plot_confusion(cm, names, out / "confusion.png", title)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(
        f"[hybridnas] top-1 {metrics['top1']:.4f} top-5 {metrics['top5']:.4f} "
        f"on {len(labels)} videos ({clips}x{crops} views); report in {out}"
    )
    if cfg.tracking != "none":
        from hybridnas.engine.tracking import tracker_for_run

        tracker = tracker_for_run(cfg, out, name=out.name)
        tracker.summary({f"eval/{k}": v for k, v in metrics.items() if isinstance(v, float)})
        tracker.log_image("eval/confusion", out / "confusion.png", 0)
        tracker.finish()
    return metrics


@hydra.main(version_base="1.3", config_path="../recipes", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    main()
