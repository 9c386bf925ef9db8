"""Where the open film's dialogue comes from, and the dialogue itself (DESIGN §9, issue #11).

``source="auto"`` takes the first of: the subtitle track the player shows, a subtitle file the
user added, a sidecar file next to the film, the container's default text track, and speech
recognition (only when its model is installed: auto never starts a download). A named source
(the user's pick in the Dialogue tab or Settings) is used alone. Text subtitles are parsed once
and kept; speech grows chunk by chunk through ``step``. Nothing here raises while the film opens:
a broken sidecar is skipped (and named in the label when nothing else is found); an explicit
pick that cannot be used raises ``DialogueError`` from ``choose``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moviechat_desktop.engine.dialogue.lines import SOURCES, Dialogue
from moviechat_desktop.engine.errors import DialogueError, MovieChatError

if TYPE_CHECKING:
    from moviechat_desktop.engine.dialogue.embedded import SubtitleTrack
    from moviechat_desktop.engine.dialogue.speech import SpeechModel
    from moviechat_desktop.engine.dialogue.speech_session import SpeechSession
    from moviechat_desktop.engine.dialogue.subtitle_file import ParsedSubtitles
    from moviechat_desktop.engine.progress import CancelToken
    from moviechat_desktop.engine.settings import DialogueSettings
    from moviechat_desktop.engine.video.probe import VideoInfo

log = logging.getLogger(__name__)

CHOICES = ("auto", *SOURCES)


@dataclass(frozen=True)
class SpeechProgress:
    done_s: float = 0.0
    total_s: float = 0.0
    covered: tuple[tuple[float, float], ...] = ()
    error: str | None = None


class FilmDialogue:
    """The dialogue of one open film (see module docstring)."""

    def __init__(
        self,
        info: VideoInfo,
        film_id: str | None,
        settings: DialogueSettings,
        *,
        speech_model: SpeechModel | None = None,
        load_speech_model: Callable[[], SpeechModel] | None = None,
        added: ParsedSubtitles | None = None,
        added_path: Path | None = None,
    ) -> None:
        self.info = info
        self.film_id = film_id
        self.settings = settings
        self._speech_model = speech_model
        self._load_speech_model = load_speech_model  # () -> SpeechModel, raises if unavailable
        self.added_path = added_path
        self._added = added
        self.pick = settings.source if settings.source in CHOICES else "auto"
        self.shown_track: int | None = None  # the player's subtitle track (0:s:N), or None
        self._tracks: list[SubtitleTrack] | None = None
        self._parsed: dict[str, ParsedSubtitles] = {}
        self._speech: SpeechSession | None = None
        self._current: Dialogue | None = None
        self.notes: list[str] = []  # why sources were skipped (the label of "none" shows them)

    # ------------------------------------------------------------------ sources
    def tracks(self) -> list[SubtitleTrack]:
        if self._tracks is None:
            from moviechat_desktop.engine.dialogue.embedded import list_subtitle_tracks

            self._tracks = list_subtitle_tracks(self.info.path)
        return self._tracks

    def _language(self) -> str:
        from moviechat_desktop.engine.dialogue.sidecars import user_language

        return user_language(self.settings.language)

    def add_file(self, path: str | Path) -> None:
        """Use this subtitle file (File ▸ Add Subtitle File, ``--subtitles``). ``DialogueError``."""
        from moviechat_desktop.engine.dialogue.subtitle_file import read_subtitle_file

        path = Path(path).expanduser()
        from moviechat_desktop.engine.dialogue.sidecars import describe_tags

        tags = describe_tags(path.name.split(".")[1:-1])
        language = (tags[0] if tags else "") or self._language()
        parsed = read_subtitle_file(path, self.info.duration_s, self.info.fps, language)
        self._added, self.added_path = parsed, path
        self._current = None

    def _file(self) -> Dialogue:
        if self._added is None or self.added_path is None:
            raise DialogueError("no subtitle file was added for this film")
        return Dialogue("file", f"Subtitles: {self.added_path.name}", self._added.lines, self._end)

    @property
    def _end(self) -> float:
        return self.info.duration_s

    def _sidecar(self) -> Dialogue:
        from moviechat_desktop.engine.dialogue.sidecars import find_sidecars
        from moviechat_desktop.engine.dialogue.subtitle_file import read_subtitle_file

        found = find_sidecars(self.info.path, self._language())
        if not found:
            raise DialogueError(f"there is no subtitle file next to {self.info.path.name}")
        problems = []
        for sidecar in found:
            key = f"sidecar:{sidecar.path}"
            try:
                if key not in self._parsed:
                    self._parsed[key] = read_subtitle_file(
                        sidecar.path,
                        self.info.duration_s,
                        self.info.fps,
                        sidecar.language or self._language(),
                    )
            except DialogueError as err:
                problems.append(str(err))
                continue
            name = sidecar.path.name
            return Dialogue("sidecar", f"Subtitles: {name}", self._parsed[key].lines, self._end)
        raise DialogueError("; ".join(problems))

    def _embedded(self, number: int | None) -> Dialogue:
        from moviechat_desktop.engine.dialogue.embedded import default_track, extract_track

        tracks = self.tracks()
        if number is None:
            track = default_track(tracks, self._language())
            if track is None:
                if tracks:
                    from moviechat_desktop.engine.dialogue.embedded import bitmap_message

                    raise DialogueError(bitmap_message(tracks[0]))
                raise DialogueError(f"{self.info.path.name} has no subtitle track inside")
        elif 0 <= number < len(tracks):
            track = tracks[number]
        else:
            raise DialogueError(
                f"{self.info.path.name} has no subtitle track {number + 1} "
                f"({len(tracks)} subtitle track{'s' if len(tracks) != 1 else ''})"
            )
        key = f"embedded:{track.number}"
        if key not in self._parsed:
            self._parsed[key] = extract_track(self.info.path, track, self.info.duration_s)
        return Dialogue("embedded", track.label, self._parsed[key].lines, self._end)

    def _speech_session(self) -> SpeechSession:
        if self._speech is None:
            if self.info.has_audio is False:
                raise DialogueError(
                    f"{self.info.path.name} has no audio track: there is no speech to recognise"
                )
            from moviechat_desktop.engine.dialogue.speech_session import SpeechSession

            model = self._speech_model
            if model is None:
                if self._load_speech_model is None:
                    raise DialogueError("speech recognition is not available here")
                model = self._speech_model = self._load_speech_model()
            self._speech = SpeechSession(
                self.info.path,
                self.film_id,
                self.info.duration_s,
                model,
                language=self.settings.language,
            )
        return self._speech

    def _speech_dialogue(self) -> Dialogue:
        session = self._speech_session()
        if session.error is not None:
            label = f"Speech: stopped at {session.fraction:.0%} — {session.error}"
        elif session.finished:
            label = "Speech: recognised"
        else:
            label = f"Speech: {session.fraction:.0%} recognised"
        return Dialogue("speech", label, session.lines(), session.complete_until_s)

    def _from(self, source: str) -> Dialogue:
        if source == "file":
            return self._file()
        if source == "sidecar":
            return self._sidecar()
        if source == "embedded":
            return self._embedded(self.shown_track)
        if source == "speech":
            return self._speech_dialogue()
        return Dialogue.none("No dialogue (switched off for this film)")

    def _auto(self) -> Dialogue:
        self.notes = []
        attempts = []
        if self.shown_track is not None:
            attempts.append(lambda: self._embedded(self.shown_track))
        if self._added is not None:
            attempts.append(self._file)
        attempts += [self._sidecar, lambda: self._embedded(None)]
        for attempt in attempts:
            try:
                return attempt()
            except DialogueError as err:
                self.notes.append(str(err))
        if self._speech is not None or self._speech_possible():
            try:
                return self._speech_dialogue()
            except MovieChatError as err:
                self.notes.append(str(err))
        return Dialogue.none(_none_label(self.notes))

    def _speech_possible(self) -> bool:
        if self.info.has_audio is False:
            self.notes.append(f"{self.info.path.name} has no audio track")
            return False
        from moviechat_desktop.engine.dialogue.speech import speech_unavailable

        why = speech_unavailable(self.settings.speech_model)
        if why is not None:
            self.notes.append(why)
        return why is None

    # ------------------------------------------------------------------ public
    def current(self) -> Dialogue:
        """The dialogue to use now. The first call settles the source (listing sidecars and
        tracks, extracting one: a fraction of a second, done by ``Assistant.open``); later
        calls are cheap (speech, which grows, is re-read from memory)."""
        if not self.settings.enabled:
            return Dialogue.none("Dialogue is switched off in Settings")
        if self._current is None:
            self._current = self._resolve(strict=False)
        elif self._current.source == "speech" and self._speech is not None:
            self._current = self._speech_dialogue()
        return self._current

    def _resolve(self, strict: bool) -> Dialogue:
        if self.pick == "auto":
            return self._auto()
        try:
            return self._from(self.pick)
        except MovieChatError as err:
            if strict:
                raise
            self.notes = [str(err)]
            return Dialogue.none(_none_label(self.notes))

    def choose(
        self, source: str = "auto", file: str | Path | None = None, track: int | None = None
    ) -> Dialogue:
        """The user's pick; see ``Assistant.set_dialogue_source``. ``DialogueError``."""
        if source not in CHOICES:
            raise DialogueError(f"unknown dialogue source {source!r} (one of {', '.join(CHOICES)})")
        before = (self.pick, self.shown_track, self._added, self.added_path, self._current)
        try:
            if file is not None:
                self.add_file(file)
            if track is not None:
                self.shown_track = None if track < 0 else int(track)
            self.pick = source
            self._current = self._resolve(strict=True)
        except MovieChatError:  # the previous choice stays as it was
            self.pick, self.shown_track, self._added, self.added_path, self._current = before
            raise
        return self._current if self.settings.enabled else self.current()

    def step(self, cancel: CancelToken | None = None) -> bool:
        """One chunk of speech recognition when speech is the source; False when none is left."""
        if not self.settings.enabled:
            return False
        if self.current().source != "speech" or self._speech is None:
            return False
        return self._speech.step(cancel)

    def speech_pending(self) -> bool:
        """True when speech is the source and chunks remain to be recognised."""
        if not self.settings.enabled or self.current().source != "speech":
            return False
        s = self._speech
        return s is not None and s.error is None and not s.finished

    def speech_progress(self) -> SpeechProgress:
        if self._speech is None:
            return SpeechProgress()
        s = self._speech
        return SpeechProgress(s.done_s, s.duration_s, s.covered(), s.error)

    @property
    def speech(self) -> SpeechSession | None:
        return self._speech


def _none_label(notes: list[str]) -> str:
    if not notes:
        return "No dialogue"
    return "No dialogue: " + notes[-1] if len(notes) == 1 else "No dialogue: " + "; ".join(notes)


def speech_status_fields(dialogue: Any) -> dict[str, Any]:
    """The speech fields of an engine's ``EncodeStatus`` (none unless speech is used), from a
    film's dialogue: ``FilmDialogue`` or the server's ``ServedDialogue`` (``speech_pending()``,
    ``speech``, ``speech_progress()``)."""
    pending = dialogue.speech_pending()  # settles the source on the first call
    if dialogue.speech is None:
        return {}
    progress = dialogue.speech_progress()
    return {
        "speech_done_s": progress.done_s,
        "speech_total_s": progress.total_s,
        "speech_covered": progress.covered,
        "speech_pending": pending,
        "speech_error": progress.error,
    }
