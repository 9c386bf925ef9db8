"""What travels between the remote engine's client and its server, and how it is checked.

Torch-free (the client side imports it). JSON for metadata, a small binary framing for
frames: each frame is one compressed image (JPEG by default, see ``FRAME_CODEC`` and
bench/README.md for why), the body is ``[4-byte big-endian length][image bytes]`` per frame.
Every value from the other side is validated here: a bad one raises ``WireError`` (the server
answers 400, the client reports a broken server).
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moviechat_desktop.engine import errors as engine_errors
from moviechat_desktop.engine.errors import MovieChatError
from moviechat_desktop.engine.settings import SamplingSettings
from moviechat_desktop.engine.video.probe import VideoInfo
from moviechat_desktop.engine.video.sampling import Fragment, SamplingPlan

API_PREFIX = "/v1"
FRAME_CODEC = "jpeg"  # see bench/README.md, "Frame transport"
JPEG_QUALITY = 90
TRANSPORT = f"uploaded-{FRAME_CODEC}-q{JPEG_QUALITY}"  # joins the server's memory cache key
FRAMES_CONTENT_TYPE = "application/x-moviechat-frames"
MULTIPLEX_HEADER = "serve_multiplexed_model_id"  # Ray Serve routes a film to its replica

MAX_FRAMES_PER_FRAGMENT = 64
MAX_FRAGMENTS = 100_000
MAX_IMAGE_SIDE = 1024  # the model's input size is 224 (364 for bigger encoders)
MAX_FRAME_BYTES = MAX_IMAGE_SIDE * MAX_IMAGE_SIDE * 3  # a compressed frame is never larger
MAX_FRAMES_BODY = 32 * 1024 * 1024  # one fragment's frames
MAX_JSON_BODY = 8 * 1024 * 1024  # a plan of 100 000 fragments of 8 frames is ~7 MB
MAX_QUESTION_CHARS = 8000
MAX_GAP_REASON_CHARS = 300  # why a fragment could not be decoded (one line)
FILM_ID = re.compile(r"^[0-9a-f]{1,16}-[0-9a-f]{32}$")  # store.fingerprint.file_fingerprint


class WireError(MovieChatError):
    """A request or reply that does not have the agreed shape."""


# --------------------------------------------------------------------------- frames
def encode_image(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """One ``(S, S, 3)`` uint8 RGB frame → JPEG bytes (4:4:4, no chroma subsampling)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(
        buffer, format="JPEG", quality=quality, subsampling=0
    )
    return buffer.getvalue()


