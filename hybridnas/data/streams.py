"""Input streams computed in the data layer: ``rgb`` (the clip) and ``motion`` (its frame
differences), stacked on channels in the order ``data.streams`` lists them.

Motion is the difference of consecutive normalised frames, so it costs one subtraction per
clip and needs no new dependency (no optical flow, nothing to cache)::

    clip (C, T, H, W) or views (V, C, T, H, W)
      motion[:, t] = clip[:, t] - clip[:, t - 1]   for t >= 1;   motion[:, 0] = 0
      streams [rgb, motion] -> (2C, T, H, W) (views: (V, 2C, T, H, W))

The default ``[rgb]`` returns the clip itself, untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hybridnas.space.macro import DEFAULT_STREAMS, stream_problem


def check_streams(streams: Sequence[str]) -> tuple[str, ...]:
    """``streams`` as a tuple; ``ValueError`` naming ``data.streams`` when malformed."""
    problem = stream_problem(list(streams) if not isinstance(streams, str) else streams)
    if problem:
        raise ValueError(f"data.streams {problem}")
    return tuple(streams)


def frame_difference(clip: torch.Tensor) -> torch.Tensor:
    """(..., C, T, H, W) -> same shape: each frame minus the one before; the first is zero."""
    motion = torch.zeros_like(clip)
    motion[..., 1:, :, :] = clip[..., 1:, :, :] - clip[..., :-1, :, :]
    return motion


def add_streams(clip: torch.Tensor, streams: Sequence[str]) -> torch.Tensor:
    """(..., C, T, H, W) -> (..., len(streams) * C, T, H, W), the streams stacked in order;
    the clip itself for the default RGB stream."""
    if tuple(streams) == DEFAULT_STREAMS:
        return clip
    make = {"rgb": lambda x: x, "motion": frame_difference}
    return torch.cat([make[s](clip) for s in streams], dim=-4)
