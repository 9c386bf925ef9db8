"""Video input for the engine: probe a file, plan its frames, decode them, grab the frame at t.

The public API lives here; the pieces are in ``video_probe`` (``VideoInfo``, ``probe``),
``sampling`` (``plan_fragments``, ``plan_fps``) and ``preprocess`` (``normalize``,
``preprocess_image``). Frames are decoded by decord straight into memory (no temporary
files), already squashed to ``size x size`` and rotated as the viewer sees them.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from moviechat_desktop.engine.errors import VideoDecodeError, VideoError
from moviechat_desktop.engine.video.preprocess import (
    MEAN,
    STD,
    normalize,
    preprocess_image,
    resize_bicubic,
)
from moviechat_desktop.engine.video.probe import (
    VideoInfo,
    decord_errors,
    format_time,
    open_reader,
    probe,
    read_timeline,
)
from moviechat_desktop.engine.video.sampling import (
    Fragment,
    SamplingPlan,
    frame_shown_at,
    plan_fps,
    plan_fragments,
)

__all__ = [
    "MEAN",
    "STD",
    "Fragment",
    "FrameDecoder",
    "FrameGrabber",
    "SamplingPlan",
    "VideoInfo",
    "format_time",
    "frame_at",
    "normalize",
    "plan_fps",
    "plan_fragments",
    "preprocess_image",
    "probe",
    "resize_bicubic",
]

log = logging.getLogger(__name__)

# A breakpoint this far past the last frame still shows the last frame: the player's length
# can include an audio tail that outlasts the picture.
_END_SLACK_S = 1.0


class FrameDecoder:
    """Decodes frames of one film by index into uint8 ``(N, size, size, 3)`` RGB tensors.

    Owns one ``decord.VideoReader`` that squashes frames to ``size x size`` (aspect ratio not
    kept, as the original). Not thread-safe: one owner thread. Use as a context manager or call
    ``close()``.
    """

    def __init__(self, path: str | os.PathLike[str], size: int = 224, num_threads: int = 0):
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        self.path = Path(path)
        self.size = size
        self._reader: Any = open_reader(self.path, size, num_threads=num_threads)
        self.frame_count = len(self._reader)
        if self.frame_count <= 0:
            self.close()
            raise VideoError(f"'{self.path.name}' contains no video frames.")
        self._starts: Any = None

    def decode(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames at ``indices`` (decord order, repeats allowed) as ``(N, size, size, 3)`` uint8."""
        reader = self._require_open()
        wanted = [int(i) for i in indices]
        if not wanted:
            return torch.empty((0, self.size, self.size, 3), dtype=torch.uint8)
        outside = [i for i in wanted if not 0 <= i < self.frame_count]
        if outside:
            raise IndexError(f"frame {outside[0]} is outside 0..{self.frame_count - 1}")
        try:
            batch = reader.get_batch(wanted).asnumpy()  # (N, size, size, 3) uint8
        except decord_errors() as exc:
            log.debug("decoding frames %s of %s failed: %s", wanted, self.path, exc)
            raise self._locate_failure(wanted) from None
        return torch.from_numpy(batch)

    def time_of(self, index: int) -> float:
        """Start time (s, from 0) of frame ``index``."""
        if self._starts is None:
            self._starts, _, _ = read_timeline(self._require_open())
        return float(self._starts[index])

    def _locate_failure(self, wanted: list[int]) -> VideoDecodeError:
        """Decode one frame at a time to name the first position that cannot be decoded."""
        reader = self._require_open()
        for index in sorted(set(wanted)):
            try:
                reader.get_batch([index])
            except decord_errors():
                where = format_time(self.time_of(index))
                return VideoDecodeError(
                    f"'{self.path.name}' is damaged: the picture at {where} cannot be decoded."
                )
        first, last = format_time(self.time_of(wanted[0])), format_time(self.time_of(wanted[-1]))
        return VideoDecodeError(
            f"'{self.path.name}' is damaged: the picture between {first} and {last} "
            "cannot be decoded."
        )

    def _require_open(self) -> Any:
        if self._reader is None:
            raise ValueError("this FrameDecoder is closed")
        return self._reader

    def close(self) -> None:
        self._reader = None  # decord frees the demuxer and decoder with the reader

    @property
    def closed(self) -> bool:
        return self._reader is None

    def __enter__(self) -> FrameDecoder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class FrameGrabber:
    """The exact picture on screen at any time of one film, as the breakpoint frame.

    "On screen at t" is the last frame whose timestamp is at or before t, found in the
    frames' own timestamps (correct for a variable frame rate). The frame is decoded at full
    size by decord, rotated as displayed, then squashed with Pillow bicubic and normalized like
    the original's breakpoint frame (which went through opencv; opencv's millisecond seek was
    measured to land on the wrong frame for variable frame rates, hence decord here).

    Opening indexes the whole file (~0.5 s for a 2-hour film, measured), so the ``Assistant``
    keeps one grabber per film and a breakpoint question pays only the seek and decode. Not
    thread-safe: one owner thread.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._reader: Any = open_reader(self.path, None, num_threads=0)
        if len(self._reader) <= 0:
            self.close()
            raise VideoError(f"'{self.path.name}' contains no video frames.")
        self._starts, self.duration_s, _ = read_timeline(self._reader)

    def grab(self, t_s: float, size: int = 224) -> torch.Tensor:
        """The frame on screen at ``t_s`` seconds, preprocessed → ``(1, 3, size, size)``."""
        return self.grab_index(self.index_at(t_s), size, t_s)

    def index_at(self, t_s: float) -> int:
        """The index of the frame on screen at ``t_s`` (``VideoError`` outside the film):
        cheap, no decoding."""
        if self._reader is None:
            raise ValueError("this FrameGrabber is closed")
        name, duration = self.path.name, self.duration_s
        if not math.isfinite(t_s) or t_s < 0 or t_s > duration + _END_SLACK_S:
            raise VideoError(
                f"{format_time(t_s) if math.isfinite(t_s) else t_s} is outside '{name}' "
                f"({format_time(0.0)} to {format_time(duration)})."
            )
        return frame_shown_at(self._starts, t_s)

    def grab_index(self, index: int, size: int = 224, t_s: float | None = None) -> torch.Tensor:
        """Frame ``index`` (see ``index_at``), preprocessed → ``(1, 3, size, size)``; ``t_s``
        the time asked for, named if the picture cannot be decoded."""
        if self._reader is None:
            raise ValueError("this FrameGrabber is closed")
        name = self.path.name
        t_s = float(self._starts[index]) if t_s is None else t_s
        try:
            rgb = self._reader.get_batch([index]).asnumpy()[0]  # (H, W, 3) uint8, as displayed
        except decord_errors() as exc:
            log.debug("decoding frame %d of %s failed: %s", index, self.path, exc)
            raise VideoDecodeError(
                f"'{name}' is damaged: the picture at {format_time(t_s)} cannot be decoded."
            ) from None
        return preprocess_image(rgb, size).unsqueeze(0)  # (1, 3, size, size)

    def close(self) -> None:
        self._reader = None

    def __enter__(self) -> FrameGrabber:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def frame_at(path: str | os.PathLike[str], t_s: float, size: int = 224) -> torch.Tensor:
    """The frame on screen at ``t_s`` seconds of ``path`` → ``(1, 3, size, size)`` (one-off;
    see ``FrameGrabber``)."""
    with FrameGrabber(path) as grabber:
        return grabber.grab(t_s, size)
