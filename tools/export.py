"""Export a trained checkpoint with torch.export (.pt2) and to ONNX, check both against
PyTorch's outputs, and report parameters, FLOPs and ms per clip (CPU; GPU when present).

    python tools/export.py runs/<run>/checkpoints/best.pt [out_dir] [--atol 1e-4] [--raw]

Writes out_dir (default <run>/export): model.pt2, model.onnx, export.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import hybridnas  # noqa: F401  (compat shims before pytorchvideo)
from hybridnas.errors import exit_on_user_error
from hybridnas.export import export_all
from hybridnas.models import load_trained


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ckpt")
    p.add_argument("out_dir", nargs="?")
    p.add_argument("--atol", type=float, default=1e-4, help="max abs logit difference allowed")
    p.add_argument("--raw", action="store_true", help="export the raw weights, not the EMA")
    args = p.parse_args(argv)
    with exit_on_user_error():
        model, spec, _ = load_trained(args.ckpt, "cpu", ema=not args.raw)
    out = Path(args.out_dir or Path(args.ckpt).parent.parent / "export")
    channels = spec.genotype.in_channels if spec.genotype else 3  # 3 per stream
    clip_shape = (channels, spec.frames, spec.size, spec.size)
    report = {
        "model": spec.name,
        "clip_shape": list(clip_shape),
        **export_all(model, clip_shape, out, args.atol),
    }
    (out / "export.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
