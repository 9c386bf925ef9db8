"""The server side of the film's dialogue: the lines a client sent, or speech recognised here.

The client resolves where the dialogue comes from (it has the film) and sends either its
cleaned timed lines or, for speech, the audio chunk by chunk as Ogg Opus
(``service/dialogue_wire.py``). ``ServedDialogue`` then stands in for ``FilmDialogue`` in the
film's ``Assistant`` (``Assistant.use_dialogue``), so the prompt is built here exactly as on a
desktop: the breakpoint's no-spoiler cut and the BM25 selection run where the prompt is built.

Speech is recognised with the server's own model (its ``[dialogue] speech_model``) into the
server's per-film transcript cache (``speech_cache``: film fingerprint + model + language +
chunk length), so a reconnecting or second client gets the recognised lines back at once and
only uploads the chunks still missing. A missing model is the server's clear message.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moviechat_desktop.engine.dialogue.film_dialogue import SpeechProgress
from moviechat_desktop.engine.dialogue.lines import Dialogue
from moviechat_desktop.engine.errors import DialogueError, MovieChatError, WeightsMissing
from moviechat_desktop.service import dialogue_wire as dwire
from moviechat_desktop.service.remote_wire import WireError

if TYPE_CHECKING:
    from moviechat_desktop.engine.dialogue.speech import SpeechModel
    from moviechat_desktop.engine.dialogue.speech_session import SpeechSession
    from moviechat_desktop.engine.progress import CancelToken
    from moviechat_desktop.engine.settings import DialogueSettings

log = logging.getLogger(__name__)

NOT_SENT = "No dialogue (the client sent none)"


class SpeechModels:
    """The server's speech model, loaded on the first chunk and shared by every film."""

    def __init__(self, speech_model: Callable[[], str], device: str = "auto") -> None:
        self._setting = speech_model
        self._device = device
        self._model: SpeechModel | None = None

    def unavailable(self) -> str | None:
        """Why this server cannot recognise speech (a sentence), or None."""
        from moviechat_desktop.engine.dialogue.speech import speech_unavailable

        why = speech_unavailable(self._setting())
        return None if why is None else f"the server cannot recognise speech: {why}"

    def get(self) -> SpeechModel:
        from moviechat_desktop.engine.dialogue.speech import SpeechModel, resolve_speech_model

        try:
            folder = resolve_speech_model(self._setting())
        except MovieChatError as err:
            raise WeightsMissing(f"the server cannot recognise speech: {err}") from None
        if self._model is None or self._model.folder != folder:
            self._model = SpeechModel(folder, device=self._device)
        return self._model


