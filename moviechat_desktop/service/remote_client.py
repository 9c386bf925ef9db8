"""``RemoteEngine``: the client API (``api.EngineClient``) spoken to a MovieChat server over HTTP.

The film stays on this computer. ``open`` probes and fingerprints it here and sends the server
its description and sampling plan; ``encode_step`` decodes the next fragment's frames here (at
the model's input size), compresses them (``remote_wire``) and uploads them; a breakpoint
question carries the picture on screen at that moment. The film's dialogue is resolved here
too and sent once per film and choice: subtitle lines as text, speech as Ogg Opus audio chunks
recognised on the server (``remote_dialogue``). Every question carries the generation settings
(the window's, or its own). The server keeps the memory (in its cache, under the film's
fingerprint), the conversations, the recognised speech and the model.

A server that lost the film (restarted, another replica, evicted) answers 404: the client opens
the film again (the memory comes back from the server's cache) and repeats the request (a few
times at most: see REOPEN_ATTEMPTS).
Network trouble, a refused token and a server that dies mid-answer are ``ServerError``s with a
one-line message. Owned by one thread; ``interrupt`` may come from another.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from moviechat_desktop.engine.assistant import END_SLACK_S, AnswerInfo, EncodeStatus
from moviechat_desktop.engine.dialogue.lines import SOURCES as DIALOGUE_SOURCES
from moviechat_desktop.engine.dialogue.lines import Dialogue
from moviechat_desktop.engine.errors import MovieChatError, NotReady, VideoDecodeError, VideoError
from moviechat_desktop.engine.progress import BackgroundTurns
from moviechat_desktop.engine.settings import AppSettings, load_settings, user_config_dir
from moviechat_desktop.engine.store.chat_history import ChatRecord, ConversationSummary
from moviechat_desktop.engine.store.film_cache import ClearResult
from moviechat_desktop.service import remote_wire as wire
from moviechat_desktop.service.api import EngineError, EngineStopped, RemoteError

if TYPE_CHECKING:
    from moviechat_desktop.engine.model.llm import GenerationSettings
    from moviechat_desktop.engine.progress import CancelToken
    from moviechat_desktop.engine.video.probe import VideoInfo
    from moviechat_desktop.engine.video.sampling import SamplingPlan
    from moviechat_desktop.service.remote_dialogue import RemoteDialogue
    from moviechat_desktop.service.remote_frames import ClientFrames

log = logging.getLogger(__name__)
# A film the server lost is opened again and the request repeated: the reopen lands on one
# replica, and right after a restart Serve may route the repeat to another that has not got the
# film yet (affinity is a preference), so a few attempts, each opening it where it went.
REOPEN_ATTEMPTS = 4

TOKEN_FILE_NAME = "server-token"
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 600.0  # one fragment on a slow server, or the model loading after a restart


class ServerError(EngineError):
    """The server cannot be reached, refused the request, or broke off."""


class Unauthorized(ServerError):
    """The server refused the bearer token (HTTP 401)."""


def default_token_file() -> Path:
    return user_config_dir() / TOKEN_FILE_NAME


def read_token(token_file: str | Path | None = None) -> str:
    """The bearer token from ``token_file`` (default: ``server-token`` in the config dir)."""
    path = Path(token_file) if token_file else default_token_file()
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ServerError(
            f"no server token at {path}: copy the server's token file here or pass --token-file"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ServerError(f"cannot read the server token {path}: {err}") from None
    if not token or any(c.isspace() for c in token):
        raise ServerError(f"{path} does not hold a token (one line, no spaces)")
    return token


def check_server_url(url: str) -> str:
    """``http(s)://host[:port]`` without a trailing slash; ``ServerError`` otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServerError(f"{url!r} is not a server address like http://HOST:8000")
    return url.strip().rstrip("/")


