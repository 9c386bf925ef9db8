"""``PlayerWidget``: libVLC drawing into a Qt widget, polled by a timer (never blocked on).

VLC runs its own threads; this widget reads its time and state ~10×/s on the GUI thread and
emits signals when they change. It plays what it is given: validating files is done before
(``probe`` in a worker) because VLC says nothing about bad files.

Seeking (measured with VLC 3.0): VLC jumps to the keyframe before the time asked for and
decodes from there without showing anything ("preroll"); meanwhile ``get_time()`` echoes the
time asked for, then reads 0, and the old picture stays — for seconds with a long keyframe
interval, a large picture or a busy CPU, and right after opening a film, when the decoders
start too. The player keeps reporting the position asked for until VLC reports a time near it
(or ``SEEK_HOLD_MAX_S`` has passed), so the timeline and the time never jump back to 00:00 and
a key pressed meanwhile steps from the new position. A seek made while VLC has no input yet
(``is_seekable()`` is false: stopped, not yet playing) is held, the last one winning, and given
to VLC by the poll as soon as it can seek.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer, QUrl, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from moviechat_desktop.engine.file_checks import real_path
from moviechat_desktop.ui import vlc_setup
from moviechat_desktop.ui.video_surface import VideoSurface

log = logging.getLogger(__name__)

POLL_MS = 100
EMPTY_HINT = "Open a film (Ctrl+O) or drop one here"
SEEK_SETTLE_S = 0.6  # after a seek, VLC may still report the end it left for this long
SEEK_HOLD_MAX_S = 10.0  # report the position asked for at most this long while VLC gets there
# a held seek is given up (with a message) when VLC plays this long without becoming seekable
UNSEEKABLE_AFTER_S = 5.0
END_WINDOW_S = 2.0  # VLC pausing by itself this close to the end means the film ended
# a paused seek lands at least this far before the end: VLC has no frame to show at the very
# end, and a paused seek there would leave the old picture on screen
LAST_FRAME_MARGIN_S = 0.2
RATES = (0.25, 0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0)

STOPPED, OPENING, PLAYING, PAUSED, ENDED, ERROR = (
    "stopped",
    "opening",
    "playing",
    "paused",
    "ended",
    "error",
)


class PlayerWidget(QWidget):
    """One VLC media player embedded in a ``VideoSurface``."""

    position_changed = Signal(float)  # seconds
    duration_changed = Signal(float)  # seconds
    state_changed = Signal(str)  # STOPPED / OPENING / PLAYING / PAUSED / ENDED / ERROR
    volume_changed = Signal(int, bool)  # volume 0-100, muted
    rate_changed = Signal(float)
    message_posted = Signal(str)  # short on-screen-display style notices
    subtitle_track_changed = Signal(int)  # index of the track shown among the film's; -1: off

    def __init__(self, parent: QWidget | None = None, vlc_args: Sequence[str] | None = None):
        super().__init__(parent)
        self.surface = VideoSurface(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.surface)
        self._instance, problem = vlc_setup.create_vlc_instance(vlc_args)
        self._player: Any = None
        self._embedded = False
        if self._instance is not None:
            self._player = self._instance.media_player_new()
            self._player.video_set_mouse_input(False)  # let Qt see clicks and keys
            self._player.video_set_key_input(False)
        else:
            self.surface.message.setText(problem)
        if self._player is not None:
            self.surface.message.setText(EMPTY_HINT)
        self.osd_text = ""  # the last on-screen display (player_extras.osd)
        self.aspect: str | None = None  # the aspect ratio forced by the user (None: the film's)
        self.unavailable_reason = problem
        self.path: str | None = None
        self._state = STOPPED
        self._position = 0.0
        self._duration = 0.0
        self._volume = 80
        self._muted = False
        self._rate = 1.0
        self._seek_target: float | None = None
        self._seek_time = 0.0
        self._pending_seek: float | None = None  # asked for before VLC could seek
        self._unseekable_since: float | None = None  # VLC plays but cannot seek yet
        self._pause_after_seek = False  # a seek from the end: show the frame, do not play
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)

    # ------------------------------------------------------------------ state
    @property
    def available(self) -> bool:
        return self._player is not None

    @property
    def state(self) -> str:
        return self._state

    @property
    def position(self) -> float:
        return self._position

    @property
    def duration(self) -> float:
        return self._duration

    @property
    def volume(self) -> int:
        return self._volume

    @property
    def muted(self) -> bool:
        return self._muted

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def is_playing(self) -> bool:
        return self._state in (PLAYING, OPENING)

    # ------------------------------------------------------------------ media
    def load(
        self, path: str | Path, *, start_s: float = 0.0, play: bool = True, duration_s: float = 0.0
    ) -> bool:
        """Replace the current media with ``path`` (already validated) and play it, from
        ``start_s``. ``duration_s`` (the probe's) gives the timeline its length until VLC
        reports its own, so a position can be shown and clicked while VLC opens the film."""
        if self._player is None:
            self.message_posted.emit(self.unavailable_reason)
            return False
        if not self._embedded:
            self._embedded = vlc_setup.embed(self._player, int(self.surface.winId()))
        self.surface.message.clear()
        media = self._instance.media_new_path(str(path))
        self._player.set_media(media)
        media.release()
        self.path = str(path)
        start = max(0.0, float(start_s))
        self._position, self._duration = start, max(0.0, float(duration_s))
        self._seek_target = None
        self._pause_after_seek = False
        self._pending_seek = start if start > 0 else None
        self._unseekable_since = None
        self.duration_changed.emit(self._duration)
        self.position_changed.emit(start)
        if play:
            self._player.play()
            self._set_state(OPENING)
            if self._pending_seek is not None and self._vlc_can_seek():
                self._apply_pending_seek(OPENING)  # VLC seeks as it opens: no first frame at 00:00
        self._apply_audio()
        self._player.set_rate(self._rate)
        self._timer.start()
        return True

    def close_media(self) -> None:
        if self._player is not None:
            self._player.stop()
        self.path = None
        self._timer.stop()
        self._pending_seek = None
        self._position = self._duration = 0.0
        self.surface.message.setText(EMPTY_HINT)
        self._set_state(STOPPED)
        self.position_changed.emit(0.0)
        self.duration_changed.emit(0.0)

    def release(self) -> None:
        """Stop and free libVLC (at window close)."""
        self._timer.stop()
        if self._player is not None:
            self._player.stop()
            self._player.release()
            self._player = None
        if self._instance is not None:
            self._instance.release()
            self._instance = None

    # ------------------------------------------------------------------ transport
    def play(self) -> None:
        if self._player is None or self.path is None:
            return
        if self._state in (ENDED, STOPPED, ERROR):
            self._player.stop()
            self._player.play()
            self._set_state(OPENING)
        else:
            self._player.set_pause(0)
            self._set_state(PLAYING)  # at once; the next poll corrects it if VLC disagrees
        self._timer.start()

    def pause(self) -> None:
        if self._player is not None and self._state in (PLAYING, OPENING):
            self._player.set_pause(1)
            self._set_state(PAUSED)

    def toggle_play(self) -> None:
        if self.is_playing:
            self.pause()
        else:
            self.play()

    def seek(self, seconds: float) -> None:
        """Jump to ``seconds`` (clamped to the film). Paused or ended, the film stays still
        and shows the frame there (at most ``LAST_FRAME_MARGIN_S`` before the end); playing,
        it plays on from there."""
        if self._player is None or self.path is None:
            return
        upper = self._duration if self._duration > 0 else max(seconds, 0.0)
        target = min(max(0.0, seconds), upper)
        if self._state in (PAUSED, ENDED) and self._duration > 0:
            target = min(target, max(0.0, self._duration - LAST_FRAME_MARGIN_S))
        if self._state == ENDED and self._vlc_paused():
            # --play-and-pause kept the last picture: seek there and stay paused
            self._player.set_time(int(target * 1000))
            self._set_state(PAUSED)
        elif self._state in (ENDED, STOPPED, ERROR):
            self._pending_seek = target
            self._pause_after_seek = self._state == ENDED
            self.play()
        elif not self._vlc_can_seek():
            self._pending_seek = target  # given to VLC by _poll once it can seek
        else:
            self._pending_seek = None  # a later seek replaces one still held
            self._player.set_time(int(target * 1000))  # taken even while VLC opens the film
        self._seek_target, self._seek_time = target, time.monotonic()
        self._position = target
        self.position_changed.emit(target)

    def seek_relative(self, delta_s: float) -> None:
        self.seek(self._position + delta_s)

    def next_frame(self) -> None:
        if self._player is not None and self.path is not None:
            self._player.next_frame()
            self._set_state(PAUSED)

    def set_volume(self, volume: int) -> None:
        self._volume = max(0, min(100, int(volume)))
        if self._muted and volume > 0:
            self._muted = False
        self._apply_audio()
        self.volume_changed.emit(self._volume, self._muted)
        self.message_posted.emit(f"Volume {self._volume}%")

    def change_volume(self, delta: int) -> None:
        self.set_volume(self._volume + delta)

    def toggle_mute(self) -> None:
        self._muted = not self._muted
        self._apply_audio()
        self.volume_changed.emit(self._volume, self._muted)
        self.message_posted.emit("Muted" if self._muted else f"Volume {self._volume}%")

    def set_rate(self, rate: float) -> None:
        self._rate = max(RATES[0], min(RATES[-1], float(rate)))
        if self._player is not None:
            self._player.set_rate(self._rate)
        self.rate_changed.emit(self._rate)
        self.message_posted.emit(f"Speed {self._rate:g}×")

    def step_rate(self, direction: int) -> None:
        """+1: the next faster speed, -1: the next slower one, 0: normal speed."""
        if direction == 0:
            self.set_rate(1.0)
        elif direction > 0:
            self.set_rate(next((r for r in RATES if r > self._rate + 1e-6), RATES[-1]))
        else:
            self.set_rate(next((r for r in reversed(RATES) if r < self._rate - 1e-6), RATES[0]))

    def _apply_audio(self) -> None:
        if self._player is not None:
            self._player.audio_set_volume(self._volume)
            self._player.audio_set_mute(self._muted)

    # ------------------------------------------------------------------ extras
    def snapshot(self, directory: str | Path) -> str | None:
        """Save the current frame as a PNG in ``directory``; its path, or None."""
        if self._player is None or self.path is None:
            return None
        Path(directory).mkdir(parents=True, exist_ok=True)
        stem = Path(self.path).stem
        target = Path(directory) / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.png"
        ok = self._player.video_take_snapshot(0, str(target), 0, 0) == 0 and target.is_file()
        self.message_posted.emit(f"Snapshot saved: {target}" if ok else "Snapshot failed")
        return str(target) if ok else None

    def add_subtitle(self, path: str | Path) -> bool:
        if self._player is None or self.path is None:
            return False
        import vlc

        uri = QUrl.fromLocalFile(real_path(path)).toString()  # no raise on a link loop
        ok = self._player.add_slave(vlc.MediaSlaveType.subtitle, uri, True) == 0
        self.message_posted.emit(
            f"Subtitles: {Path(path).name}" if ok else f"Cannot load subtitles {Path(path).name}"
        )
        return ok

    def cycle_subtitles(self) -> str:
        """Switch to the next subtitle track (or off); returns its name."""
        if self._player is None:
            return ""
        tracks = self._player.video_get_spu_description() or []
        if not tracks:
            self.message_posted.emit("No subtitles")
            return ""
        ids = [track_id for track_id, _ in tracks]
        current = self._player.video_get_spu()
        following = ids[(ids.index(current) + 1) % len(ids)] if current in ids else ids[0]
        self._player.video_set_spu(following)
        shown = [track_id for track_id in ids if track_id >= 0]  # VLC lists "Disable" as -1
        self.subtitle_track_changed.emit(shown.index(following) if following in shown else -1)
        name = dict(tracks)[following]
        text = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        self.message_posted.emit(f"Subtitles: {text}")
        return text

    # ------------------------------------------------------------------ polling
    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.state_changed.emit(state)

    def _poll(self) -> None:
        if self._player is None:
            return
        import vlc

        vlc_state = self._player.get_state()
        length = self._player.get_length()
        if length > 0 and abs(length / 1000 - self._duration) > 1e-3:
            self._duration = length / 1000
            self.duration_changed.emit(self._duration)
            self.position_changed.emit(self._position)  # the timeline's new range shows it
        mapped = {
            vlc.State.Opening: OPENING,
            vlc.State.Buffering: self._state,
            vlc.State.Playing: PLAYING,
            vlc.State.Paused: PAUSED,
            vlc.State.Ended: ENDED,
            vlc.State.Stopped: STOPPED,
            vlc.State.Error: ERROR,
        }.get(vlc_state, self._state)
        if (
            mapped == PAUSED
            and self._state in (PLAYING, ENDED)
            and self._at_end()
            and not self._seeking_away_from_end()  # VLC still reports the end: not again
        ):
            mapped = ENDED  # VLC paused by itself on the last frame (--play-and-pause)
        if self._pending_seek is not None and mapped in (PLAYING, PAUSED):
            mapped = self._apply_pending_seek(mapped)
        if mapped == PLAYING and self._state != PLAYING:
            self._apply_audio()  # the audio output exists only once playing
        self._set_state(mapped)
        if mapped == ENDED:
            self._seek_target = None  # the end, wherever the last seek went
            self._update_position(self._duration)
            return
        ms = self._player.get_time()
        if ms >= 0:
            self._update_position(ms / 1000)

    def _vlc_can_seek(self) -> bool:
        """VLC takes a seek now: it has an input (``play()`` made one) that can seek. Without
        one, libVLC drops ``set_time`` silently."""
        return self._player is not None and bool(self._player.is_seekable())

    def _apply_pending_seek(self, mapped: str) -> str:
        """Give VLC the seek held while it could not seek, once it can; the state to report."""
        if not self._vlc_can_seek():
            now = time.monotonic()
            if self._unseekable_since is None:
                self._unseekable_since = now
            elif now - self._unseekable_since > UNSEEKABLE_AFTER_S:  # never: a stream, say
                self._pending_seek, self._pause_after_seek = None, False
                self._unseekable_since = None
                self.message_posted.emit("VLC cannot jump to a time in this film")
            return mapped
        self._unseekable_since = None
        target = self._pending_seek or 0.0
        if self._duration > 0:
            target = min(target, self._duration)
        self._pending_seek = None
        self._player.set_time(int(target * 1000))
        # VLC's times from before the jump are stale from now on, not from when it was asked
        self._seek_target, self._seek_time = target, time.monotonic()
        if self._pause_after_seek:
            self._pause_after_seek = False
            self._player.set_pause(1)
            return PAUSED
        return mapped

    def _vlc_paused(self) -> bool:
        import vlc

        return self._player is not None and self._player.get_state() == vlc.State.Paused

    def _seeking_away_from_end(self) -> bool:
        """A seek to before the end that VLC has not reported reaching yet."""
        return (
            self._seek_target is not None
            and self._seek_target < self._duration - END_WINDOW_S
            and time.monotonic() - self._seek_time < 2 * SEEK_SETTLE_S
        )

    def _at_end(self) -> bool:
        if self._player is None or self._duration <= 0:
            return False
        return self._duration - self._player.get_time() / 1000 < END_WINDOW_S

    def _update_position(self, seconds: float) -> None:
        if self._pending_seek is not None:
            return  # VLC's time is from before the seek it has not been given yet
        if self._seek_target is not None:
            # VLC echoes the exact time asked for before it has got there: not an arrival
            echo = round(seconds * 1000) == int(self._seek_target * 1000)
            arrived = abs(seconds - self._seek_target) < 1.0 and not echo
            if not arrived and time.monotonic() - self._seek_time < SEEK_HOLD_MAX_S:
                return
            self._seek_target = None
        if abs(seconds - self._position) > 1e-3:
            self._position = seconds
            self.position_changed.emit(seconds)
