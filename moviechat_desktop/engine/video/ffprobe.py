"""``ffprobe`` as an optional helper: it tells what streams a file holds (audio, codec names).

It ships with ffmpeg, which a user's machine may lack, so every answer may be ``None`` ("cannot
tell") and callers fall back gracefully. It runs as a background process, started before the
in-process checks and read after them, so it costs no wall time when a second core is free.
"""

from __future__ import annotations

import json
import logging
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
            self._result = json.loads(out or b"{}")
        except (subprocess.TimeoutExpired, ValueError) as exc:
            log.info("ffprobe gave no answer: %s", exc)
            self.close()
        return self._result

    def streams(self, kind: str) -> list[dict[str, Any]] | None:
        """The streams of one ``codec_type`` ("video", "audio"…), or None if unknown."""
        result = self.result()
        if result is None:
            return None
        return [s for s in result.get("streams", []) if s.get("codec_type") == kind]

    def close(self) -> None:
        """Stop ffprobe if it still runs and reap it (no zombie, no open pipe)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
