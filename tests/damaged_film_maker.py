"""A film damaged in the middle, made at test time (ffmpeg, then bytes overwritten): shared by
the local (tests/test_damaged_film.py) and the server (tests/test_remote_gaps.py) tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

SECONDS = 20


def _garbage(count: int) -> bytes:
    return bytes((i * 37 + 11) & 0xFF for i in range(count))


def make_damaged_film(folder: Path) -> Path:
    """20 s at 25 fps, a keyframe every second; bytes 45-60 % overwritten (≈ 9-12 s)."""
    whole = folder / "whole.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
         f"testsrc=duration={SECONDS}:size=320x240:rate=25",
         "-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p", str(whole)],
        check=True, timeout=120,
    )  # fmt: skip
    data = bytearray(whole.read_bytes())
    start, end = int(len(data) * 0.45), int(len(data) * 0.60)
    data[start:end] = _garbage(end - start)
    path = folder / "damaged.mp4"
    path.write_bytes(bytes(data))
    return path


def ruin(film: Path, dest: Path) -> Path:
    """``film`` with everything after its first 5 % overwritten: nothing decodes from it."""
    data = bytearray(film.read_bytes())
    start = int(len(data) * 0.05)
    data[start:] = _garbage(len(data) - start)
    dest.write_bytes(bytes(data))
    return dest
