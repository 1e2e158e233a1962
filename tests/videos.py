"""Small test videos written with PyAV.

Every frame is one flat colour: red = 40 + 20 * class, green = 8 * frame index, blue = 128,
so a decoded (and scaled, cropped or flipped) frame still tells its class and its position in
the video. Broken files cover each kind of bad input the data layer must skip.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

FPS = 8
H, W = 48, 64


def frame_colour(label: int, t: int) -> tuple[int, int, int]:
    return 40 + 20 * label, 8 * t, 128


def write_video(path: str | os.PathLike, label: int, frames: int = 24) -> Path:
    """An H x W mpeg4 mp4 of ``frames`` frames at FPS; frame t has colour frame_colour."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = {"qscale": "2"}
        for t in range(frames):
            img = np.empty((H, W, 3), np.uint8)
            img[:] = frame_colour(label, t)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def write_audio_only(path: str | os.PathLike) -> Path:
    """An mp4 with one second of AAC audio and no video stream."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        s = out.add_stream("aac", rate=16000)
        s.layout = "mono"
        tone = (np.sin(np.arange(16000) / 5) * 0.3).astype(np.float32)[None]
        for i in range(0, 16000, 1024):
            f = av.AudioFrame.from_ndarray(
                tone[:, i : i + 1024].copy(), format="flt", layout="mono"
            )
            f.sample_rate, f.pts, f.time_base = 16000, i, Fraction(1, 16000)
            for pkt in s.encode(f):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def write_random_bytes(path: str | os.PathLike, n: int = 4096) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path


def write_truncated(path: str | os.PathLike, label: int = 0) -> Path:
    """A real video cut to its first third (the mp4 index at its end is lost)."""
    path = write_video(path, label)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def write_empty(path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def decode_colour(clip, mean=0.0, std=1.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (label, frame index) from a (C, T, H, W) clip normalised with mean/std."""
    rgb = (clip * std + mean).mean(dim=(-2, -1)).numpy() * 255  # (C, T)
    return np.rint((rgb[0] - 40) / 20).astype(int), np.rint(rgb[1] / 8).astype(int)
