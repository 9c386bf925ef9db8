"""``ffprobe`` as an optional helper: it tells what streams a file holds (audio, codec names).

It ships with ffmpeg, which a user's machine may lack, so every answer may be ``None`` ("cannot
tell") and callers fall back gracefully. It runs as a background process, started before the
in-process checks and read after them, so it costs no wall time when a second core is free.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
from typing import Any

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0
_ENTRIES = "stream=codec_type,codec_name,width,height:stream_side_data=rotation"


def ffprobe_executable() -> str | None:
    """The ``ffprobe`` program on PATH, or None."""
    return shutil.which("ffprobe")


_MAX_SIDE = 1 << 16  # pixels: no video is wider or taller
_TEXT_FIELDS = ("codec_type", "codec_name")


def _clean_stream(stream: Any) -> dict[str, Any] | None:
    """One stream of ffprobe's answer with only the fields used, each of the right type and
    range (a field that is not is left out; a stream that is not an object is dropped)."""
    if not isinstance(stream, dict):
        return None
    clean: dict[str, Any] = {}
    for key in _TEXT_FIELDS:
        value = stream.get(key)
        if isinstance(value, str) and len(value) <= 64:
            clean[key] = value
    width, height = stream.get("width"), stream.get("height")
    if all(
        isinstance(v, int) and not isinstance(v, bool) and 0 < v <= _MAX_SIDE
        for v in (width, height)
    ):
        clean["width"], clean["height"] = width, height
    sides = stream.get("side_data_list")
    if isinstance(sides, list) and sides and isinstance(sides[0], dict):
        rotation = sides[0].get("rotation")
        if (
            isinstance(rotation, int | float)
            and not isinstance(rotation, bool)
            and math.isfinite(rotation)
            and abs(rotation) <= 360
        ):
            clean["side_data_list"] = [{"rotation": rotation}]
    for key, value in stream.items():  # other plain fields (e.g. tags, index) as they are
        if key not in clean and key not in ("width", "height", "side_data_list", *_TEXT_FIELDS):
            clean[key] = value
    return clean


def parse_ffprobe_json(out: bytes) -> dict[str, Any] | None:
    """ffprobe's JSON as ``{"streams": [...]}`` with checked fields, or None ("cannot tell")
    when it is not JSON, nested too deeply or not the object ffprobe writes."""
    try:
        data = json.loads(out)
    except (ValueError, RecursionError) as exc:
        log.info("ffprobe answered garbage: %.100s", exc)
        return None
    if not isinstance(data, dict):
        return None
    streams = data.get("streams", [])
    if not isinstance(streams, list):
        return None
    cleaned = [c for c in (_clean_stream(s) for s in streams) if c is not None]
    return {**data, "streams": cleaned}


class FFprobe:
    """``ffprobe`` started on ``path`` in the background; ``result()`` is its JSON or None."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._result: dict[str, Any] | None = None
        self._done = False
        exe = ffprobe_executable()
        if exe is None:
            return
        cmd = [exe, "-v", "quiet", "-show_entries", _ENTRIES, "-of", "json", os.fspath(path)]
        try:
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError as exc:
            log.info("ffprobe could not start: %s", exc)

    def result(self) -> dict[str, Any] | None:
        """ffprobe's JSON (waits for it), or None when it is absent, hangs or answers garbage."""
        if self._done or self._proc is None:
            return self._result
        self._done = True
        try:
            out, _ = self._proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            log.info("ffprobe gave no answer: %s", exc)
            self.close()
            return None
        self._result = parse_ffprobe_json(out or b"{}")
        return self._result

    def streams(self, kind: str) -> list[dict[str, Any]] | None:
        """The streams of one ``codec_type`` ("video", "audio"…), or None if unknown."""
        result = self.result()
        if result is None:
            return None
        return [s for s in result["streams"] if s.get("codec_type") == kind]

    def close(self) -> None:
        """Stop ffprobe if it still runs and reap it (no zombie, no open pipe)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