class RemoteEngine(BackgroundTurns):
    """The engine on a MovieChat server (see module docstring)."""

    def __init__(
        self,
        server_url: str,
        token_file: str | Path | None = None,
        settings: AppSettings | None = None,
        *,
        use_cache: bool = True,
        http: httpx.Client | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.use_cache = use_cache  # False: the server neither reads nor writes this film's cache
        self.server_url = check_server_url(server_url)
        token = read_token(token_file)
        self._http = http or httpx.Client(
            base_url=self.server_url,
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
        )
        self._http.headers["Authorization"] = f"Bearer {token}"
        self._server: dict[str, Any] | None = None  # GET /info
        self._video: VideoInfo | None = None
        self._plan: SamplingPlan | None = None
        self._film_id: str | None = None
        self._open_body: dict[str, Any] | None = None
        self._state: dict[str, Any] = {}
        self._frames: ClientFrames | None = None
        self._prepared_picture: tuple[tuple, bytes] | None = None  # prepare_breakpoint's
        self._gaps: dict[int, str] = {}  # fragments this client could not decode: why
        self._recent_fps = 0.0
        self._encode_seconds = 0.0
        self.load_seconds = 0.0
        self.last_answer = AnswerInfo()
        self.bytes_uploaded = 0  # frames and breakpoint pictures sent, for the bench
        self._lock = threading.Lock()
        self._response: httpx.Response | None = None  # the answer being streamed
        self._stopped = False
        self._dialogue: RemoteDialogue | None = None  # the open film's (service/remote_dialogue)

    @property
    def settings(self) -> AppSettings:
        return self._settings

    @settings.setter
    def settings(self, value: AppSettings) -> None:
        """New settings (the window replaces them): generation settings travel with the next
        question; the open film's dialogue follows at once (as ``Assistant.settings``)."""
        self._settings = value
        dialogue = getattr(self, "_dialogue", None)
        if dialogue is not None:
            dialogue.film.settings = value.dialogue

    # ------------------------------------------------------------------ transport
    def _request(
        self, method: str, path: str, *, retry_open: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """One request; a film the server lost is reopened and the request repeated once."""
        if self._stopped:
            raise EngineStopped("the client is shutting down")
        headers = kwargs.pop("headers", {})
        if self._film_id is not None:
            headers[wire.MULTIPLEX_HEADER] = self._film_id
        for attempt in range(1, REOPEN_ATTEMPTS + 1):
            try:
                response = self._http.request(
                    method, wire.API_PREFIX + path, headers=headers, **kwargs
                )
            except httpx.HTTPError as err:
                raise self._network_error(err) from None
            lost = response.status_code == 404 and _error_type(response) == "FilmNotOpen"
            if not (lost and retry_open and attempt < REOPEN_ATTEMPTS):
                break
            log.info("the server lost the film: opening it again")
            self._reopen()
        self._raise_for_status(response)
        return response

    def _network_error(self, err: Exception) -> ServerError:
        if self._stopped:
            return EngineStopped("the client is shutting down")  # type: ignore[return-value]
        if isinstance(err, httpx.ConnectError | httpx.ConnectTimeout):
            return ServerError(f"cannot reach the server at {self.server_url} ({err})")
        if isinstance(err, httpx.TimeoutException):
            return ServerError(f"the server at {self.server_url} did not answer in time")
        return ServerError(f"the connection to the server at {self.server_url} broke ({err})")

    def _raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        if status == 401:
            raise Unauthorized(
                f"the server at {self.server_url} refused the token (401): "
                "check --token-file / the token file in Settings"
            )
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            error = None
        if error is None:
            raise ServerError(f"the server at {self.server_url} failed (HTTP {status})")
        if status == 413 or error.get("type") == "WireError":
            raise ServerError(f"the server refused the request: {error.get('message')}")
        raise wire.error_from_wire(error, RemoteError if status >= 500 else ServerError)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ServerError(
                f"the server at {self.server_url} sent a reply that is not JSON"
            ) from None

    def interrupt(self) -> None:
        """Thread-safe: the call in flight ends with ``EngineStopped``, and every later one."""
        self._stopped = True
        with self._lock:
            response = self._response
        if response is not None:
            response.close()

    @property
    def alive(self) -> bool:
        """False once interrupted (the ``Interruptible`` clients' flag)."""
        return not self._stopped

    def shutdown(self) -> None:
        self.close()
        self._http.close()

    # ------------------------------------------------------------------ model
    @property
    def model_loaded(self) -> bool:
        return self._server is not None

    @property
    def device_label(self) -> str:
        if self._server is None:
            return "model not loaded"
        host = urlsplit(self.server_url).netloc
        return f"{self._server.get('device_label', '?')} on {host}"

    def load_model(self) -> None:
        """Ask the server what it runs (the server loaded its model when it started)."""
        if self._server is None:
            start = time.perf_counter()
            info = self._json("GET", "/info")
            if not isinstance(info, dict) or not isinstance(info.get("image_size"), int):
                raise ServerError(f"{self.server_url} does not look like a MovieChat server")
            if info.get("transport") != wire.TRANSPORT:
                raise ServerError(
                    f"the server expects frames as {info.get('transport')!r}, this app sends "
                    f"{wire.TRANSPORT!r}: update one of them"
                )
            self._server = info
            self.load_seconds = time.perf_counter() - start

    # ------------------------------------------------------------------ film
    @property
    def video(self) -> VideoInfo | None:
        return self._video

    def open(self, path: str | Path, subtitles: str | Path | None = None) -> VideoInfo:
        """Probe and fingerprint the film here; open it on the server from its description.
        Its dialogue is resolved here too (``subtitles``: a file the user added,
        ``DialogueError`` when unreadable) and sent with the first question."""
        from moviechat_desktop.engine.store.fingerprint import file_fingerprint
        from moviechat_desktop.engine.video.probe import probe
        from moviechat_desktop.engine.video.sampling import plan_for_settings
        from moviechat_desktop.service.remote_frames import ClientFrames

        info = probe(path)
        plan = plan_for_settings(info, self.settings.sampling)
        added = None
        if subtitles is not None:
            from moviechat_desktop.engine.dialogue.subtitle_file import read_subtitle_file

            subtitles = Path(subtitles).expanduser()
            added = read_subtitle_file(subtitles, info.duration_s, info.fps)
        try:
            film_id = file_fingerprint(info.path)
        except OSError as err:
            raise VideoError(f"cannot read '{info.path.name}': {err.strerror or err}") from None
        self.load_model()
        assert self._server is not None
        self.close()
        self._open_body = {
            "info": wire.info_to_wire(info),
            "sampling": wire.sampling_to_wire(self.settings.sampling),
            "plan": wire.plan_to_wire(plan),
            "use_cache": self.use_cache,
        }
        self._film_id, self._video, self._plan = film_id, info, plan
        exact = self.settings.sampling.exact_frames  # the nearest reference pictures unless set
        self._frames = ClientFrames(info.path, self._server["image_size"], None if exact else info)
        try:
            self._reopen()
            self._open_dialogue(info, film_id, added, subtitles if added is not None else None)
        except BaseException:
            self.close()
            raise
        return info

    def open_on_server(self, path: str) -> VideoInfo:
        """Open a film the server reads itself (``path`` as the server sees it, e.g. a shared
        mount): it decodes the frames and the breakpoint pictures there, and finds the memory
        a library job (``encode --on-server``) built. Its dialogue is the server's."""
        self.load_model()
        self.close()
        sampling = wire.sampling_to_wire(self.settings.sampling)
        reply = self._json("POST", "/library/films", json={"path": path, "sampling": sampling})
        if not isinstance(reply, dict):
            raise ServerError("the server sent a malformed film description")
        try:
            film_id = wire.check_film_id(reply.get("film_id"))
            info = wire.info_from_wire(reply.get("info"))
            plan = wire.plan_from_wire(reply.get("plan"), self.settings.sampling, info)
        except wire.WireError as err:
            raise ServerError(f"the server sent a malformed film description ({err})") from None
        self._open_body = {"server_path": path, "sampling": sampling, "use_cache": self.use_cache}
        self._film_id, self._video, self._plan = film_id, info, plan
        try:
            self._reopen()
        except BaseException:
            self.close()
            raise
        return info

    def _open_dialogue(self, info: VideoInfo, film_id: str, added: Any, added_path: Any) -> None:
        from moviechat_desktop.service.remote_dialogue import ClientFilmDialogue, RemoteDialogue

        film_path = f"/films/{film_id}"
        film_dialogue = ClientFilmDialogue(
            info,
            self.settings.dialogue,
            self._json,
            film_path,
            self._server_speech_unavailable,
            added=added,
            added_path=added_path,
        )
        self._dialogue = RemoteDialogue(film_dialogue, self._json, film_path)
        self._dialogue.current()  # settle the source now, so status() stays cheap

    def _server_speech_unavailable(self) -> str | None:
        """Why the server cannot recognise speech, or None (it says so in GET /info)."""
        if self._server is None or "speech_unavailable" not in self._server:
            return "the server does not recognise speech (it runs an older version)"
        why = self._server["speech_unavailable"]
        return None if why is None else str(why)

    def _reopen(self) -> None:
        if self._film_id is None or self._open_body is None:
            raise NotReady("no film is open")
        state = self._json("PUT", f"/films/{self._film_id}", json=self._open_body, retry_open=False)
        self._take_state(state)
        # a server that lost the film (restarted, another replica) learns its gaps again: they
        # stay skipped until the user reopens the film (``close`` forgets them)
        for index, reason in sorted(self._gaps.items()):
            self._send_gap(index, reason, retry_open=False)

    def _send_gap(self, index: int, reason: str, retry_open: bool = True) -> None:
        path = f"/films/{self._film_id}/gaps/{index}"
        self._take_state(
            self._json("PUT", path, json=wire.gap_to_wire(reason), retry_open=retry_open)
        )

    def _take_state(self, state: Any) -> None:
        if not isinstance(state, dict) or not isinstance(state.get("status"), dict):
            raise ServerError("the server sent a malformed film state")
        self._state = state

    def close(self) -> None:
        """Forget the film here (the server keeps it open for other clients, and its cache)."""
        self._prepared_picture = None
        if self._frames is not None:
            self._frames.close()
        self._frames = None
        self._gaps = {}
        self._video = self._plan = self._film_id = self._open_body = None
        self._dialogue = None
        self._state = {}
        self._recent_fps = self._encode_seconds = 0.0

    def _require_film(self) -> tuple[VideoInfo, SamplingPlan]:
        if self._video is None or self._plan is None:
            raise NotReady("no film is open")
        return self._video, self._plan

    @property
    def film_id(self) -> str | None:
        return self._film_id

    @property
    def cache_restored(self) -> int:
        return int(self._state.get("cache_restored") or 0)

    @property
    def conversation_id(self) -> str | None:
        return self._state.get("conversation_id")

    @property
    def history_error(self) -> str | None:
        return self._state.get("history_error")

    # ------------------------------------------------------------------ encoding
    def status(self) -> EncodeStatus:
        data = self._state.get("status")
        if not data:
            return EncodeStatus(0, 0, 0, 0, (), 0.0, 0.0, False)
        try:
            covered, gaps = wire.ranges(data.get("covered")), wire.ranges(data.get("gaps"))
        except wire.WireError as err:
            raise ServerError(f"the server sent a malformed film state ({err})") from None
        data = {**data, "covered": covered, "gaps": gaps, "frames_per_s": 0.0}
        status = wire.dataclass_from_wire(EncodeStatus, data)
        speech = {} if self._dialogue is None else self._dialogue.status_fields()
        return dataclasses.replace(status, frames_per_s=self._recent_fps, **speech)

    def _missing(self) -> list[int]:
        """The fragments still to encode (those skipped as damaged are not)."""
        gaps = {int(i) for i in self._state.get("gap_fragments") or []}
        return [int(i) for i in self._state.get("missing", []) if int(i) not in gaps]

    def encode_step(self, cancel: CancelToken | None = None) -> EncodeStatus:
        """Decode the next fragment here, upload its frames, let the server encode them."""
        _, plan = self._require_film()
        missing = self._missing()
        if not missing:
            return self.status()
        if cancel is not None:
            cancel.raise_if_cancelled()
        start = time.perf_counter()
        index = missing[0]
        if self._frames is None:  # a film the server reads itself (open_on_server)
            self._take_state(self._json("POST", f"/films/{self._film_id}/encode"))
            elapsed = time.perf_counter() - start
            self._encode_seconds += elapsed
            count = len(plan.fragments[index].frame_indices)
            self._recent_fps = count / elapsed if elapsed > 0 else 0.0
            return self.status()
        try:
            frames = self._frames.fragment(plan.fragments[index].frame_indices)
        except VideoDecodeError as err:  # damaged here: a gap, as locally (memory/gaps.py)
            if not (self._server or {}).get("skips_damaged"):
                raise VideoDecodeError(
                    f"{str(err).rstrip('.')} (the server runs an older version that cannot "
                    "skip a damaged part: update it)"
                ) from None
            self._gaps[index] = str(err)
            self._send_gap(index, str(err))  # every fragment a gap: VideoDecodeError
            return self.status()
        body = wire.pack_frames(frames)
        self.bytes_uploaded += len(body)
        state = self._json(
            "PUT",
            f"/films/{self._film_id}/fragments/{index}",
            content=body,
            headers={"Content-Type": wire.FRAMES_CONTENT_TYPE},
        )
        self._take_state(state)
        elapsed = time.perf_counter() - start
        self._encode_seconds += elapsed
        self._recent_fps = len(frames) / elapsed if elapsed > 0 else 0.0
        return self.status()

    def encode(
        self,
        cancel: CancelToken | None = None,
        on_progress: Callable[[EncodeStatus], Any] | None = None,
    ) -> EncodeStatus:
        from moviechat_desktop.engine.progress import encode_to_the_end

        return encode_to_the_end(self, cancel, on_progress)

    @property
    def encode_seconds(self) -> float:
        return self._encode_seconds

    def covers(self, at_s: float) -> bool:
        if self._plan is None:
            return False
        needed = self._plan.fragment_at(at_s).index
        return all(i > needed for i in self._missing())

    # ------------------------------------------------------------------ dialogue
    @property
    def dialogue(self) -> Dialogue:
        """The open film's dialogue, resolved here (``service/remote_dialogue.py``)."""
        if self._dialogue is None:
            return Dialogue.none("No film is open")
        return self._dialogue.current()

    def set_dialogue_source(
        self, source: str = "auto", file: str | Path | None = None, track: int | None = None
    ) -> Dialogue:
        """As ``Assistant.set_dialogue_source`` (the file and the tracks are read here)."""
        if self._dialogue is None:
            raise NotReady("no film is open")
        return self._dialogue.choose(source, file, track)

    def subtitle_tracks(self) -> list[Any]:
        return [] if self._dialogue is None else list(self._dialogue.film.tracks())

    def dialogue_step(self, cancel: CancelToken | None = None) -> bool:
        """Upload the next ~30 s of audio for recognition when speech is the source."""
        return False if self._dialogue is None else self._dialogue.step(cancel)

    def answer_length_limit(self) -> int:
        """The longest answer the server's model takes (its GET /info)."""
        self.load_model()
        assert self._server is not None
        limit = self._server.get("answer_length_limit")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ServerError("the server does not say how long an answer may be")
        return limit

    # ------------------------------------------------------------------ questions
    def generation_settings(self) -> GenerationSettings:
        from moviechat_desktop.engine.model.llm import GenerationSettings

        return GenerationSettings.from_defaults(self.settings.generation)

    def ask(
        self,
        question: str,
        mode: str = "global",
        at_s: float | None = None,
        settings: GenerationSettings | None = None,
        cancel: CancelToken | None = None,
        *,
        record_question: bool = True,
    ) -> Iterator[str]:
        """Answer ``question`` on the server, streaming its chunks as they arrive."""
        if not question.strip():
            raise MovieChatError("the question is empty")
        body: dict[str, Any] = {"question": question, "record_question": record_question}
        yield from self._answer(body, mode, at_s, settings, cancel)

    def regenerate(
        self,
        question_id: str,
        settings: GenerationSettings | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[str]:
        """Answer the conversation's question ``question_id`` again, on the server."""
        mode, at_s = self._question_place(question_id)
        body: dict[str, Any] = {"question": "", "regenerate": question_id}
        yield from self._answer(body, mode, at_s, settings, cancel)

    def edit_question(
        self,
        question_id: str,
        text: str,
        settings: GenerationSettings | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[str]:
        """Ask ``text`` in place of question ``question_id``, on the server."""
        if not text.strip():
            raise MovieChatError("the question is empty")
        mode, at_s = self._question_place(question_id)
        body: dict[str, Any] = {"question": text, "edit": question_id}
        yield from self._answer(body, mode, at_s, settings, cancel)

    def _question_place(self, question_id: str) -> tuple[str, float | None]:
        """The mode and time of a saved question (its breakpoint picture goes with it)."""
        for record in self.conversation_records():
            if record.id == question_id and record.role == "user":
                return record.mode, record.at_s
        return "global", None  # the server says what is wrong with it

    def _answer(
        self,
        body: dict[str, Any],
        mode: str,
        at_s: float | None,
        settings: GenerationSettings | None,
        cancel: CancelToken | None,
    ) -> Iterator[str]:
        info, _ = self._require_film()
        body = {
            **body,
            "mode": mode,
            "at_s": at_s,
            # the window's settings (or this question's) always travel: never the server's
            "settings": dataclasses.asdict(settings or self.generation_settings()),
            # the dialogue the server holds for the prompt (sent once per film and choice)
            "dialogue": None if self._dialogue is None else self._dialogue.sync(),
            # the server answers in this conversation even if it reopened the film meanwhile
            "conversation_id": self.conversation_id,
        }
        in_film = at_s is not None and -END_SLACK_S <= at_s <= info.duration_s + END_SLACK_S
        # else the server says why, or grabs the picture itself (a film it reads itself)
        if mode == "breakpoint" and at_s is not None and in_film and self._frames is not None:
            data = self._picture_data(min(max(at_s, 0.0), info.duration_s))
            self.bytes_uploaded += len(data)
            body["frame"] = base64.b64encode(data).decode("ascii")
        start = time.perf_counter()
        answer = AnswerInfo(mode=mode, at_s=at_s)
        self.last_answer = answer
        response = self._open_stream(body)
        finished = False
        try:
            for line in response.iter_lines():
                if not line.strip():
                    continue
                item = _parse_line(line)
                if "chunk" in item:
                    if answer.first_text_s is None:
                        answer.first_text_s = time.perf_counter() - start
                    answer.chunks += 1
                    yield str(item["chunk"])
                    if cancel is not None:
                        cancel.raise_if_cancelled()
                elif "done" in item:
                    finished = True
                    self._finish_answer(item["done"], answer, start)
                    break
                elif "error" in item:
                    finished = True
                    raise wire.error_from_wire(item["error"], RemoteError)
        except httpx.HTTPError as err:
            if self._stopped:
                raise EngineStopped("the client is shutting down") from None
            raise ServerError(
                f"the server at {self.server_url} stopped in the middle of the answer ({err})"
            ) from None
        finally:
            with self._lock:
                self._response = None
            response.close()
        if not finished:
            if self._stopped:
                raise EngineStopped("the client is shutting down")
            raise ServerError(
                f"the server at {self.server_url} stopped in the middle of the answer"
            )

    def prepare_breakpoint(self, at_s: float) -> bool:
        """Decode and compress the picture on screen at ``at_s`` now (the player paused
        there): the question typed meanwhile only uploads it. False when the server reads the
        film itself or none is open."""
        info = self._video
        if info is None or self._frames is None:
            return False
        if not -END_SLACK_S <= at_s <= info.duration_s + END_SLACK_S:
            return False  # the question, if one comes, is told why by the server
        self._picture_data(min(max(at_s, 0.0), info.duration_s))
        return True

    def _picture_data(self, at_s: float) -> bytes:
        """The picture on screen at ``at_s`` as sent (JPEG): the prepared one when it is the
        same frame of the same film, else decoded now (and kept)."""
        assert self._frames is not None
        index = self._frames.index_at(at_s)
        key = (self._film_id, index)
        if self._prepared_picture is not None and self._prepared_picture[0] == key:
            return self._prepared_picture[1]
        data = wire.encode_image(self._frames.picture(index, at_s))
        self._prepared_picture = (key, data)
        return data

    def _open_stream(self, body: dict[str, Any]) -> httpx.Response:
        for attempt in range(1, REOPEN_ATTEMPTS + 1):
            if self._stopped:
                raise EngineStopped("the client is shutting down")
            request = self._http.build_request(
                "POST",
                f"{wire.API_PREFIX}/films/{self._film_id}/ask",
                json=body,
                headers={wire.MULTIPLEX_HEADER: self._film_id or ""},
            )
            try:
                response = self._http.send(request, stream=True)
            except httpx.HTTPError as err:
                raise self._network_error(err) from None
            if response.status_code < 400:
                with self._lock:
                    self._response = response
                return response
            response.read()
            response.close()
            lost = response.status_code == 404 and _error_type(response) == "FilmNotOpen"
            if lost and attempt < REOPEN_ATTEMPTS:
                self._reopen()
                continue
            if _error_type(response) == "DialogueMissing" and attempt < REOPEN_ATTEMPTS:
                assert self._dialogue is not None
                body["dialogue"] = self._dialogue.sync(force=True)  # reopened elsewhere
                continue
            self._raise_for_status(response)
        raise ServerError("the server kept losing the film")  # pragma: no cover

    def _finish_answer(self, done: Any, answer: AnswerInfo, start: float) -> None:
        answer.answer_s = time.perf_counter() - start
        if not isinstance(done, dict):
            return
        server = done.get("answer_info") or {}
        answer.memory_frames = int(server.get("memory_frames") or 0)
        source = server.get("dialogue_source")
        answer.dialogue_source = source if source in DIALOGUE_SOURCES else "none"
        answer.dialogue_lines = int(server.get("dialogue_lines") or 0)
        answer.prompt = str(server.get("prompt") or "")
        answer.at_s = server.get("at_s", answer.at_s)
        timings = dict(server.get("timings") or {})
        for key in ("first_token_s", "first_text_s", "answer_s"):
            if server.get(key) is not None:
                timings[f"server_{key}"] = float(server[key])
        answer.timings = timings
        answer.tokens = int(server.get("tokens") or 0)
        for key in ("question_id", "answer_id"):
            value = server.get(key)
            setattr(answer, key, value if isinstance(value, str) else None)
        answer.coverage = str(server.get("coverage") or "")
        try:
            answer.gaps = wire.ranges(server.get("gaps"))  # damaged parts the answer missed
        except wire.WireError:
            answer.gaps = ()
        # The client sees text, not tokens: its first token is its first text less the time
        # the server's streamer held that text back after the decoder's first token.
        if answer.first_text_s is None:
            answer.first_text_s = answer.answer_s
        held = timings.get("server_first_text_s", 0.0) - timings.get("server_first_token_s", 0.0)
        answer.first_token_s = max(answer.first_text_s - max(held, 0.0), 0.0)
        self._state["conversation_id"] = done.get("conversation_id")
        self._state["history_error"] = done.get("history_error")

    def new_conversation(self) -> None:
        reply = self._json("POST", f"/films/{self._require_film_id()}/conversations")
        self._state["conversation_id"] = reply.get("conversation_id")

    def open_conversation(self, conversation_id: str) -> None:
        path = f"/films/{self._require_film_id()}/conversations/{_segment(conversation_id)}"
        reply = self._json("POST", path)
        self._state["conversation_id"] = reply.get("conversation_id")

    def conversations(self) -> list[ConversationSummary]:
        if self._film_id is None:
            return []
        rows = self._json("GET", f"/films/{self._film_id}/conversations")
        return [wire.dataclass_from_wire(ConversationSummary, row) for row in _rows(rows)]

    def conversation_records(self, conversation_id: str | None = None) -> list[ChatRecord]:
        if self._film_id is None:
            return []
        which = _segment(conversation_id) if conversation_id else "current"
        rows = self._json("GET", f"/films/{self._film_id}/conversations/{which}")
        return [wire.dataclass_from_wire(ChatRecord, row) for row in _rows(rows)]

    def export_markdown(self, conversation_id: str | None = None) -> str:
        which = _segment(conversation_id) if conversation_id else "current"
        path = f"/films/{self._require_film_id()}/conversations/{which}/markdown"
        return self._request("GET", path).text

    def clear_cache(self) -> ClearResult:
        """Clear the server's memory cache (films no replica has open)."""
        return wire.dataclass_from_wire(ClearResult, self._json("POST", "/cache/clear"))

    def _require_film_id(self) -> str:
        self._require_film()
        assert self._film_id is not None
        return self._film_id


def _error_type(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["error"]["type"])
    except (ValueError, KeyError, TypeError):
        return None


def _parse_line(line: str) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except ValueError:
        raise ServerError("the server's answer stream is garbled") from None
    if not isinstance(item, dict):
        raise ServerError("the server's answer stream is garbled")
    return item


def _rows(rows: Any) -> list[Any]:
    if not isinstance(rows, list):
        raise ServerError("the server sent a malformed list")
    return rows


def _segment(text: str) -> str:
    """A conversation id as one URL path segment (ids are hex; anything else is refused)."""
    if not text or not all(c.isalnum() or c in "-_" for c in text):
        raise NotReady(f"no conversation {text!r} about this film")
    return text


__all__ = ["RemoteEngine", "ServerError", "Unauthorized", "default_token_file", "read_token"]
