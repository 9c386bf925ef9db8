"""Subtitle tracks inside the film's container (mkv, mp4, webm…), listed and extracted with ffmpeg.

``ffprobe`` lists the subtitle streams (in its order: track ``n`` is ``-map 0:s:n``); text tracks
(SubRip, ASS/SSA, mov_text, WebVTT, MicroDVD, plain text) are extracted with ``ffmpeg`` as SRT
(ASS/SSA copied as ASS, keeping the speaker names) and parsed like a file. Bitmap tracks (PGS,
VobSub, DVB) hold pictures of text: they are listed with ``text=False`` and refused with that
reason. ~0.06 s to list and ~0.1 s to extract, even on a large file (ENVIRONMENT.md).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from moviechat_desktop.engine.dialogue.sidecars import normalise_language
from moviechat_desktop.engine.dialogue.subtitle_file import (
    BITMAP_HINT,
    MAX_BYTES,
    ParsedSubtitles,
    parse_subtitles,
)
from moviechat_desktop.engine.errors import DialogueError

log = logging.getLogger(__name__)

TEXT_CODECS = {"subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text", "microdvd", "mpl2"}
ASS_CODECS = {"ass", "ssa"}
BITMAP_CODECS = {
    "hdmv_pgs_subtitle": "PGS",
    "dvd_subtitle": "VobSub",
    "dvb_subtitle": "DVB",
    "xsub": "XSUB",
    "dvb_teletext": "teletext",
}
LIST_TIMEOUT_S = 20.0
EXTRACT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class SubtitleTrack:
    number: int  # among the subtitle streams, in ffprobe's order (ffmpeg's 0:s:N)
    codec: str
    language: str  # the stream's language tag as written ("eng"), or ""
    title: str
    default: bool
    forced: bool

    @property
    def text(self) -> bool:
        return self.codec in TEXT_CODECS

    @property
    def label(self) -> str:
        """``"Embedded track 2 (eng)"``: numbered from 1 as players show them."""
        extra = ", ".join(x for x in (self.language, self.title) if x)
        return f"Embedded track {self.number + 1}" + (f" ({extra})" if extra else "")

    @property
    def kind(self) -> str:
        return BITMAP_CODECS.get(self.codec, self.codec)


def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise DialogueError(f"reading subtitle tracks inside a film needs {name} (install ffmpeg)")
    return exe


def list_subtitle_tracks(film: str | Path) -> list[SubtitleTrack]:
    """The film's subtitle streams; ``[]`` when it has none or ffprobe is missing."""
    exe = shutil.which("ffprobe")
    if exe is None:
        return []
    cmd = [
        exe, "-v", "error", "-select_streams", "s",
        "-show_entries",
        "stream=index,codec_name:stream_tags=language,title:stream_disposition=default,forced",
        "-of", "json", os.fspath(film),
    ]  # fmt: skip
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=LIST_TIMEOUT_S, check=False).stdout
        streams = json.loads(out or b"{}").get("streams", [])
    except (OSError, subprocess.TimeoutExpired, ValueError) as err:
        log.info("cannot list the subtitle tracks of %s: %s", film, err)
        return []
    tracks = []
    for number, stream in enumerate(streams):
        tags = stream.get("tags") or {}
        disposition = stream.get("disposition") or {}
        tracks.append(
            SubtitleTrack(
                number=number,
                codec=str(stream.get("codec_name") or "unknown"),
                language=str(tags.get("language") or "").strip(),
                title=str(tags.get("title") or "").strip(),
                default=bool(disposition.get("default")),
                forced=bool(disposition.get("forced")),
            )
        )
    return tracks


def default_track(tracks: list[SubtitleTrack], language: str = "") -> SubtitleTrack | None:
    """The text track a player would show by default: flagged default, else the best match."""

    def rank(t: SubtitleTrack) -> tuple[int, int, int, int]:
        lang = normalise_language(t.language) if t.language not in ("", "und") else ""
        lang_rank = 0 if language and lang == language else (1 if not lang else 2)
        return (int(t.forced), int(not t.default), lang_rank, t.number)

    text = [t for t in tracks if t.text]
    return min(text, key=rank) if text else None


def bitmap_message(track: SubtitleTrack) -> str:
    return f"{track.label} is a {track.kind} bitmap subtitle: {BITMAP_HINT}"


def extract_track(
    film: str | Path, track: SubtitleTrack, duration_s: float | None = None
) -> ParsedSubtitles:
    """Extract and parse one text track; ``DialogueError`` for bitmap or unreadable tracks."""
    if not track.text:
        raise DialogueError(bitmap_message(track))
    exe = _tool("ffmpeg")
    fmt = ["-c:s", "copy", "-f", "ass"] if track.codec in ASS_CODECS else ["-f", "srt"]
    cmd = [exe, "-nostdin", "-v", "error", "-i", os.fspath(film), "-map", f"0:s:{track.number}"]
    try:
        proc = subprocess.run(
            [*cmd, *fmt, "-"], capture_output=True, timeout=EXTRACT_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise DialogueError(f"extracting {track.label} took too long") from err
    except OSError as err:
        raise DialogueError(f"cannot run ffmpeg to extract {track.label}: {err}") from err
    if proc.returncode != 0 or not proc.stdout.strip():
        why = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = f": {why[-1]}" if why else " (it is empty)"
        raise DialogueError(f"{track.label} could not be extracted{detail}")
    if len(proc.stdout) > MAX_BYTES:
        raise DialogueError(f"{track.label} is too large for subtitles")
    return parse_subtitles(proc.stdout, track.label, duration_s=duration_s)
