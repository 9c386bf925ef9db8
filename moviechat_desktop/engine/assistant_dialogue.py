"""The ``Assistant``'s link to the open film's dialogue (``dialogue/film_dialogue.py``): the
settings it follows, choosing its source, speech recognition steps, and the dialogue a
prompt gets.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from moviechat_desktop.engine.errors import NotReady
from moviechat_desktop.engine.progress import CancelToken

if TYPE_CHECKING:
    from moviechat_desktop.engine.dialogue.embedded import SubtitleTrack
    from moviechat_desktop.engine.dialogue.lines import Dialogue
    from moviechat_desktop.engine.dialogue.speech import SpeechModel
    from moviechat_desktop.engine.settings import AppSettings
    from moviechat_desktop.engine.video.frames import VideoInfo


class AssistantDialogue:
    """Part of ``Assistant`` (engine/assistant.py), whose ``__init__`` sets the state used here."""

    @property
    def settings(self) -> AppSettings:
        return self._settings

    @settings.setter
    def settings(self, value: AppSettings) -> None:
        """New settings (the window replaces them): the open film's dialogue follows at once
        (e.g. "Use dialogue" switched off hides its lines and pauses speech recognition)."""
        self._settings = value
        film_dialogue = getattr(self, "_dialogue", None)
        if film_dialogue is not None:
            film_dialogue.settings = value.dialogue

    @property
    def dialogue(self) -> Dialogue:
        """The open film's dialogue now (``Dialogue.none()`` when none, off, or no film)."""
        from moviechat_desktop.engine.dialogue.lines import Dialogue

        if self._dialogue is None:
            return Dialogue.none("No film is open")
        return self._dialogue.current()

    def set_dialogue_source(
        self, source: str = "auto", file: str | Path | None = None, track: int | None = None
    ) -> Dialogue:
        """Choose where the open film's dialogue comes from; return the dialogue now.

        ``source``: "auto" (the player's track, an added file, a sidecar, the default embedded
        track, speech), or one of "file", "sidecar", "embedded", "speech", "none". ``file``: a
        subtitle file the user added (remembered for the film). ``track``: the subtitle track
        the player shows, as an index among the container's subtitle streams in ffprobe's
        order (-1: the player shows none; None: unchanged). Raises ``DialogueError`` when the
        choice cannot be used (the file or track is unreadable, no sidecar exists…).
        """
        if self._dialogue is None:
            raise NotReady("no film is open")
        return self._dialogue.choose(source, file=file, track=track)

    def subtitle_tracks(self) -> list[SubtitleTrack]:
        """The open film's subtitle streams (``.text`` False for bitmap ones), ffprobe's order."""
        return [] if self._dialogue is None else list(self._dialogue.tracks())

    def use_dialogue(self, film_dialogue: Any) -> None:
        """Take the open film's dialogue from ``film_dialogue`` (``FilmDialogue``'s methods):
        a film opened with ``open_uploaded`` on a server, whose client sends the dialogue
        (``service/served_dialogue.py``)."""
        self._require_film()
        self._dialogue = film_dialogue

    def dialogue_step(self, cancel: CancelToken | None = None) -> bool:
        """Recognise the next ~30 s of speech when speech is the source; False when none left.

        Raises ``DialogueError`` once when the audio cannot be decoded (False after that).
        """
        if self._dialogue is None:
            return False
        return self._dialogue.step(cancel)

    def _load_speech_model(self) -> SpeechModel:
        from moviechat_desktop.engine.dialogue.speech import SpeechModel, resolve_speech_model

        folder = resolve_speech_model(self.settings.dialogue.speech_model)
        if self._speech_model is None or self._speech_model.folder != folder:
            self._speech_model = SpeechModel(folder, device=self.settings.model.device)
        return self._speech_model

    def _open_dialogue(self, info: VideoInfo, added: Any, added_path: Path | None) -> None:
        from moviechat_desktop.engine.dialogue.film_dialogue import FilmDialogue

        self._dialogue = FilmDialogue(
            info,
            self.film_id,
            self.settings.dialogue,
            speech_model=self._speech_model,
            load_speech_model=self._load_speech_model,
            added=added,
            added_path=added_path if added is not None else None,
        )
        self._dialogue.current()  # settle the source now, so status() stays cheap

    def _question_dialogue(self) -> Dialogue:
        """The open film's dialogue for a prompt: none when switched off in the settings."""
        from moviechat_desktop.engine.dialogue.lines import Dialogue

        if not self.settings.dialogue.enabled:
            return Dialogue.none("Dialogue is switched off in Settings")
        return self.dialogue