def decode_image(data: bytes, size: int) -> np.ndarray:
    """JPEG bytes → ``(size, size, 3)`` uint8; anything else (another format, size, mode, a
    truncated file) is a ``WireError``. The header is checked before any pixel is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            if image.size != (size, size) or image.mode != "RGB":
                raise WireError(
                    f"a frame must be a {size}x{size} RGB JPEG, got {image.mode} "
                    f"{image.size[0]}x{image.size[1]}"
                )
            image.load()
            return np.asarray(image, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise WireError(f"a frame is not a readable JPEG ({err})") from None


def pack_frames(frames: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """``(n, S, S, 3)`` uint8 → the frames body."""
    parts = []
    for frame in frames:
        data = encode_image(frame, quality)
        parts.append(struct.pack(">I", len(data)))
        parts.append(data)
    return b"".join(parts)


def unpack_frames(body: bytes, count: int, size: int) -> np.ndarray:
    """The frames body → ``(count, size, size, 3)`` uint8, every frame checked."""
    frames = []
    offset = 0
    while offset < len(body):
        if len(frames) == count:
            raise WireError(f"more than the {count} frames the fragment needs")
        if offset + 4 > len(body):
            raise WireError("the frames body ends inside a length field")
        (length,) = struct.unpack_from(">I", body, offset)
        offset += 4
        if length == 0 or length > MAX_FRAME_BYTES or offset + length > len(body):
            raise WireError("a frame's length is wrong")
        frames.append(decode_image(body[offset : offset + length], size))
        offset += length
    if len(frames) != count:
        raise WireError(f"the fragment needs {count} frames, got {len(frames)}")
    return np.stack(frames)


# --------------------------------------------------------------------------- film metadata
def _number(data: dict, key: str, low: float, high: float, kind: type = float) -> Any:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError(f"{key} must be a number")
    if kind is int and value != int(value):
        raise WireError(f"{key} must be a whole number")
    if not (math.isfinite(value) and low <= value <= high):
        raise WireError(f"{key} must lie in {low}..{high}")
    return kind(value)


def check_film_id(film_id: str) -> str:
    if not isinstance(film_id, str) or not FILM_ID.match(film_id):
        raise WireError("the film id is not a content fingerprint")
    return film_id


def info_to_wire(info: VideoInfo) -> dict[str, Any]:
    return {
        "name": info.path.name,
        "duration_s": info.duration_s,
        "fps": info.fps,
        "frame_count": info.frame_count,
        "width": info.width,
        "height": info.height,
        "rotation": info.rotation,
        "has_audio": info.has_audio,
        "codec": info.codec,
    }


def info_from_wire(data: Any) -> VideoInfo:
    """A client's film description; the name is kept as a bare file name (no directories)."""
    if not isinstance(data, dict):
        raise WireError("the film description must be an object")
    name = data.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 255 or "\x00" in name:
        raise WireError("the film needs a file name")
    codec = data.get("codec")
    has_audio = data.get("has_audio")
    rotation = _number(data, "rotation", 0, 270, int)
    if rotation not in (0, 90, 180, 270):
        raise WireError("rotation must be 0, 90, 180 or 270")
    return VideoInfo(
        path=Path(Path(name.replace("\\", "/")).name or "film"),
        duration_s=_number(data, "duration_s", 0.0, 1e7),
        fps=_number(data, "fps", 1e-3, 1e4),
        frame_count=_number(data, "frame_count", 1, 1e9, int),
        width=_number(data, "width", 1, 1e5, int),
        height=_number(data, "height", 1, 1e5, int),
        rotation=rotation,
        has_audio=has_audio if isinstance(has_audio, bool) else None,
        codec=codec[:64] if isinstance(codec, str) else None,
    )


def sampling_to_wire(sampling: SamplingSettings) -> dict[str, Any]:
    return dataclasses.asdict(sampling)


def sampling_from_wire(data: Any) -> SamplingSettings:
    if not isinstance(data, dict) or data.get("plan") not in ("fragments", "fps"):
        raise WireError("sampling.plan must be 'fragments' or 'fps'")
    return SamplingSettings(
        plan=data["plan"],
        n_fragments=_number(data, "n_fragments", 1, MAX_FRAGMENTS, int),
        frames_per_fragment=_number(data, "frames_per_fragment", 1, MAX_FRAMES_PER_FRAGMENT, int),
        fps=_number(data, "fps", 1e-3, 100.0),
        # which pictures the client sends (part of the memory's key); clients from before the
        # choice sent the exact frames
        exact_frames=data.get("exact_frames", True) is not False,
    )


def plan_to_wire(plan: SamplingPlan) -> dict[str, Any]:
    return {
        "kind": plan.kind,
        "fragments": [
            [f.start_s, f.end_s, list(f.frame_indices), list(f.timestamps)] for f in plan.fragments
        ],
    }


