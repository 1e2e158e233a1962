"""Cost of a network: time per clip, forward FLOPs, parameters."""

from dataclasses import dataclass

import torch
import torch.utils.benchmark as benchmark
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hybridnas.ops.choice import CALLS_TO_CHOOSE


@dataclass(frozen=True)
class LatencyResult:
    """Time per clip in ms (median and interquartile range over timed blocks) and the setting."""

    median_ms: float
    iqr_ms: float
    batch_size: int
    device: str
    threads: int
    runs: int


def measure_latency(
    model: nn.Module,
    clip_shape: tuple[int, int, int, int],
    *,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    min_run_time: float = 0.2,
    threads: int | None = None,
    warmup: int = CALLS_TO_CHOOSE,
) -> LatencyResult:
    """Time a forward pass of a (batch_size, C, T, H, W) random batch; clip_shape is (C, T, H, W).

    The model runs in eval mode under torch.inference_mode and gets `warmup` untimed passes first
    (by default enough for every op's kernel trial, ``ops.choice``, to end before timing);
    torch.utils.benchmark synchronises CUDA. Times are per clip (divided by batch_size). The
    model's training flag and device are restored afterwards.
    """
    device = torch.device(device)
    threads = torch.get_num_threads() if threads is None else threads
    was_training = model.training
    first = next(model.parameters(), None)
    old_device = first.device if first is not None else None
    model.eval().to(device)
    x = torch.randn(batch_size, *clip_shape, device=device)

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    try:
        for _ in range(warmup):
            forward()
        timer = benchmark.Timer(stmt="forward()", globals={"forward": forward}, num_threads=threads)
        m = timer.blocked_autorange(min_run_time=min_run_time)
    finally:
        model.train(was_training)
        if old_device is not None:
            model.to(old_device)
    scale = 1e3 / batch_size
    return LatencyResult(
        m.median * scale, m.iqr * scale, batch_size, str(device), threads, len(m.times)
    )


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs of one sample of shape input_shape (e.g. (C, T, H, W)); a batch of 1 is added.

    Counted by torch.utils.flop_counter, which covers matmuls and convolutions of any dimension
    (Conv3d included) at 2 FLOPs per multiply-add; elementwise ops, pooling and norms count 0.
    """
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters())
