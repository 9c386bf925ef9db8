"""Open and check a film: ``probe(path) -> VideoInfo`` or a ``VideoError`` in one sentence.

decord is the source of truth for frames (its indices and per-frame timestamps are the ones
the sampling plan and ``FrameDecoder`` use); opencv reports the picture size and rotation
without decoding; ``ffprobe``, when installed, tells whether there is audio (else ``None``) and
runs in parallel so it adds no time. What each library does with bad files was measured (see
ENVIRONMENT.md): decord raises ``RuntimeError`` or ``decord._ffi.base.DECORDError``.

Rotation: decord and opencv both apply the container's display matrix, as VLC and ffmpeg do,
so frames arrive the way the viewer sees them. ``VideoInfo.width/height`` are the displayed
size and ``rotation`` (clockwise degrees) is informational only.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moviechat_desktop.engine.errors import VideoDecodeError, VideoError
from moviechat_desktop.engine.file_checks import MISSING, why_unusable
from moviechat_desktop.engine.video.ffprobe import FFprobe
from moviechat_desktop.timefmt import format_time as clock_time

log = logging.getLogger(__name__)

MAX_SIDE = 16384  # pixels; refused above (8K is 7680x4320)
MAX_PIXELS = 8192 * 8192
_PROBE_SIZE = 32  # probe decodes tiny frames: the check is "does it decode", not the pixels
_FALLBACK_FPS = 25.0  # only when a file has neither usable timestamps nor a rate


@dataclass(frozen=True)
class VideoInfo:
    """What the engine knows about a film after ``probe``."""

    path: Path
    duration_s: float  # from the frames' timestamps (start of the first to end of the last)
    fps: float  # the container's average rate; frame_count / duration_s if it has none
    frame_count: int
    width: int  # displayed size, after rotation
    height: int
    rotation: int  # clockwise degrees the player applies from metadata (0/90/180/270)
    has_audio: bool | None  # None when it cannot be told (no ffprobe)
    codec: str | None
    # Start time (s) of every frame, from 0; None means "k / fps" (e.g. a hand-made VideoInfo).
    frame_times_s: np.ndarray | None = field(default=None, compare=False, repr=False)


def format_time(t_s: float) -> str:
    """A time in a message, as the player writes it plus tenths, the sign kept:
    ``75.25`` → ``"01:15.2"``; ``3725`` → ``"01:02:05.0"``; ``-2`` → ``"-00:02.0"``."""
    return ("-" if t_s < 0 else "") + clock_time(abs(t_s), fraction=True)


# --------------------------------------------------------------------------- decord helpers
def decord_module() -> Any:
    """Import decord lazily (it must not be imported before Qt's GUI module) and quieten it."""
    import decord

    decord.logging.set_level(decord.logging.QUIET)  # errors become VideoErrors, not log spam
    return decord


def decord_errors() -> tuple[type[BaseException], ...]:
    return (RuntimeError, decord_module().DECORDError)


def open_reader(path: Path, size: int | None, num_threads: int = 0, ffprobe: Any = None) -> Any:
    """A ``decord.VideoReader`` (frames squashed to size x size, or native size when None)."""
    decord = decord_module()
    kwargs = {"width": size, "height": size} if size else {}
    try:
        return decord.VideoReader(os.fspath(path), num_threads=num_threads, **kwargs)
    except decord_errors() as exc:
        log.debug("decord could not open %s: %s", path, exc)
        raise _open_failure(path, str(exc), ffprobe) from None


def read_timeline(reader: Any) -> tuple[np.ndarray, float, float]:
    """(start time of each frame from 0, duration, fps) from decord's per-frame timestamps."""
    n = len(reader)
    stamps = np.asarray(reader.get_frame_timestamp(np.arange(n)), dtype=np.float64)  # (n, 2)
    starts = stamps[:, 0] - stamps[0, 0]
    duration = float(stamps[-1, 1] - stamps[0, 0])
    rate = float(reader.get_avg_fps())
    if not (np.isfinite(rate) and rate > 0):
        rate = 0.0
    if not (np.all(np.isfinite(starts)) and np.all(np.diff(starts) >= 0)):
        rate = rate or _FALLBACK_FPS
        log.warning("frame timestamps are unusable; assuming a constant %.3f fps", rate)
        starts = np.arange(n, dtype=np.float64) / rate
        duration = n / rate
    if not (np.isfinite(duration) and duration > starts[-1]):  # no end time for the last frame
        duration = float(starts[-1]) + 1.0 / (rate or _FALLBACK_FPS)
    if not rate:
        rate = n / duration
    starts = np.round(starts, 6)  # decord's stamps are float32: 0.04 reads 0.0399999991
    starts.setflags(write=False)
    return starts, round(duration, 6), rate


# --------------------------------------------------------------------------- error sentences
def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    printable = sum(1 for b in head if b >= 32 or b in (9, 10, 13))
    return printable / len(head) > 0.97


def _check_readable(path: Path) -> None:
    """Raise a ``VideoError`` unless ``path`` is a non-empty file this process can read."""
    name = path.name or str(path)
    try:
        why = why_unusable(path)
        if why == MISSING:
            raise VideoError(f"The file '{name}' does not exist.")
        if why is not None:
            raise VideoError(f"'{name}' {why}.")
        if path.is_dir():
            raise VideoError(f"'{name}' is a folder, not a video file.")
        if not path.is_file():
            raise VideoError(f"'{name}' is not a regular file.")
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except PermissionError:
        raise VideoError(f"'{name}' cannot be read: permission denied.") from None
    except OSError as exc:
        raise VideoError(f"'{name}' cannot be read ({exc.strerror or exc}).") from None
    if not head:
        raise VideoError(f"'{name}' is empty (0 bytes).")


def _open_failure(path: Path, message: str, ffprobe: FFprobe | None) -> VideoError:
    """Turn decord's message for a file it cannot open into one sentence for the user."""
    name = path.name
    if "cannot find video stream" in message:
        audio = ffprobe.streams("audio") if ffprobe is not None else None
        if audio:
            return VideoError(f"'{name}' contains only audio, no video.")
        if audio is None:
            return VideoError(f"'{name}' contains no video stream (it may be an audio file).")
        return VideoError(f"'{name}' contains no video stream.")
    if "av_read_frame" in message:
        return VideoDecodeError(
            f"'{name}' is truncated or damaged: its data breaks off before the end of the film."
        )
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        head = b""
    if message.startswith("Error reading"):
        if _looks_like_text(head):
            return VideoError(f"'{name}' is a text file, not a video.")
        if head[4:8] == b"ftyp":
            return VideoDecodeError(
                f"'{name}' is an incomplete MP4/MOV file (its index is missing, as after an "
                "interrupted download or copy)."
            )
        return VideoError(f"'{name}' is not a video file (its format is not recognised).")
    geometry = _cv2_geometry(path)
    if geometry is not None and geometry[4] == 0:
        return VideoError(f"'{name}' contains no video frames.")
    return VideoDecodeError(
        f"'{name}' has a video stream that cannot be decoded (damaged, or an unsupported codec)."
    )


# --------------------------------------------------------------------------- geometry (opencv)
def _cv2_geometry(path: Path) -> tuple[int, int, int, str | None, int] | None:
    """(width, height, rotation, fourcc, frame_count) as opencv sees them, or None."""
    from moviechat_desktop.runtime_env import import_cv2

    cv2 = import_cv2()  # never while a process starts (runtime_env.SYS_PATH_LOCK)

    capture = cv2.VideoCapture(os.fspath(path), cv2.CAP_FFMPEG)
    try:
        if not capture.isOpened():
            return None
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        rotation = round(capture.get(cv2.CAP_PROP_ORIENTATION_META) / 90) * 90 % 360
        code = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little")
        fourcc = code.decode("ascii", "replace").strip("\x00 ").lower() or None
        return width, height, rotation, fourcc, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()


def _geometry(path: Path, ffprobe: FFprobe) -> tuple[int, int, int, str | None]:
    """(width, height, rotation, codec): opencv, else ffprobe, else a native decode.

    ffprobe's answer is only awaited when opencv cannot tell, or at the end for the codec name.
    """
    geometry = _cv2_geometry(path)
    if geometry is not None and geometry[0] > 0 and geometry[1] > 0:
        return geometry[0], geometry[1], geometry[2], geometry[3]
    video = ffprobe.streams("video")
    if video and video[0].get("width"):
        sides = video[0].get("side_data_list") or [{}]
        rotation = round(-float(sides[0].get("rotation", 0)) / 90) * 90 % 360  # it is CCW
        width, height = int(video[0]["width"]), int(video[0]["height"])
        if rotation in (90, 270):
            width, height = height, width
        return width, height, rotation, None
    frame = open_reader(path, None, num_threads=1).get_batch([0]).asnumpy()  # (1, H, W, 3)
    return int(frame.shape[2]), int(frame.shape[1]), 0, None


# --------------------------------------------------------------------------- probe
def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Check that ``path`` is a film the assistant can watch and describe it.

    Raises ``VideoError`` (``VideoDecodeError`` for truncated or damaged files) whose text is
    one sentence for the user. Decodes the first and the last frame (tiny) to catch files that
    open but break off.
    """
    path = Path(os.path.abspath(os.fspath(path)))
    name = path.name
    _check_readable(path)
    ffprobe = FFprobe(path)
    try:
        reader = open_reader(path, _PROBE_SIZE, num_threads=2, ffprobe=ffprobe)
        n = len(reader)
        if n <= 0:
            raise VideoError(f"'{name}' contains no video frames.")
        starts, duration, fps = read_timeline(reader)
        width, height, rotation, fourcc = _geometry(path, ffprobe)
        if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
            raise VideoError(
                f"'{name}' is {width}x{height} pixels, larger than this app supports "
                f"({MAX_SIDE} pixels a side, {MAX_PIXELS // 1_000_000} megapixels)."
            )
        for index, where in ((0, "its first frame"), (n - 1, "near the end")):
            try:
                reader.get_batch([index])
            except decord_errors() as exc:
                log.debug("decoding frame %d of %s failed: %s", index, path, exc)
                raise VideoDecodeError(
                    f"'{name}' is truncated or damaged: the picture cannot be decoded at "
                    f"{format_time(starts[index])} ({where})."
                ) from None
        audio, video = ffprobe.streams("audio"), ffprobe.streams("video")
    finally:
        ffprobe.close()
    return VideoInfo(
        path=path,
        duration_s=duration,
        fps=fps,
        frame_count=n,
        width=width,
        height=height,
        rotation=rotation,
        has_audio=None if audio is None else bool(audio),
        codec=(video[0].get("codec_name") if video else None) or fourcc,
        frame_times_s=starts,
    )