def plan_from_wire(data: Any, sampling: SamplingSettings, info: VideoInfo) -> SamplingPlan:
    """A client's sampling plan, checked against its sampling settings and the film."""
    if not isinstance(data, dict) or not isinstance(data.get("fragments"), list):
        raise WireError("the plan must list its fragments")
    rows = data["fragments"]
    if not 0 < len(rows) <= MAX_FRAGMENTS:
        raise WireError(f"a plan has 1..{MAX_FRAGMENTS} fragments")
    if sampling.plan == "fragments" and len(rows) != sampling.n_fragments:
        raise WireError("the plan does not have the fragments its settings ask for")
    kind = "fragments" if sampling.plan == "fragments" else "fps"
    if data.get("kind") != kind:
        raise WireError("the plan's kind does not match its settings")
    fragments = []
    previous_end = 0.0
    for index, row in enumerate(rows):
        if not (isinstance(row, list) and len(row) == 4):
            raise WireError("a fragment is [start_s, end_s, frame_indices, timestamps]")
        start_s, end_s, indices, times = row
        span = {"start_s": start_s, "end_s": end_s}
        start_s = _number(span, "start_s", 0.0, info.duration_s + 1.0)
        end_s = _number(span, "end_s", start_s, info.duration_s + 1.0)
        if abs(start_s - previous_end) > 1e-3:
            raise WireError("the plan's fragments are not contiguous")
        previous_end = end_s
        if not (
            isinstance(indices, list)
            and isinstance(times, list)
            and len(indices) == len(times) == sampling.frames_per_fragment
        ):
            raise WireError("a fragment has the wrong number of frames")
        checked_indices = tuple(
            _number({"i": i}, "i", 0, info.frame_count - 1, int) for i in indices
        )
        checked_times = tuple(_number({"t": t}, "t", 0.0, info.duration_s + 1.0) for t in times)
        fragments.append(Fragment(index, start_s, end_s, checked_indices, checked_times))
    return SamplingPlan(fragments=tuple(fragments), kind=kind)


# --------------------------------------------------------------------------- answers, errors
def dataclass_from_wire(cls: type, data: Any) -> Any:
    """Rebuild a flat dataclass from its JSON object (lists become tuples where the field's
    default type is a tuple; unknown keys are dropped)."""
    if not isinstance(data, dict):
        raise WireError(f"expected an object for {cls.__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in data.items() if k in names}
    try:
        return cls(**values)
    except TypeError as err:
        raise WireError(f"a {cls.__name__} from the server is malformed ({err})") from None


def gap_to_wire(reason: str) -> dict[str, str]:
    """The body of ``PUT /films/{film}/gaps/{i}``: why the client could not decode it."""
    return {"reason": " ".join(reason.split())[:MAX_GAP_REASON_CHARS] or "cannot be decoded"}


def gap_reason(data: Any) -> str:
    """The reason of a gap request: a short line of text (whitespace runs become one space)."""
    if not isinstance(data, dict) or not isinstance(data.get("reason"), str):
        raise WireError('a gap must be an object {"reason": "why it cannot be decoded"}')
    reason = " ".join(data["reason"].split())
    if not 0 < len(reason) <= MAX_GAP_REASON_CHARS:
        raise WireError(f"a gap's reason must be 1 to {MAX_GAP_REASON_CHARS} characters")
    return reason


def ranges(value: Any) -> tuple[tuple[float, float], ...]:
    """Time ranges ``[[a, b], ...]`` from the other side (``WireError`` when malformed)."""
    try:
        pairs = tuple((float(a), float(b)) for a, b in value or ())
    except (TypeError, ValueError):
        raise WireError("time ranges must be a list of [start, end] pairs") from None
    if not all(math.isfinite(a) and math.isfinite(b) and a <= b for a, b in pairs):
        raise WireError("time ranges must be a list of [start, end] pairs")
    return pairs


def tuples(value: Any) -> Any:
    """JSON lists back into (nested) tuples."""
    return tuple(tuples(v) for v in value) if isinstance(value, list) else value


def error_to_wire(err: BaseException) -> dict[str, str]:
    name = type(err).__name__ if isinstance(err, MovieChatError) else "RemoteError"
    return {"type": name, "message": str(err) or name}


def error_from_wire(data: Any, default: type[MovieChatError]) -> MovieChatError:
    """The server's error as the engine's own class when it is one of them."""
    if not isinstance(data, dict):
        return default("the server sent an unreadable error")
    message = str(data.get("message") or "the server failed")
    cls = getattr(engine_errors, str(data.get("type")), None)
    if isinstance(cls, type) and issubclass(cls, MovieChatError):
        return cls(message)
    return default(message)


def done_fragments(indices: Sequence[int]) -> list[int]:
    return sorted(int(i) for i in indices)
