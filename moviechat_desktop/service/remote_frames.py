"""The remote engine client's own decoding: the sampled frames and breakpoint pictures, as numpy.

The same readers, timeline and rules as ``engine.video.frames`` (``FrameDecoder`` for the
plan's exact frames, squashed to the model's input size by decord, or ``ReferenceFrameReader``
for the nearest reference pictures, as ``[sampling] exact_frames`` says; ``FrameGrabber`` for
the picture on screen at t, squashed with Pillow's bicubic), minus the normalization, which the
server does: what leaves this module is uint8 pixels at the model's input size. Torch-free.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from moviechat_desktop.engine.errors import VideoDecodeError, VideoError
from moviechat_desktop.engine.video.preprocess import resize_bicubic
from moviechat_desktop.engine.video.probe import (
    decord_errors,
    format_time,
    open_reader,
    read_timeline,
)
from moviechat_desktop.engine.video.sampling import frame_shown_at

if TYPE_CHECKING:
    from moviechat_desktop.engine.video.probe import VideoInfo

log = logging.getLogger(__name__)

_END_SLACK_S = 1.0  # as FrameGrabber: the player's length can outlast the picture


class ClientFrames:
    """Decodes one film's sampled frames and breakpoint pictures at ``size``. One owner thread.

    ``info`` (the film's probe): read the nearest reference pictures of the planned frames
    (``ReferenceFrameReader``); None: the exact frames."""

    def __init__(self, path: str | Path, size: int, info: VideoInfo | None = None) -> None:
        self.path = Path(path)
        self.size = size
        self._info = info
        self._small: Any = None  # frames squashed by decord (the plan's frames)
        self._full: Any = None  # full-size frames (breakpoint pictures)
        self._starts: np.ndarray | None = None
        self._duration_s = 0.0

    def fragment(self, indices: Sequence[int]) -> np.ndarray:
        """The frames at ``indices`` → ``(n, size, size, 3)`` uint8."""
        if self._small is None and self._info is not None:
            from moviechat_desktop.engine.video.reference_frames import ReferenceFrameReader
            from moviechat_desktop.engine.video.sampling import frame_starts

            info = self._info
            self._small = ReferenceFrameReader(
                self.path, frame_starts(info), self.size, rotation=info.rotation
            )
        if self._small is None:
            self._small = open_reader(self.path, self.size)
        if self._info is not None:
            return self._small.decode_array(indices)  # VideoDecodeError names the time
        try:
            return np.ascontiguousarray(self._small.get_batch([int(i) for i in indices]).asnumpy())
        except decord_errors() as exc:
            log.debug("decoding %s of %s failed: %s", list(indices), self.path, exc)
            raise VideoDecodeError(
                f"'{self.path.name}' is damaged: some of its pictures cannot be decoded."
            ) from None

    def picture_at(self, t_s: float) -> np.ndarray:
        """The picture on screen at ``t_s`` → ``(size, size, 3)`` uint8."""
        return self.picture(self.index_at(t_s), t_s)

    def index_at(self, t_s: float) -> int:
        """The index of the picture on screen at ``t_s`` (opens the full-size reader)."""
        if self._full is None:
            self._full = open_reader(self.path, None)
            self._starts, self._duration_s, _ = read_timeline(self._full)
        assert self._starts is not None
        if not math.isfinite(t_s) or t_s < 0 or t_s > self._duration_s + _END_SLACK_S:
            raise VideoError(
                f"{format_time(t_s) if math.isfinite(t_s) else t_s} is outside "
                f"'{self.path.name}' ({format_time(0.0)} to {format_time(self._duration_s)})."
            )
        return frame_shown_at(self._starts, t_s)

    def picture(self, index: int, t_s: float) -> np.ndarray:
        """Picture ``index`` (``index_at(t_s)``) → ``(size, size, 3)`` uint8."""
        try:
            rgb = self._full.get_batch([index]).asnumpy()[0]
        except decord_errors() as exc:
            log.debug("decoding frame %d of %s failed: %s", index, self.path, exc)
            raise VideoDecodeError(
                f"'{self.path.name}' is damaged: the picture at {format_time(t_s)} "
                "cannot be decoded."
            ) from None
        return resize_bicubic(rgb, self.size)

    def close(self) -> None:
        if self._info is not None and self._small is not None:
            self._small.close()
        self._small = self._full = None
