"""The plan's frames, fast: for each planned time the nearest *reference* picture (issue 16).

Real films keep a keyframe every ~10 s and code most pictures as B-frames that no other
picture refers to. The exact reader (``FrameDecoder``, decord) decodes, for every planned
frame, everything from the keyframe before it; this reader goes once forward through the
film's packets instead:

- a run of packets between two keyframes (a GOP) that holds no planned time is read but never
  decoded;
- in a GOP that does, the decoder skips the pictures no other picture refers to
  (``skip_frame = NONREF``: most B-frames) and stops soon after the last planned time of the
  GOP; across a fragment boundary inside a GOP it goes on where it stopped;
- each planned time gets the decoded picture nearest to it in the same GOP. With x264's
  defaults (B-pyramid) that is the planned frame or its neighbour; other encoders move a frame
  by a few frames at most (``moves`` records it, in frames, planned → chosen).

Pictures are squashed to ``size x size`` in one swscale step, bilinear: what decord's
``scale`` filter does in the FFmpeg it bundles (measured on Big Buck Bunny, same frames: mean
difference 0.16 levels, 90 % of values identical; bicubic differed by 1.5), and turned as the
player shows them. The choice of frames changes the memory, so ``READER_IDENTITY`` is
part of the memory cache key (``fingerprint.sampling_identity``).

A film whose timestamps this reader cannot follow (no timestamps, a picture more than
``_MAX_MOVE_S`` from its planned time) is read with the exact reader instead, from then on,
with a warning. A picture that cannot be decoded raises ``VideoDecodeError`` naming its time,
as the exact reader does. Not thread-safe: one owner thread.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moviechat_desktop.engine.errors import VideoDecodeError, VideoError
from moviechat_desktop.engine.video.probe import decord_errors, format_time, open_reader
from moviechat_desktop.engine.video.reader_identity import READER_IDENTITY

__all__ = ["READER_IDENTITY", "ReferenceFrameReader"]

log = logging.getLogger(__name__)

_MAX_MOVE_S = 2.0  # a chosen picture further than this from its planned time: timestamps are off
_SEEK_AHEAD_S = 30.0  # a planned time this far past the packets read: seek instead of reading on
_FIRST_PACKETS = 64  # packets read at opening to find the film's first timestamp


class _Unfollowable(Exception):
    """The file's timestamps do not let this reader find the planned pictures."""


class _Damaged(Exception):
    """A picture the plan needs cannot be decoded."""


