"""Cost of a candidate network: time per clip, forward FLOPs, parameters; latency-budget fitness."""

from dataclasses import dataclass

import torch
import torch.utils.benchmark as benchmark
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hybridnas.config import choices
from hybridnas.config.search import LatencyMode


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
    warmup: int = 3,
) -> LatencyResult:
    """Time a forward pass of a (batch_size, C, T, H, W) random batch; clip_shape is (C, T, H, W).

    The model runs in eval mode under torch.inference_mode and gets `warmup` untimed passes first;
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


@dataclass(frozen=True)
class LatencyBudget:
    """Runtime-constrained fitness: accuracy kept within budget_ms, else rejected or penalised.

    mode "reject": over budget -> None. mode "penalty": over budget -> accuracy *
    (budget_ms / latency_ms) ** weight (the MnasNet soft constraint, applied only above budget).
    """

    budget_ms: float
    mode: LatencyMode
    weight: float

    def __post_init__(self) -> None:
        if self.mode not in choices(LatencyMode):
            raise ValueError(f"LatencyBudget.mode must be one of {choices(LatencyMode)}")
        if self.budget_ms <= 0:
            raise ValueError(f"LatencyBudget.budget_ms must be > 0, got {self.budget_ms}")

    def apply_budget(self, accuracy: float, latency_ms: float) -> float | None:
        """Fitness of a candidate with this accuracy and time per clip; None when rejected."""
        if latency_ms <= self.budget_ms:
            return accuracy
        if self.mode == "reject":
            return None
        return accuracy * (self.budget_ms / latency_ms) ** self.weight
