"""Ship a trained network: torch.export (.pt2) and ONNX, each checked against PyTorch's
outputs, plus a cost report (parameters, FLOPs, ms per clip on CPU and GPU when present)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from hybridnas.measure.counts import count_flops, count_params, measure_latency


def _example(clip_shape: tuple[int, ...], batch: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *clip_shape, generator=g)


def export_torch(
    model: nn.Module, clip_shape: tuple[int, ...], path: str | Path, atol: float = 1e-4
) -> float:
    """torch.export the eval-mode model for (B, *clip_shape) input (dynamic batch), save the
    .pt2, reload it and return the max abs difference of its logits from the model's."""
    model = model.eval()
    x = _example(clip_shape)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    loaded = torch.export.load(str(path)).module()
    x2 = _example(clip_shape, batch=3, seed=1)  # another batch size than traced
    with torch.no_grad():
        diff = float((loaded(x2) - model(x2)).abs().max())
    if diff > atol:
        raise RuntimeError(f"torch.export output differs from PyTorch by {diff:.3g} > {atol}")
    return diff


def export_onnx(
    model: nn.Module, clip_shape: tuple[int, ...], path: str | Path, atol: float = 1e-4
) -> float:
    """Export to ONNX (dynamic batch), run it with onnxruntime, return the max abs difference
    of its logits from PyTorch's."""
    import onnx
    import onnxruntime as ort

    model = model.eval()
    x = _example(clip_shape)
    torch.onnx.export(
        model,
        (x,),
        str(path),
        input_names=["clip"],
        output_names=["logits"],
        dynamic_axes={"clip": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,  # the dynamo exporter needs onnxscript, which is not a dependency
    )
    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x2 = _example(clip_shape, batch=3, seed=1)
    (out,) = session.run(None, {"clip": x2.numpy()})
    with torch.no_grad():
        diff = float((torch.from_numpy(out) - model(x2)).abs().max())
    if diff > atol:
        raise RuntimeError(f"ONNX output differs from PyTorch by {diff:.3g} > {atol}")
    return diff


def cost_report(model: nn.Module, clip_shape: tuple[int, ...], min_run_time: float = 0.5) -> dict:
    """Parameters, forward GFLOPs per clip and ms per clip (batch 1) on CPU, with one thread
    (``cpu_ms_1thread``, the figure to compare across machines and runs) and with all of
    torch's threads (``cpu_ms``, ``cpu_threads``), and on GPU if any."""
    threads = torch.get_num_threads()

    def cpu_ms(n: int) -> float:
        return measure_latency(
            model, clip_shape, device="cpu", min_run_time=min_run_time, threads=n
        ).median_ms

    report = {
        "params": count_params(model),
        "gflops": count_flops(model, clip_shape) / 1e9,
        "cpu_ms_1thread": cpu_ms(1),
        "cpu_ms": cpu_ms(threads),
        "cpu_threads": threads,
    }
    if torch.cuda.is_available():
        report["gpu_ms"] = measure_latency(
            model, clip_shape, device="cuda", min_run_time=min_run_time
        ).median_ms
    return report


def export_all(
    model: nn.Module, clip_shape: tuple[int, ...], out_dir: str | Path, atol: float = 1e-4
) -> dict:
    """model.pt2 + model.onnx in ``out_dir``, their parity, and the cost report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    return {
        "torch_export_max_abs_diff": export_torch(model, clip_shape, out / "model.pt2", atol),
        "onnx_max_abs_diff": export_onnx(model, clip_shape, out / "model.onnx", atol),
        **cost_report(model, clip_shape),
    }
