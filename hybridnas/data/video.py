"""A map-style video dataset decoded with pytorchvideo's PyAV backend, with clip sampling.

Map-style rather than pytorchvideo's ``LabeledVideoDataset`` (an IterableDataset) because a
search needs a sampler it can shard, seed and resume at a batch (see ``loader.py``), and
because ``LabeledVideoDataset`` retries a bad video silently instead of counting it.

Clip windows are in seconds, as in pytorchvideo: a clip spans
``clip_duration = frames * sampling_rate / fps`` and is subsampled uniformly to ``frames``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from pytorchvideo.data.encoded_video import EncodedVideo
from pytorchvideo.transforms.functional import uniform_temporal_subsample
from torch.utils.data import Dataset

from hybridnas.data.bad import BadItem, BadItemLog
from hybridnas.data.classes import save_class_index
from hybridnas.data.layouts import Entry
from hybridnas.data.streams import add_streams, check_streams

MODES = ("random", "center", "multiview", "tsn")


def uniform_starts(duration: float, clip: float, n: int) -> list[float]:
    """``n`` clip starts spread evenly from the first to the last possible start (one view is
    centred). Written here because pytorchvideo's ConstantClipsPerVideoSampler is stateful
    and never places a view at the end of the video."""
    last = max(duration - clip, 0.0)
    if n == 1:
        return [last / 2]
    return [last * i / (n - 1) for i in range(n)]


def tsn_windows(
    duration: float, segments: int, snippet: float, train: bool
) -> list[tuple[float, float]]:
    """TSN: split [0, duration) into ``segments`` equal parts and take one window of length
    ``snippet`` (capped at the part) in each, at a random offset (train) or centred."""
    seg = duration / segments
    snippet = min(snippet, seg)
    out = []
    for k in range(segments):
        u = torch.rand(()).item() if train else 0.5
        start = k * seg + u * (seg - snippet)
        out.append((start, start + snippet))
    return out


class VideoDataset(BadItemLog, Dataset):
    """Labelled videos -> clips.

    Items by ``mode``:
    - "random" (train) / "center" (val): (clip (C, T, H, W), label)
    - "tsn": (clip (C, T, H, W), label), T = segments x frames-per-snippet, in time order
    - "multiview" (test): (clips (V, C, T, H, W), label, video_index), V = clips x crops
    C is 3 per stream of ``streams`` (stacked in order, see streams.py); 3 by default.
    A video that cannot be read yields a :class:`BadItem`, which the loader's collate drops.
    """

    def __init__(
        self,
        entries: Sequence[Entry],
        class_names: list[str],
        *,
        frames: int,
        mode: str,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        crop_views: Callable[[torch.Tensor], list[torch.Tensor]] | None = None,
        sampling_rate: int = 4,
        fps: float = 30.0,
        clip_duration: float | None = None,
        segments: int = 8,
        num_clips: int = 10,
        root: str = "",
        index_bad: list[tuple[str, str]] | None = None,
        train: bool = False,
        streams: tuple[str, ...] = ("rgb",),
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "tsn" and frames % segments:
            raise ValueError(f"frames ({frames}) must be a multiple of segments ({segments})")
        self.entries, self.class_names = list(entries), list(class_names)
        self.frames, self.mode, self.root = frames, mode, root
        self.transform, self.crop_views = transform, crop_views
        self.clip_duration = clip_duration or frames * sampling_rate / fps
        self.segments, self.num_clips, self.train = segments, num_clips, train
        self.streams = check_streams(streams)
        self._init_bad_log(index_bad)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def save_class_index(self, path) -> None:
        """Write this dataset's class names/indices (JSON) for the run folder."""
        save_class_index(self.class_names, path)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int):
        path, label, _ = self.entries[index]
        try:
            video = EncodedVideo.from_path(path, decode_audio=False, decoder="pyav")
        except Exception as e:  # PyAV/pytorchvideo raise many types for unreadable files
            return BadItem(index, path, f"cannot open: {e}".splitlines()[0])
        try:
            clip = self._sample(video)
        except Exception as e:
            return BadItem(index, path, f"cannot decode: {e}".splitlines()[0])
        finally:
            video.close()
        clip = add_streams(clip, self.streams)
        if self.mode == "multiview":
            return clip, label, index
        return clip, label

    def _window(self, video: EncodedVideo, start: float, end: float, frames: int) -> torch.Tensor:
        """Frames in [start, end) seconds, uniformly subsampled to (C, frames, H, W) 0..255."""
        x = video.get_clip(start, end)["video"]
        if x is None:
            raise RuntimeError(f"no frames in [{start:.2f}, {end:.2f}) s")
        return uniform_temporal_subsample(x, frames)

    def _sample(self, video: EncodedVideo) -> torch.Tensor:
        duration, clip = float(video.duration), self.clip_duration
        if self.mode == "tsn":
            per = self.frames // self.segments
            wins = tsn_windows(duration, self.segments, clip / self.segments, self.train)
            x = torch.cat([self._window(video, s, e, per) for s, e in wins], dim=1)
            return self.transform(x)
        if self.mode == "random":
            # torch's RNG (not pytorchvideo's RandomClipSampler, which uses `random`) so that
            # one torch seed drives every augmentation, in the main process and in workers.
            start = torch.rand(()).item() * max(duration - clip, 0.0)
            return self.transform(self._window(video, start, start + clip, self.frames))
        if self.mode == "center":
            (start,) = uniform_starts(duration, clip, 1)
            return self.transform(self._window(video, start, start + clip, self.frames))
        views = []
        for start in uniform_starts(duration, clip, self.num_clips):
            views += self.crop_views(self._window(video, start, start + clip, self.frames))
        return torch.stack(views)
