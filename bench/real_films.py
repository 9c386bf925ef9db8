"""Bench films with real shapes (issue 16): what a downloaded film looks like to a decoder.

The long test-pattern film (films.py) is 160x90 with a keyframe every 2 s, so every seek is
cheap. These are made the way real films are: x264's default GOP (a keyframe at most every
250 frames, at scene cuts too) with B-frames, at a film-like bitrate, from a source with
camera-like detail (``testsrc2`` plus temporal noise: flat test patterns decode unusually
fast), and a short 4K HEVC 10-bit clip. Each is made once under ``.cache/bench/`` (its name
holds its recipe) and reused:

    python -m bench.real_films 1080p --seconds 3600    # the 1-hour film (~2.2 GB, ~50 min here)
    python -m bench.real_films 4k --seconds 20
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

from bench.films import BENCH_CACHE, _require_ffmpeg

NOISE = "noise=alls=12:allf=t"  # temporal noise: every frame differs like film grain


def _make(path: Path, cmd: list[str]) -> Path:
    if path.is_file() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial" + path.suffix)
    subprocess.run([*cmd, str(partial)], check=True)
    os.replace(partial, path)  # atomic: a half-made film is never picked up
    return path


def film_1080p(seconds: int = 3600, cache_dir: Path = BENCH_CACHE) -> Path:
    """1920x1080 H.264 at 24 fps, ~5 Mb/s, x264 veryfast with its default GOP and B-frames."""
    path = cache_dir / f"real-1080p-h264-{seconds}s-5M.mp4"
    source = f"testsrc2=size=1920x1080:rate=24:duration={seconds}"
    cmd = [_require_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", source, "-vf", NOISE]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-b:v", "5M", "-maxrate", "6M"]
    cmd += ["-bufsize", "10M", "-pix_fmt", "yuv420p"]
    return _make(path, cmd)


def clip_4k_hevc(seconds: int = 20, cache_dir: Path = BENCH_CACHE) -> Path:
    """3840x2160 HEVC Main10 (yuv420p10le) at 24 fps, ~15 Mb/s, x265's default GOP."""
    path = cache_dir / f"real-4k-hevc10-{seconds}s-15M.mkv"
    source = f"testsrc2=size=3840x2160:rate=24:duration={seconds}"
    cmd = [_require_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", source, "-vf", NOISE]
    cmd += ["-c:v", "libx265", "-preset", "ultrafast", "-b:v", "15M"]
    cmd += ["-x265-params", "log-level=error", "-pix_fmt", "yuv420p10le"]
    return _make(path, cmd)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.real_films")
    p.add_argument("kind", choices=("1080p", "4k"))
    p.add_argument("--seconds", type=int, default=None, help="length (1080p: 3600, 4k: 20)")
    args = p.parse_args(argv)
    if args.seconds is not None and args.seconds < 1:
        p.error("--seconds must be at least 1")
    if args.kind == "1080p":
        path = film_1080p(args.seconds or 3600)
    else:
        path = clip_4k_hevc(args.seconds or 20)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
