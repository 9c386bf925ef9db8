"""The server side of the remote engine, without HTTP: one model, the films open on it.

A ``FilmService`` is one replica's engine. It loads the model once and keeps one
``Assistant`` per open film (sharing that model), opened from the client's metadata
(``Assistant.open_uploaded``): the server never sees the film file. Each film's memory lives in
the server's own cache under the film's content fingerprint plus the model identity plus the
frame transport, so a reconnecting or second client, or another replica on the same machine,
finds it again. At most ``max_films`` films stay open (least recently used closed first; their
memory stays in the cache).

Threading: every call that touches an ``Assistant`` runs on the service's single worker thread
(``run``), as the desktop's model worker does: the model is used by one thread at a time.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.errors import MovieChatError, NotReady
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.settings import AppSettings, load_settings
from moviechat_desktop.service import remote_wire as wire
from moviechat_desktop.service.served_dialogue import (
    SpeechModels,
    check_question_dialogue,
    dialogue_for,
)
from moviechat_desktop.service.served_generation import check_generation

log = logging.getLogger(__name__)

T = TypeVar("T")


class FilmNotOpen(MovieChatError):
    """The film is not open on this replica (never opened, closed, evicted or restarted)."""


class FilmService:
    """One model and the films open on it (see module docstring)."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        settings: AppSettings | None = None,
        max_films: int = 8,
    ) -> None:
        self.settings = settings or load_settings()
        self._base = Assistant(settings=self.settings, model_dir=model_dir)
        self._films: OrderedDict[str, Assistant] = OrderedDict()
        self._max_films = max(1, max_films)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="moviechat-engine")
        self._speech_models = SpeechModels(
            lambda: self.settings.dialogue.speech_model, self.settings.model.device
        )

    # ------------------------------------------------------------------ threading
    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the worker thread and wait for it without blocking the loop."""
        return await asyncio.wrap_future(self._executor.submit(fn, *args))

    def close_all(self) -> None:
        """Close every open film (their memory stays in the cache). On the worker thread."""
        for assistant in self._films.values():
            assistant.close()
        self._films.clear()

    def shutdown(self) -> None:
        self._executor.submit(self.close_all).result()
        self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------ model
    def load(self) -> None:
        self._base.load_model()

    def info(self) -> dict[str, Any]:
        model = self._base.model
        return {
            "device_label": self._base.device_label,
            "model_loaded": self._base.model_loaded,
            "image_size": model.config.image_size,
            "transport": wire.TRANSPORT,
            "codec": wire.FRAME_CODEC,
            "max_frames_body": wire.MAX_FRAMES_BODY,
            "films_open": len(self._films),
            "speech_unavailable": self._speech_models.unavailable(),
            "answer_length_limit": self._base.answer_length_limit(),
            "skips_damaged": True,  # takes PUT /films/{film}/gaps/{i}
        }

    # ------------------------------------------------------------------ films
    def film(self, film_id: str) -> Assistant:
        assistant = self._films.get(film_id)
        if assistant is None:
            raise FilmNotOpen("the film is not open on the server (open it again)")
        self._films.move_to_end(film_id)
        return assistant

    def open(self, film_id: str, body: Any) -> dict[str, Any]:
        """Open (or keep open) a film from the client's metadata; its state."""
        wire.check_film_id(film_id)
        if not isinstance(body, dict):
            raise wire.WireError("the open request must be an object")
        if body.get("server_path") is not None:  # a film the server reads itself
            from moviechat_desktop.service.library_job_films import open_server_film

            return open_server_film(self, film_id, body)
        info = wire.info_from_wire(body.get("info"))
        sampling = wire.sampling_from_wire(body.get("sampling"))
        plan = wire.plan_from_wire(body.get("plan"), sampling, info)
        use_cache = body.get("use_cache", True)
        if not isinstance(use_cache, bool):
            raise wire.WireError("use_cache must be true or false")
        current = self._films.get(film_id)
        if (
            current is not None
            and current.settings.sampling == sampling
            and current.use_cache == use_cache
        ):  # already open here: what it holds counts as restored for this client
            self._films.move_to_end(film_id)
            current.retry_gaps()  # a reopen tries the damaged parts again, as locally
            state = self.state(film_id)
            state["cache_restored"] = state["status"]["fragments_done"]
            return state
        settings = dataclasses.replace(self.settings, sampling=sampling)
        assistant = Assistant(
            settings=settings, model_dir=self._base.model_dir, use_cache=use_cache
        )
        assistant.use_model_of(self._base)
        assistant.open_uploaded(info, plan, film_id, wire.TRANSPORT)
        if current is not None:
            current.close()
        self._films[film_id] = assistant
        self._films.move_to_end(film_id)
        while len(self._films) > self._max_films:
            _, oldest = self._films.popitem(last=False)
            oldest.close()  # its memory stays in the cache
        return self.state(film_id)

    def close(self, film_id: str) -> dict[str, Any]:
        assistant = self._films.pop(film_id, None)
        if assistant is not None:
            assistant.close()
        return {"closed": assistant is not None}

    def state(self, film_id: str) -> dict[str, Any]:
        assistant = self.film(film_id)
        return {
            "film_id": film_id,
            "status": dataclasses.asdict(assistant.status()),
            "missing": assistant.missing_fragments(),
            "gap_fragments": assistant.gap_fragments(),  # missing, skipped as damaged
            "cache_restored": assistant.cache_restored,
            "conversation_id": assistant.conversation_id,
            "history_error": assistant.history_error,
            "device_label": assistant.device_label,
            "image_size": assistant.model.config.image_size,
            "transport": wire.TRANSPORT,
        }

    def upload(self, film_id: str, index: int, body: bytes) -> dict[str, Any]:
        """Encode fragment ``index`` from the client's frames body; the film's state."""
        assistant = self.film(film_id)
        plan = assistant._require_film()[1]
        if not 0 <= index < len(plan.fragments):
            raise wire.WireError(f"fragment {index} is outside 0..{len(plan.fragments) - 1}")
        size = assistant.model.config.image_size
        frames = wire.unpack_frames(body, len(plan.fragments[index].frame_indices), size)
        assistant.encode_frames_for(index, frames)
        return self.state(film_id)

    def skip(self, film_id: str, index: int, body: Any) -> dict[str, Any]:
        """Fragment ``index`` could not be decoded by the client: a gap (never cached, tried
        again when the film is reopened); the film's state. Every fragment a gap:
        ``VideoDecodeError``, as locally."""
        assistant = self.film(film_id)
        plan = assistant._require_film()[1]
        if not 0 <= index < len(plan.fragments):
            raise wire.WireError(f"fragment {index} is outside 0..{len(plan.fragments) - 1}")
        reason = wire.gap_reason(body)
        if assistant.frame_transport is None:
            raise NotReady("the server decodes this film itself (it finds its damaged parts)")
        assistant.skip_fragment(index, reason)
        return self.state(film_id)

    # ------------------------------------------------------------------ questions
    def begin_ask(
        self, film_id: str, body: Any, cancel: CancelToken
    ) -> tuple[Iterator[str], str | None]:
        """Start an answer: the generator and its first chunk (None when it has none).

        Errors known before the first chunk (nothing encoded yet, a bad request) raise here,
        so the HTTP layer can answer them with a status code instead of a broken stream.
        """
        assistant = self.film(film_id)
        if not isinstance(body, dict):
            raise wire.WireError("the question must be an object")
        question = body.get("question")
        if not isinstance(question, str) or len(question) > wire.MAX_QUESTION_CHARS:
            raise wire.WireError(f"the question must be text of at most {wire.MAX_QUESTION_CHARS}")
        mode = body.get("mode", "global")
        if mode not in ("global", "breakpoint"):
            raise wire.WireError("mode must be 'global' or 'breakpoint'")
        at_s = None
        if body.get("at_s") is not None:
            at_s = wire._number(body, "at_s", -1e7, 1e7)
        frame = None
        if body.get("frame") is not None:
            if not isinstance(body["frame"], str):
                raise wire.WireError("frame must be a base64 JPEG")
            try:
                data = base64.b64decode(body["frame"], validate=True)
            except ValueError:
                raise wire.WireError("frame must be a base64 JPEG") from None
            frame = wire.decode_image(data, assistant.model.config.image_size)
        generation = _generation_settings(body.get("settings"))
        if generation is not None:
            check_generation(generation, assistant.answer_length_limit())
        check_question_dialogue(assistant, body.get("dialogue"))
        _follow_conversation(assistant, body.get("conversation_id"))
        regenerate, edit = body.get("regenerate"), body.get("edit")
        for turn in (regenerate, edit):
            if turn is not None and (not isinstance(turn, str) or not 0 < len(turn) <= 200):
                raise wire.WireError("regenerate/edit must name a question's id")
        if regenerate is not None:
            answer = assistant.regenerate(regenerate, generation, cancel, frame=frame)
        elif edit is not None:
            answer = assistant.edit_question(edit, question, generation, cancel, frame=frame)
        else:
            answer = assistant.ask(
                question,
                mode=mode,
                at_s=at_s,
                settings=generation,
                cancel=cancel,
                record_question=bool(body.get("record_question", True)),
                frame=frame,
            )
        return answer, next(answer, None)

    def finish_ask(self, film_id: str) -> dict[str, Any]:
        assistant = self._films.get(film_id)
        if assistant is None:
            return {}
        return {
            "answer_info": dataclasses.asdict(assistant.last_answer),
            "conversation_id": assistant.conversation_id,
            "history_error": assistant.history_error,
        }

    # ------------------------------------------------------------------ dialogue
    def set_dialogue(self, film_id: str, body: Any) -> dict[str, Any]:
        """The film's dialogue from its client: timed lines, or speech recognised here."""
        return dialogue_for(self.film(film_id), self._speech_models).put(body)

    def recognise_speech(
        self, film_id: str, index: int, audio: bytes, language: Any
    ) -> dict[str, Any]:
        """Recognise speech chunk ``index`` from the client's Ogg Opus upload."""
        served = dialogue_for(self.film(film_id), self._speech_models)
        return served.recognise(index, audio, language)

    # ------------------------------------------------------------------ conversations, cache
    def new_conversation(self, film_id: str) -> dict[str, Any]:
        assistant = self.film(film_id)
        assistant.new_conversation()
        return {"conversation_id": assistant.conversation_id}

    def open_conversation(self, film_id: str, conversation_id: str) -> dict[str, Any]:
        assistant = self.film(film_id)
        assistant.open_conversation(conversation_id)
        return {"conversation_id": assistant.conversation_id}

    def conversations(self, film_id: str) -> list[dict[str, Any]]:
        return [dataclasses.asdict(c) for c in self.film(film_id).conversations()]

    def conversation_records(self, film_id: str, conversation_id: str | None) -> list[dict]:
        records = self.film(film_id).conversation_records(conversation_id)
        return [dataclasses.asdict(r) for r in records]

    def export_markdown(self, film_id: str, conversation_id: str | None) -> str:
        return self.film(film_id).export_markdown(conversation_id)

    def clear_cache(self) -> dict[str, Any]:
        return dataclasses.asdict(self._base.clear_cache())


