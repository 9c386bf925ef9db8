"""Bench films with real shapes (issue 16): what a downloaded film looks like to a decoder.

The long test-pattern film (films.py) is 160x90 with a keyframe every 2 s, so every seek is
cheap. These are made the way real films are: x264's default GOP (a keyframe at most every
250 frames, at scene cuts too) with B-frames, at a film-like bitrate, from a source with
camera-like detail (``testsrc2`` plus temporal noise: flat test patterns decode unusually
fast), and a short 4K HEVC 10-bit clip. Each is made once under ``.cache/bench/`` (its name
holds its recipe) and reused:

    python -m bench.real_films 1080p --seconds 3600    # the 1-hour film (~2.2 GB, ~50 min here)
    python -m bench.real_films 4k --seconds 20
    python -m bench.real_films 1080p --seconds 3600 --loop 60   # 60 copies of the 1-minute film

``--loop N`` joins copies of the N-second film end to end without re-encoding (ffmpeg's concat
demuxer, stream copy): seconds instead of hours on a loaded machine, and to a decoder the same
as one long encode — the same GOPs (each copy starts with a keyframe), B-frames, bitrate and
picture size; only the pictures repeat every N seconds.
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


def film_1080p_looped(seconds: int, piece_s: int, cache_dir: Path = BENCH_CACHE) -> Path:
    """``seconds // piece_s`` copies of ``film_1080p(piece_s)`` joined by stream copy."""
    if piece_s < 1 or seconds % piece_s:
        raise ValueError(f"{seconds} s is not a whole number of {piece_s}-s pieces")
    piece = film_1080p(piece_s, cache_dir)
    path = cache_dir / f"real-1080p-h264-{seconds}s-5M-loop{piece_s}.mp4"
    listing = cache_dir / f"loop-{seconds}-{piece_s}.txt"
    listing.write_text(f"file '{piece.name}'\n" * (seconds // piece_s), "utf-8")
    cmd = [_require_ffmpeg(), "-v", "error", "-y", "-f", "concat", "-safe", "0"]
    cmd += ["-i", str(listing), "-map", "0:v:0", "-c", "copy", "-f", "mp4"]
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
    p.add_argument("--loop", type=int, default=None, metavar="N", help="copies of an N-s film")
    args = p.parse_args(argv)
    if args.seconds is not None and args.seconds < 1:
        p.error("--seconds must be at least 1")
    if args.loop is not None and (args.kind != "1080p" or args.loop < 1):
        p.error("--loop takes a positive length and the 1080p film")
    if args.loop is not None and (args.seconds or 3600) % args.loop:
        p.error("--seconds must be a multiple of --loop")
    if args.kind == "1080p" and args.loop:
        path = film_1080p_looped(args.seconds or 3600, args.loop)
    elif args.kind == "1080p":
        path = film_1080p(args.seconds or 3600)
    else:
        path = clip_4k_hevc(args.seconds or 20)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
