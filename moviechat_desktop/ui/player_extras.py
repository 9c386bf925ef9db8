"""Player features VLC and mpv users reach for, on top of ``PlayerWidget``: an on-screen
display drawn by VLC itself over the picture (its marquee filter, so it shows over the video
and in fullscreen), audio and subtitle track choice, subtitle delay, aspect ratio, and the
next/previous film in the folder.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moviechat_desktop.timefmt import format_time

if TYPE_CHECKING:
    from moviechat_desktop.ui.player_widget import PlayerWidget

log = logging.getLogger(__name__)

OSD_MS = 1500
SUBTITLE_DELAY_STEP_MS = 50  # VLC's G/H step
ASPECTS = (None, "16:9", "4:3", "1:1", "16:10", "2.21:1", "2.35:1", "2.39:1", "5:4")
VIDEO_SUFFIXES = frozenset(
    [
        ".mp4",
        ".mkv",
        ".avi",
        ".mov",
        ".webm",
        ".m4v",
        ".mpg",
        ".mpeg",
        ".wmv",
        ".flv",
        ".ts",
        ".ogv",
    ]
)


def _text(name: Any) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


def osd(player: PlayerWidget, text: str) -> bool:
    """Show ``text`` over the picture for ``OSD_MS`` (VLC's marquee). False without video."""
    import vlc

    vlc_player = player._player
    if vlc_player is None or player.path is None:
        return False
    option = vlc.VideoMarqueeOption
    try:
        vlc_player.video_set_marquee_int(option.Enable, 1)
        vlc_player.video_set_marquee_int(option.Size, 28)
        vlc_player.video_set_marquee_int(option.Position, 5)  # top left
        vlc_player.video_set_marquee_int(option.X, 24)
        vlc_player.video_set_marquee_int(option.Y, 24)
        vlc_player.video_set_marquee_int(option.Timeout, OSD_MS)
        vlc_player.video_set_marquee_string(option.Text, text)
    except (AttributeError, OSError, TypeError) as err:  # a libVLC without the marquee
        log.debug("no on-screen display: %s", err)
        return False
    player.osd_text = text
    return True


def osd_for_message(message: str) -> str:
    """The short form of a status-bar message for the OSD: no full paths in huge letters."""
    if message.startswith("Snapshot saved: "):
        return "Snapshot saved: " + Path(message.removeprefix("Snapshot saved: ")).name
    return message


def position_text(player: PlayerWidget) -> str:
    """The OSD's "01:23 / 10:00" (only "01:23" while VLC does not know the length yet)."""
    hours = player.duration >= 3600
    here = format_time(player.position, hours=hours)
    return f"{here} / {format_time(player.duration, hours=hours)}" if player.duration > 0 else here


def seek_and_show(player: PlayerWidget, seconds: float) -> None:
    """A jump the user asked for (timeline, keys, resume bar, chapters, time links): seek and
    show the new position over the picture, as VLC does."""
    player.seek(seconds)
    osd(player, position_text(player))


# ---------------------------------------------------------------------------- tracks
def audio_tracks(player: PlayerWidget) -> list[tuple[int, str]]:
    vlc_player = player._player
    if vlc_player is None:
        return []
    return [(i, _text(n)) for i, n in (vlc_player.audio_get_track_description() or [])]


def subtitle_tracks(player: PlayerWidget) -> list[tuple[int, str]]:
    vlc_player = player._player
    if vlc_player is None:
        return []
    return [(i, _text(n)) for i, n in (vlc_player.video_get_spu_description() or [])]


def set_audio_track(player: PlayerWidget, track_id: int) -> None:
    if player._player is not None:
        player._player.audio_set_track(track_id)
        name = dict(audio_tracks(player)).get(track_id, str(track_id))
        player.message_posted.emit(f"Audio: {name}")


def set_subtitle_track(player: PlayerWidget, track_id: int) -> None:
    if player._player is None:
        return
    player._player.video_set_spu(track_id)
    shown = [i for i, _ in subtitle_tracks(player) if i >= 0]
    player.subtitle_track_changed.emit(shown.index(track_id) if track_id in shown else -1)
    name = dict(subtitle_tracks(player)).get(track_id, str(track_id))
    player.message_posted.emit(f"Subtitles: {name}")


def cycle_audio(player: PlayerWidget) -> str:
    """`b`: the next audio track (VLC lists "Disable" as -1; it is skipped here)."""
    tracks = [(i, n) for i, n in audio_tracks(player) if i >= 0]
    if not tracks:
        player.message_posted.emit("No audio track")
        return ""
    ids = [i for i, _ in tracks]
    current = player._player.audio_get_track()
    following = ids[(ids.index(current) + 1) % len(ids)] if current in ids else ids[0]
    set_audio_track(player, following)
    return dict(tracks)[following]


# ---------------------------------------------------------------------------- delay, aspect
def change_subtitle_delay(player: PlayerWidget, step: int) -> int:
    """`G` (-1) / `H` (+1): move the subtitles 50 ms earlier/later; the new delay in ms."""
    if player._player is None or player.path is None:
        return 0
    delay_ms = round(player._player.video_get_spu_delay() / 1000) + step * SUBTITLE_DELAY_STEP_MS
    player._player.video_set_spu_delay(delay_ms * 1000)
    player.message_posted.emit(f"Subtitle delay {delay_ms} ms")
    return delay_ms


def set_aspect(player: PlayerWidget, aspect: str | None) -> None:
    if player._player is None:
        return
    player._player.video_set_aspect_ratio(aspect)
    player.aspect = aspect
    player.message_posted.emit(f"Aspect ratio: {aspect or 'default'}")


def cycle_aspect(player: PlayerWidget) -> str | None:
    """`A`: the next aspect ratio (default, 16:9, 4:3…)."""
    current = getattr(player, "aspect", None)
    index = ASPECTS.index(current) if current in ASPECTS else 0
    aspect = ASPECTS[(index + 1) % len(ASPECTS)]
    set_aspect(player, aspect)
    return aspect


# ---------------------------------------------------------------------------- chapters
def chapters(player: PlayerWidget) -> list[tuple[float, str]]:
    """The film's chapters as (start in seconds, title), in order; [] when it has none (or
    VLC has not read them yet: it knows them once the film plays)."""
    vlc_player = player._player
    if vlc_player is None or player.path is None:
        return []
    try:
        found = vlc_player.get_full_chapter_descriptions(-1) or []
    except (AttributeError, OSError, TypeError, ValueError):  # none (python-vlc: count -1)
        return []
    listed = []
    for number, chapter in enumerate(found, start=1):
        title = _text(chapter.name) if chapter.name else f"Chapter {number}"
        listed.append((max(0.0, chapter.time_offset / 1000), title))
    return listed


# ---------------------------------------------------------------------------- folder
def _natural(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def sibling_film(path: str | None, step: int) -> str | None:
    """The next (+1) or previous (-1) video in ``path``'s folder, by natural name order
    ("ep2" before "ep10"); None at either end or without a film. Reads the folder: call it
    for a key press, not in a loop."""
    if not path:
        return None
    here = Path(path)
    try:
        films = sorted(
            (
                p
                for p in here.parent.iterdir()
                if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
            ),
            key=lambda p: _natural(p.name),
        )
    except OSError:
        return None
    names = [p.name for p in films]
    if here.name not in names:
        return None
    index = names.index(here.name) + step
    return str(films[index]) if 0 <= index < len(films) else None
