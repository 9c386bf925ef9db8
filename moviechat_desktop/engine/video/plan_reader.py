"""Which reader decodes a film's planned frames: the exact one or the nearest reference pictures.

``[sampling] exact_frames = true`` keeps the original's frames (``FrameDecoder``, decord: each
planned frame decoded from the keyframe before it). The default reads, for each planned frame,
the nearest picture the decoder needs anyway (``ReferenceFrameReader``), which on a real film
decodes a fraction of what the exact frames cost. Both give ``(N, size, size, 3)`` uint8 torch
tensors from ``decode(indices)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moviechat_desktop.engine.video.probe import VideoInfo


def open_plan_reader(info: VideoInfo, size: int, exact: bool, threads: int = 0) -> Any:
    """A reader of ``info``'s planned frames at ``size`` (``FrameDecoder`` when ``exact``, else
    ``ReferenceFrameReader``). ``VideoError`` when the film cannot be opened."""
    if exact:
        from moviechat_desktop.engine.video.frames import FrameDecoder

        return FrameDecoder(info.path, size=size, num_threads=threads)
    from moviechat_desktop.engine.video.reference_frames import ReferenceFrameReader
    from moviechat_desktop.engine.video.sampling import frame_starts

    return ReferenceFrameReader(
        info.path, frame_starts(info), size=size, threads=threads, rotation=info.rotation
    )