class ServedDialogue:
    """One uploaded film's dialogue, in the shape ``Assistant`` uses ``FilmDialogue``."""

    def __init__(
        self,
        name: str,
        film_id: str,
        duration_s: float,
        settings: DialogueSettings,
        models: SpeechModels,
    ) -> None:
        self.name = name
        self.film_id = film_id
        self.duration_s = duration_s
        self.settings = settings  # the server's [dialogue] settings (Assistant.settings sets it)
        self._models = models
        self.id: str | None = None  # what the client last sent (dialogue_wire)
        self._text: Dialogue = Dialogue.none(NOT_SENT)
        self._speech: SpeechSession | None = None
        self._speaking = False  # speech is the current dialogue

    # ------------------------------------------------------------------ what the client sends
    def put(self, body: Any) -> dict[str, Any]:
        """The client's choice: text lines, or speech recognised here. Its state."""
        if not isinstance(body, dict):
            raise WireError("the dialogue must be an object")
        dialogue_id = dwire.check_id(body.get("id"))
        if body.get("source") == "speech":
            self.speech_session(body.get("language"), body.get("chunk_s"))
            self._speaking = True
        else:
            self._text = dwire.text_from_wire(body, self.duration_s)
            self._speaking = False
        self.id = dialogue_id
        return self.state()

    def speech_session(self, language: Any, chunk_s: Any) -> SpeechSession:
        """The film's speech session for ``language`` (made, with its cached chunks, when the
        language changes); ``WeightsMissing`` when this server has no speech model."""
        from moviechat_desktop.engine.dialogue.speech_session import CHUNK_S, SpeechSession

        language = dwire.language_from_wire(language)
        if chunk_s != CHUNK_S:
            raise WireError(f"speech travels in {CHUNK_S:g}-s chunks; this client sent {chunk_s}")
        if self._speech is None or self._speech.language_setting != language:
            self._speech = SpeechSession(
                Path(self.name),
                self.film_id,
                self.duration_s,
                self._models.get(),
                language=language,
            )
        return self._speech

    def recognise(
        self, index: int, audio: bytes, language: Any, cancel: CancelToken | None = None
    ) -> dict[str, Any]:
        """Recognise chunk ``index`` from its Ogg Opus upload (a chunk already recognised, by
        this client before a reconnect or by another one, is not recognised again)."""
        from moviechat_desktop.engine.dialogue.audio_opus import AudioUploadError, decode_opus
        from moviechat_desktop.engine.dialogue.speech_session import CHUNK_S

        session = self.speech_session(language, CHUNK_S)
        if not 0 <= index < session.n_chunks:
            raise WireError(f"speech chunk {index} is outside 0..{session.n_chunks - 1}")
        try:  # checked even when the chunk is known: a bad upload is always told
            samples = decode_opus(audio, session.chunk_span(index)[1] + 1.0)
        except AudioUploadError as err:
            raise WireError(str(err)) from None
        if index not in session.transcript.chunks:
            try:
                session.recognise_chunk(index, samples, cancel)
            finally:
                session.error = None  # one chunk's failure is told to the client, who stops
        return {
            "index": index,
            "lines": [dwire.line_to_wire(line) for line in session.transcript.chunks[index]],
            "language": session.transcript.language,
            "save_error": session.transcript.save_error,
        }

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"id": self.id, "source": self.current().source}
        if self._speaking and self._speech is not None:
            state["speech"] = {
                "language": self._speech.transcript.language,
                "chunks": dwire.chunks_to_wire(self._speech.transcript.chunks),
                "model": self._speech.model.folder.name,
            }
        else:
            state["lines"] = len(self._text.lines)
        return state

    # ------------------------------------------------------------------ FilmDialogue's shape
    def current(self) -> Dialogue:
        if not self.settings.enabled:
            return Dialogue.none("Dialogue is switched off on the server")
        if self._speaking and self._speech is not None:
            s = self._speech
            label = "Speech: recognised" if s.finished else f"Speech: {s.fraction:.0%} recognised"
            return Dialogue("speech", label, s.lines(), s.complete_until_s)
        return self._text

    def choose(self, source: str = "auto", file: Any = None, track: Any = None) -> Dialogue:
        raise DialogueError("the dialogue of an uploaded film is chosen by its client")

    def tracks(self) -> list:
        return []

    def step(self, cancel: CancelToken | None = None) -> bool:
        return False  # speech here advances as the client uploads its audio

    def speech_pending(self) -> bool:
        return False

    def speech_progress(self) -> SpeechProgress:
        return SpeechProgress()

    @property
    def speech(self) -> None:
        return None  # the client reports speech progress (it drives the uploads)


# which ServedDialogue each uploaded film's Assistant holds (gone with the Assistant)
_SERVED: weakref.WeakKeyDictionary[Any, ServedDialogue] = weakref.WeakKeyDictionary()


def dialogue_for(assistant: Any, models: SpeechModels) -> ServedDialogue:
    """The uploaded film's ``ServedDialogue``, given to its Assistant on first use."""
    served = _SERVED.get(assistant)
    if served is None:
        info = assistant.video
        if info is None or assistant.film_id is None:
            raise WireError("the film is not open")
        served = ServedDialogue(
            info.path.name, assistant.film_id, info.duration_s, assistant.settings.dialogue, models
        )
        assistant.use_dialogue(served)
        _SERVED[assistant] = served
    return served


def check_question_dialogue(assistant: Any, wanted: Any) -> None:
    """A question names the dialogue its client sent (``id``); another one here (the film was
    reopened, another client changed it) is ``DialogueMissing`` (the client sends it again)."""
    if wanted is None:
        return
    served = _SERVED.get(assistant)
    if dwire.check_id(wanted) != (served.id if served is not None else None):
        raise dwire.DialogueMissing("the server does not hold this film's dialogue: send it")
