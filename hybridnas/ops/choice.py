"""Per call signature, the fastest of several formulations of the same math.

An op with more than one way to compute its output (PyTorch's reference conv kernel or
oneDNN's, a temporal conv as a conv or as one matrix product, a pool over shifted views or as
a channels-last 2D pool) hands them all to ``run_fastest``. The first calls of each signature
(op, shapes, thread count) try every candidate in turn, timed, and the winner is remembered,
as in cuDNN's benchmark mode; later calls go straight to it. Which formulation wins depends on the
CPU, the shape and the thread count (``python tools/bench.py ops``), so it is measured here,
not assumed. The choice applies only where ``may_choose`` holds: in inference, and for
formulations that round differently only on one clip; with gradients every op keeps its one
training formulation.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

Candidate = Callable[..., torch.Tensor]

#: signature -> the candidate that measured fastest for it on this machine
_FASTEST: dict[tuple, Candidate] = {}
_TRIAL_TIMES: dict[tuple, list[list[float]]] = {}  # signature -> each candidate's call times
TRIALS = 3  # timed calls per candidate before a signature's choice is made
MAX_CANDIDATES = 3  # the most formulations any op offers (a conv: reference, oneDNN, matmul)
#: calls of a signature after which its choice is surely made: warm-up before timing anything
CALLS_TO_CHOOSE = TRIALS * MAX_CANDIDATES
_PINNED: list[int] = []  # a candidate index forced by ``pinned_choice`` (checks only)


def may_choose(x: torch.Tensor, exact: bool = False) -> bool:
    """Whether a call on ``x`` may take the timed choice: inference (no gradient wanted),
    float32 on the CPU without autocast, no dispatch mode (FLOP counting, fake tensors),
    tracing (torch.export, ONNX) or compiling that must see the plain op, and
    ``torch.use_deterministic_algorithms`` off.

    Formulations that round differently (``exact`` False: convs, averages) are chosen for one
    clip only, the latency and deployment case: a batch's outputs (validation accuracy, proxy
    scores, anything a search decides on) then never depend on which kernel won a race.
    Exact ones (a max is a max in any order) are chosen at any batch."""
    return (
        not torch.is_grad_enabled()
        and not torch.jit.is_tracing()  # first: a traced shape test would warn
        and not torch.compiler.is_compiling()
        and _get_current_dispatch_mode() is None
        and (exact or x.shape[0] == 1)
        and x.is_cpu
        and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")  # candidates outside autocast's op list
        and not torch.are_deterministic_algorithms_enabled()
    )


def run_fastest(
    key: tuple, candidates: Callable[[], Sequence[Candidate]], *args: object
) -> torch.Tensor:
    """``candidates()[i](*args)`` for the i that ran fastest in the first calls with this
    ``key`` (extended by the thread count); all candidates must compute the same output.
    ``candidates`` is called only until the choice is made.

    The first ``TRIALS`` calls per candidate are the trial: each call runs the candidate
    with the fewest timed calls so far and records its time. Timing them in place, within
    the network's real forward passes, matters: back to back on warm caches PyTorch's
    reference kernels look up to 2x faster than they run between other ops.
    """
    key = (*key, torch.get_num_threads())
    best = _FASTEST.get(key)
    if best is not None and not _PINNED:
        return best(*args)
    return _trial(key, candidates(), args)


def _trial(key: tuple, candidates: Sequence[Candidate], args: tuple) -> torch.Tensor:
    if _PINNED:
        return candidates[min(_PINNED[-1], len(candidates) - 1)](*args)
    if len(candidates) > MAX_CANDIDATES:
        raise ValueError(f"{len(candidates)} candidates: raise MAX_CANDIDATES ({MAX_CANDIDATES})")
    times = _TRIAL_TIMES.setdefault(key, [[] for _ in candidates])
    i = min(range(len(candidates)), key=lambda k: len(times[k]))
    start = time.perf_counter()
    out = candidates[i](*args)
    times[i].append(time.perf_counter() - start)
    if all(len(t) >= TRIALS for t in times):
        fastest = [min(t) for t in times]  # the least load-inflated call of each
        _FASTEST[key] = candidates[fastest.index(min(fastest))]
        del _TRIAL_TIMES[key]
    return out


@contextlib.contextmanager
def pinned_choice(index: int) -> Iterator[None]:
    """Within the block every choice takes candidate ``index`` (the last one where there are
    fewer), untimed: for checking that all formulations agree, and for profiling one."""
    _PINNED.append(index)
    try:
        yield
    finally:
        _PINNED.pop()


def forget_choices() -> None:
    """Drop every remembered choice (after a change of CPU affinity or library flags)."""
    _FASTEST.clear()
    _TRIAL_TIMES.clear()
