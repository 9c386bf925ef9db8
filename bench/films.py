"""The films the benchmark watches: the real test clips and a generated two-hour film.

The long film is what makes the default plan's 1024 seeks real: 160x90 pixels, 25 fps, a
keyframe exactly every 2 s (``-g 50``, no scene-cut keyframes), ffmpeg's moving ``testsrc2``
pattern. It is made once (about a minute, ~70 MB) under ``.cache/bench/`` and reused.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
TEST_VIDEOS = ROOT / ".cache" / "test-videos"
BENCH_CACHE = ROOT / ".cache" / "bench"
FETCH_SCRIPT = ROOT / "scripts" / "fetch_test_videos.sh"
DEFAULT_CLIPS = ("bigbuckbunny.mp4", "vtest.avi")

LONG_FILM_SECONDS = 2 * 3600
LONG_FILM_SIZE = "160x90"
LONG_FILM_FPS = 25
LONG_FILM_GOP = 50  # frames between keyframes: one every 2 s at 25 fps


def _require_ffmpeg() -> str:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is not installed (scripts/setup.sh installs it)")
    return ffmpeg


def long_film(
    seconds: int = LONG_FILM_SECONDS,
    size: str = LONG_FILM_SIZE,
    fps: int = LONG_FILM_FPS,
    gop: int = LONG_FILM_GOP,
    cache_dir: Path = BENCH_CACHE,
) -> Path:
    """The generated long film (made on first use, then reused); its name holds its recipe."""
    path = cache_dir / f"testsrc2-{seconds}s-{size}-{fps}fps-g{gop}.mp4"
    if path.is_file() and path.stat().st_size > 0:
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.mp4")
    cmd = [
        _require_ffmpeg(),
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={size}:rate={fps}:duration={seconds}",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "32",
        "-g",
        str(gop),
        "-keyint_min",
        str(gop),
        "-sc_threshold",
        "0",  # no extra keyframes at "scene cuts": seeks cost what -g says
        "-pix_fmt",
        "yuv420p",
        str(partial),
    ]
    log.info("generating the %d s benchmark film at %s (once)", seconds, path)
    subprocess.run(cmd, check=True)
    os.replace(partial, path)  # atomic: a half-made film is never picked up
    return path


def real_clip(name: str) -> Path:
    """A real clip from ``.cache/test-videos`` (fetched with the project's script if missing)."""
    path = TEST_VIDEOS / name
    if not path.is_file() and FETCH_SCRIPT.is_file():
        log.info("fetching the test clips with %s", FETCH_SCRIPT)
        subprocess.run([str(FETCH_SCRIPT)], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run {FETCH_SCRIPT}")
    return path


def choose_videos(videos: list[str], long: bool, quick: bool) -> list[Path]:
    """The films to measure: ``--video`` paths, else the default clips; plus the long film.

    ``quick`` keeps one film only (the first given, else Big Buck Bunny).
    """
    chosen = [Path(v).expanduser().resolve() for v in videos]
    for path in chosen:
        if not path.is_file():
            raise FileNotFoundError(f"--video {path}: no such file")
    if not chosen and not (long and quick):
        names = DEFAULT_CLIPS[:1] if quick else DEFAULT_CLIPS
        chosen = [real_clip(name) for name in names]
    if long and not (quick and chosen):
        chosen.append(long_film())
    return chosen[:1] if quick else chosen