class ReferenceFrameReader:
    """The plan's pictures of one film, nearest reference picture per planned frame.

    ``starts``: every frame's start time from 0 (``VideoInfo.frame_times_s``: decord's
    timeline, which the plan's indices refer to). ``threads``: decoder threads (0: FFmpeg
    picks). ``rotation``: clockwise degrees the player turns the picture
    (``VideoInfo.rotation``). ``skip_loop_filter``: decode without the deblocking filter
    (measured for the bench; not what the app uses, see ``READER_IDENTITY``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        starts: np.ndarray,
        size: int = 224,
        threads: int = 0,
        rotation: int = 0,
        *,
        skip_loop_filter: bool = False,
    ) -> None:
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        self.path = Path(path)
        self.size = size
        self.rotation = rotation % 360
        self._starts = np.asarray(starts, dtype=np.float64)
        self.frame_count = len(self._starts)
        if self.frame_count <= 0:
            raise VideoError(f"'{self.path.name}' contains no video frames.")
        self._threads = threads
        self._skip_loop_filter = skip_loop_filter
        self.moves: list[int] = []  # chosen minus planned frame (display order), per frame
        self._exact: Any = None  # decord reader once the film is read exactly
        self._container: Any = None
        self._stream: Any = None
        self._packets: Iterator[Any] | None = None
        self._held: deque[Any] = deque()  # packets read, not yet given to the decoder
        self._outs: deque[tuple[int, Any]] = deque()  # decoded (pts, frame), display order
        self._gop_key: int | None = None  # keyframe pts of the GOP the decoder is in
        self._gop_pts: list[int] = []  # sorted pts of the packets of that GOP read so far
        self._drained = False  # the decoder was told the stream ended (flush before reuse)
        self._read_pts: int | None = None  # largest pts read so far (since the last seek)
        self._from_start = True  # the packets come from the film's start (no seek since)
        self._pending: list[Any] = []  # packets of the GOP held back until a target needs them
        self._target = 0  # the pts being looked for
        self._seek_target, self._seek_back_s = 0, 0.0
        self._reformatter: Any = None
        try:
            self._open()
        except _Unfollowable as why:
            self._go_exact(str(why))

    # ------------------------------------------------------------------ public
    def decode_array(self, indices: Sequence[int]) -> np.ndarray:
        """Pictures for the planned frames ``indices`` (decord indices, non-decreasing, repeats
        allowed) → ``(N, size, size, 3)`` uint8 RGB."""
        wanted = [int(i) for i in indices]
        if not wanted:
            return np.empty((0, self.size, self.size, 3), dtype=np.uint8)
        outside = [i for i in wanted if not 0 <= i < self.frame_count]
        if outside:
            raise IndexError(f"frame {outside[0]} is outside 0..{self.frame_count - 1}")
        if self._exact is None:
            try:
                chosen = self._nearest_pictures(sorted(set(wanted)))
                return np.stack([chosen[i] for i in wanted])
            except _Unfollowable as why:
                self._go_exact(str(why))
        return self._exact_pictures(wanted)

    def decode(self, indices: Sequence[int]) -> Any:
        """As ``decode_array``, as a torch tensor (the ``FrameDecoder`` interface)."""
        import torch

        return torch.from_numpy(self.decode_array(indices))

    @property
    def exact(self) -> bool:
        """True once this film is read by the exact reader (its timestamps were unusable)."""
        return self._exact is not None

    def close(self) -> None:
        self._reset_decoder()
        self._held.clear()
        self._packets = None
        if self._container is not None:
            self._container.close()
        self._container = self._stream = None
        self._exact = None

    @property
    def closed(self) -> bool:
        return self._container is None and self._exact is None

    def __enter__(self) -> ReferenceFrameReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ opening
    def _open(self) -> None:
        import av

        try:
            self._container = av.open(os.fspath(self.path))
        except av.error.FFmpegError as err:
            raise _Unfollowable(f"PyAV cannot open it ({err})") from None
        if not self._container.streams.video:
            raise _Unfollowable("PyAV sees no video stream")
        self._stream = self._container.streams.video[0]
        if self._stream.time_base is None:
            raise _Unfollowable("its video stream has no time base")
        self._tb = float(self._stream.time_base)
        context = self._stream.codec_context
        context.thread_type = "AUTO"
        context.thread_count = self._threads
        context.skip_frame = "NONREF"
        if self._skip_loop_filter:  # faster, but references drift from the encoder's pictures
            context.options = {"skip_loop_filter": "all"}
        self._packets = self._demux()
        # the first timestamp (decord's time 0 is the smallest pts of the film)
        for _ in range(_FIRST_PACKETS):
            packet = next(self._packets, None)
            if packet is None:
                break
            self._held.append(packet)
        if not self._held:
            raise _Unfollowable("PyAV reads no video packets")
        self._first_pts = min(p.pts for p in self._held)

    def _demux(self) -> Iterator[Any]:
        import av

        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                if packet.pts is None:
                    raise _Unfollowable("a video packet has no timestamp")
                yield packet
        except av.error.FFmpegError as err:  # the data breaks off
            log.debug("reading packets of %s stopped: %s", self.path, err)

    def _go_exact(self, why: str) -> None:
        log.warning("'%s': %s; reading its exact frames instead (slower)", self.path.name, why)
        self.close()
        self._exact = open_reader(self.path, self.size)

    def _exact_pictures(self, wanted: list[int]) -> np.ndarray:
        try:
            batch = self._exact.get_batch(wanted).asnumpy()
        except decord_errors() as exc:
            log.debug("decoding frames %s of %s failed: %s", wanted, self.path, exc)
            first, last = self._time_words(wanted[0]), self._time_words(wanted[-1])
            raise VideoDecodeError(
                f"'{self.path.name}' is damaged: the picture between {first} and {last} "
                "cannot be decoded."
            ) from None
        self.moves.extend([0] * len(wanted))
        return np.ascontiguousarray(batch)

    def _time_words(self, index: int) -> str:
        return format_time(float(self._starts[index]))

    # ------------------------------------------------------------------ the reference pictures
    def _nearest_pictures(self, indices: list[int]) -> dict[int, np.ndarray]:
        chosen: dict[int, np.ndarray] = {}
        for index in indices:
            target = self._first_pts + round(float(self._starts[index]) / self._tb)
            try:
                pts, frame, moved = self._nearest(target)
            except _Damaged:
                self._reset_decoder()
                self._held.clear()
                self._packets = None  # the next call seeks afresh
                raise VideoDecodeError(
                    f"'{self.path.name}' is damaged: the picture at {self._time_words(index)} "
                    "cannot be decoded."
                ) from None
            if abs(pts - target) * self._tb > _MAX_MOVE_S:
                raise _Unfollowable(
                    f"the picture found for {self._time_words(index)} is "
                    f"{abs(pts - target) * self._tb:.1f} s away"
                )
            chosen[index] = self._picture(frame)
            self.moves.append(moved)
        return chosen

    def _nearest(self, target: int) -> tuple[int, Any, int]:
        """(pts, frame, frames moved) of the decoded picture nearest ``target``."""
        self._target = target
        self._position_for(target)
        while not (self._outs and self._outs[-1][0] >= target):
            if not self._advance(target):
                break  # the GOP (or the film) ends before target: its last picture
        while len(self._outs) >= 2 and self._outs[1][0] <= target:
            self._outs.popleft()  # keep the last picture before target and those after
        if not self._outs:
            raise _Damaged
        before = self._outs[0]
        after = self._outs[1] if len(self._outs) > 1 else before
        pts, frame = after if abs(after[0] - target) < abs(target - before[0]) else before
        planned = self._rank(target)
        return pts, frame, self._rank(pts) - planned

    def _rank(self, pts: int) -> int:
        """Display position in the current GOP of the packet nearest ``pts``."""
        at = bisect.bisect_left(self._gop_pts, pts)
        if at == len(self._gop_pts) or (
            at > 0 and pts - self._gop_pts[at - 1] < self._gop_pts[at] - pts
        ):
            at -= 1
        return max(at, 0)

    def _position_for(self, target: int) -> None:
        """Seek when ``target`` lies before what was read, or far after it."""
        behind = self._gop_key is not None and target < self._gop_key
        if self._outs and target < self._outs[0][0]:
            behind = True
        ahead = self._read_pts is not None and (target - self._read_pts) * self._tb > _SEEK_AHEAD_S
        if self._packets is None or behind or ahead:
            self._seek(target)

    def _seek(self, target: int, back_s: float = 0.0) -> None:
        import av

        self._reset_decoder()
        self._held.clear()
        where = target - round(back_s / self._tb)
        self._from_start = where <= self._first_pts
        try:
            self._container.seek(
                max(where, self._first_pts), stream=self._stream, backward=True, any_frame=False
            )
        except av.error.FFmpegError as err:
            raise _Unfollowable(f"it cannot be searched ({err})") from None
        self._packets = self._demux()
        self._read_pts = None
        self._seek_target, self._seek_back_s = target, back_s

    def _advance(self, target: int) -> bool:
        """Read on towards ``target``; decode what it needs. False when nothing more comes
        for the GOP that holds it (its pictures are all out)."""
        assert self._packets is not None
        packet = self._held.popleft() if self._held else next(self._packets, None)
        if packet is None:  # the end of the film
            return self._drain()
        self._read_pts = packet.pts if self._read_pts is None else max(self._read_pts, packet.pts)
        if packet.is_keyframe and packet.pts != self._gop_key:
            if self._gop_key is None:
                if packet.pts > target and not self._from_start:
                    self._seek(self._seek_target, max(2 * self._seek_back_s, 10.0))
                    return True  # the seek landed after target: from further back
                self._start_gop(packet)
                return True
            if target < packet.pts:  # target belongs to the GOP before this keyframe
                self._held.appendleft(packet)
                return self._drain()
            self._reset_decoder()  # nothing more is wanted from this GOP
            self._start_gop(packet)
            return True
        if self._gop_key is None:
            return True  # after a seek, before the first keyframe: unusable
        bisect.insort(self._gop_pts, packet.pts)
        self._pending.append(packet)
        if packet.pts >= target:  # target lies in this GOP: decode up to here
            self._send_pending()
        return True

    def _start_gop(self, packet: Any) -> None:
        self._gop_key = packet.pts
        self._gop_pts = [packet.pts]
        self._pending = [packet]

    def _send_pending(self) -> None:
        for packet in self._pending:
            self._send(packet)
        self._pending = []

    def _send(self, packet: Any) -> None:
        import av

        try:
            frames = self._stream.codec_context.decode(packet)
        except av.error.FFmpegError as err:
            log.debug("decoding a packet of %s failed: %s", self.path, err)
            raise _Damaged from None
        for frame in frames:
            self._keep(frame)

    def _keep(self, frame: Any) -> None:
        if frame.pts is None:
            raise _Unfollowable("a decoded picture has no timestamp")
        if getattr(frame, "is_corrupt", False):
            raise _Damaged
        if self._gop_key is not None and frame.pts < self._gop_key:
            return  # a leading picture of an open GOP: it belongs to the GOP before
        self._outs.append((frame.pts, frame))
        while len(self._outs) >= 2 and self._outs[1][0] <= self._target:
            self._outs.popleft()  # only the last picture before the target is still of use

    def _drain(self) -> bool:
        """Decode what is left of the GOP's wanted packets and take every picture out."""
        import av

        if self._drained or self._gop_key is None:
            return False
        self._send_pending()
        try:
            frames = self._stream.codec_context.decode(None)
        except av.error.FFmpegError as err:
            log.debug("finishing a GOP of %s failed: %s", self.path, err)
            raise _Damaged from None
        for frame in frames:
            self._keep(frame)
        self._drained = True
        return False

    def _reset_decoder(self) -> None:
        if self._stream is not None and (self._gop_key is not None or self._drained):
            self._stream.codec_context.flush_buffers()
        self._gop_key = None
        self._gop_pts = []
        self._pending = []
        self._outs.clear()
        self._drained = False

    # ------------------------------------------------------------------ pixels
    def _picture(self, frame: Any) -> np.ndarray:
        if self._reformatter is None:
            from av.video.reformatter import VideoReformatter

            self._reformatter = VideoReformatter()  # keeps its scaler: 20x faster than anew
        rgb = self._reformatter.reformat(
            frame, width=self.size, height=self.size, format="rgb24", interpolation="BILINEAR"
        ).to_ndarray()
        if self.rotation:
            rgb = np.rot90(rgb, k=-(self.rotation // 90))  # clockwise, as the player
        return np.ascontiguousarray(rgb)