def _generation_settings(data: Any) -> Any:
    """The client's generation settings (``GenerationSettings`` checks the ranges)."""
    from moviechat_desktop.engine.model.llm import GenerationSettings

    if data is None:
        return None
    if not isinstance(data, dict):
        raise wire.WireError("generation settings must be an object")
    for key, value in data.items():
        wanted = bool if key == "greedy" else int | float | None if key == "seed" else int | float
        if not isinstance(value, wanted) or (key != "greedy" and isinstance(value, bool)):
            raise wire.WireError(f"generation settings: {key} has the wrong type")
    try:
        return wire.dataclass_from_wire(GenerationSettings, data)
    except ValueError as err:  # GenerationSettings.__post_init__
        raise wire.WireError(f"generation settings: {err}") from None


def _follow_conversation(assistant: Any, wanted: Any) -> None:
    """Answer in the conversation the client is in. Another replica, or this one after a
    restart, may have reopened the film on its latest saved conversation, while the client
    had started a new one (which has no message on disk yet) or chosen an earlier one."""
    if wanted is None or wanted == assistant.conversation_id:
        return
    if not isinstance(wanted, str) or not 0 < len(wanted) <= 64:
        raise wire.WireError("conversation_id must be a conversation's id")
    if not all(c.isalnum() or c in "-_" for c in wanted):
        raise wire.WireError("conversation_id must be a conversation's id")
    if assistant.conversation_records(wanted):
        assistant.open_conversation(wanted)
    else:
        assistant.new_conversation(wanted)
