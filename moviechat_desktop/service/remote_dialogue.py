"""The remote engine client's side of the film's dialogue: resolved here, sent to the server.

The client has the film, so it settles where the dialogue comes from with the desktop's own
rules (``FilmDialogue``: the user's pick, the player's track, an added file, a sidecar, the
default embedded track, then speech) and sends the server what the prompt needs
(``dialogue_wire``): the cleaned timed lines once per film and choice, not with every
question; the server keeps them with the film and builds the prompt there (the breakpoint's
no-spoiler cut and the BM25 selection run where the prompt is built).

Speech is recognised on the server (it has the model): ``RemoteSpeech`` cuts the film's audio
into the same 30-s chunks as the desktop, encodes each as Ogg Opus here
(``audio_opus.encode_opus``) and uploads it; the server answers with the chunk's lines, which
the window shows as they come. It first asks the server what it has already recognised (its
per-film cache): a reconnecting or second client uploads only the chunks still missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moviechat_desktop.engine.dialogue.film_dialogue import FilmDialogue
from moviechat_desktop.engine.dialogue.lines import Dialogue
from moviechat_desktop.engine.dialogue.speech_cache import SpeechTranscript
from moviechat_desktop.engine.dialogue.speech_session import CHUNK_S, SpeechChunks
from moviechat_desktop.engine.errors import Cancelled, DialogueError, MovieChatError
from moviechat_desktop.service import dialogue_wire as dwire
from moviechat_desktop.service.remote_wire import WireError

if TYPE_CHECKING:
    from moviechat_desktop.engine.dialogue.subtitle_file import ParsedSubtitles
    from moviechat_desktop.engine.progress import CancelToken
    from moviechat_desktop.engine.settings import DialogueSettings
    from moviechat_desktop.engine.video.probe import VideoInfo

log = logging.getLogger(__name__)

# (method, path, keyword arguments) -> the server's JSON reply; raises its errors
Request = Callable[..., Any]


class RemoteSpeech(SpeechChunks):
    """Speech recognised on the server from audio this client uploads (see module docstring).
    The same progress as a local ``SpeechSession``; the transcript lives in memory here (the
    server keeps the saved one)."""

    def __init__(self, request: Request, film_path: str, info: VideoInfo, language: str) -> None:
        transcript = SpeechTranscript({"film": "remote", "source": "speech"}, persist=False)
        super().__init__(info.path, info.duration_s, transcript, language)
        self._request = request
        self._film_path = film_path  # "/films/{id}"
        self.bytes_uploaded = 0
        self.body = dwire.speech_body(self.language_setting, CHUNK_S)
        self.start()

    def start(self) -> None:
        """Make speech the film's dialogue on the server and take what it has recognised."""
        state = self._request("PUT", f"{self._film_path}/dialogue", json=self.body)
        speech = state.get("speech") if isinstance(state, dict) else None
        if not isinstance(speech, dict):
            raise DialogueError("the server did not start speech recognition")
        try:
            chunks = dwire.chunks_from_wire(speech.get("chunks"), self.n_chunks, self.duration_s)
        except WireError as err:
            raise DialogueError(f"the server sent malformed speech: {err}") from None
        for index, lines in chunks.items():
            self.transcript.add(index, lines, str(speech.get("language") or ""))

    def step(self, cancel: CancelToken | None = None) -> bool:
        """Encode the next chunk's audio, upload it, take its lines; False when none is left."""
        from moviechat_desktop.engine.dialogue.audio_opus import CONTENT_TYPE, encode_opus

        if self.error is not None:
            return False
        index = self.next_chunk()
        if index is None:
            return False
        if cancel is not None:
            cancel.raise_if_cancelled()
        start, length = self.chunk_span(index)
        t0 = time.perf_counter()
        try:
            audio = encode_opus(self.film, start, length)
            self.bytes_uploaded += len(audio)
            reply = self._request(
                "PUT",
                f"{self._film_path}/speech/{index}",
                content=audio,
                params={"language": self.language_setting},
                headers={"Content-Type": CONTENT_TYPE},
            )
            if not isinstance(reply, dict) or reply.get("index") != index:
                raise DialogueError("the server sent a malformed speech reply")
            try:
                lines = dwire.lines_from_wire(reply.get("lines"), self.duration_s)
            except WireError as err:
                raise DialogueError(f"the server sent malformed speech: {err}") from None
        except Cancelled:
            raise
        except MovieChatError as err:  # no audio, the server refused the chunk, no model there
            self.error = str(err)
            raise DialogueError(str(err)) from None
        self._done(index, lines, str(reply.get("language") or ""), t0)
        return True


class ClientFilmDialogue(FilmDialogue):
    """``FilmDialogue`` whose speech is recognised on the server (``RemoteSpeech``)."""

    def __init__(
        self,
        info: VideoInfo,
        settings: DialogueSettings,
        request: Request,
        film_path: str,
        speech_unavailable: Callable[[], str | None],
        *,
        added: ParsedSubtitles | None = None,
        added_path: Path | None = None,
    ) -> None:
        super().__init__(info, None, settings, added=added, added_path=added_path)
        self._request = request
        self._film_path = film_path
        self._server_speech_unavailable = speech_unavailable

    def _speech_session(self) -> Any:
        if self._speech is None:
            if self.info.has_audio is False:
                raise DialogueError(
                    f"{self.info.path.name} has no audio track: there is no speech to recognise"
                )
            why = self._server_speech_unavailable()
            if why is not None:
                raise DialogueError(why)
            language = self.settings.language or "auto"
            self._speech = RemoteSpeech(  # type: ignore[assignment]
                self._request, self._film_path, self.info, language
            )
        return self._speech

    def _speech_possible(self) -> bool:
        if self.info.has_audio is False:
            self.notes.append(f"{self.info.path.name} has no audio track")
            return False
        why = self._server_speech_unavailable()
        if why is not None:
            self.notes.append(why)
        return why is None


class RemoteDialogue:
    """The open film's dialogue on a remote engine's client: what the window reads, what the
    server holds (``sync``), and the speech uploads (``step``)."""

    def __init__(self, film_dialogue: ClientFilmDialogue, request: Request, film_path: str):
        self.film = film_dialogue
        self._request = request
        self._film_path = film_path
        self.sent_id: str | None = None  # what the server holds (dialogue_wire's id)

    def current(self) -> Dialogue:
        return self.film.current()

    def sync(self, force: bool = False) -> str:
        """Send the dialogue the prompt should use when the server does not hold it yet;
        its id (questions name it)."""
        dialogue = self.film.current()
        speech = self.film.speech
        if dialogue.source == "speech" and isinstance(speech, RemoteSpeech):
            if force or self.sent_id != speech.body["id"]:
                speech.start()
                self.sent_id = speech.body["id"]
            return self.sent_id
        body = dwire.text_body(dialogue)
        if force or self.sent_id != body["id"]:
            self._request("PUT", f"{self._film_path}/dialogue", json=body)
            self.sent_id = body["id"]
        return body["id"]

    def choose(self, source: str, file: str | Path | None, track: int | None) -> Dialogue:
        return self.film.choose(source, file=file, track=track)

    def step(self, cancel: CancelToken | None = None) -> bool:
        return self.film.step(cancel)

    def status_fields(self) -> dict[str, Any]:
        """The speech fields of ``EncodeStatus`` (as the desktop's)."""
        from moviechat_desktop.engine.dialogue.film_dialogue import speech_status_fields

        return speech_status_fields(self.film)
