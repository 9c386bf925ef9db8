"""The client API every front end uses to reach the engine, wherever it runs.

``EngineClient`` is the public surface of ``engine.assistant.Assistant``: the in-process
Assistant satisfies it (the CLI uses it so), the local child-process proxy
(``service.local_engine.LocalEngine``) forwards it to an Assistant in a child process, and the
remote client sends it to a server. Everything that crosses it is plain picklable data: frozen
dataclasses, tuples, strings and numbers, never tensors. Errors are the engine's own
``MovieChatError`` subclasses (the same classes on both sides), plus the boundary's errors
below.

Threading: a client is owned by one thread, like the Assistant. Only ``interrupt`` (on clients
that are ``Interruptible``) may be called from another thread.

Generator methods (``ask``) stream: the iterator yields each chunk as soon as the engine has
produced it. Cancellation is a ``CancelToken`` argument, as in process: the call in flight ends
at the engine's next check (``Cancelled`` or an early end of the stream).

This module is torch-free and must stay so (import-linter checks it); the types named only in
annotations are imported for type checkers alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from moviechat_desktop.engine.errors import Cancelled, MovieChatError

if TYPE_CHECKING:
    from pathlib import Path

    from moviechat_desktop.engine.assistant import AnswerInfo, EncodeStatus
    from moviechat_desktop.engine.model.llm import GenerationSettings
    from moviechat_desktop.engine.progress import CancelToken
    from moviechat_desktop.engine.settings import AppSettings
    from moviechat_desktop.engine.store.chat_history import ChatRecord, ConversationSummary
    from moviechat_desktop.engine.store.film_cache import ClearResult
    from moviechat_desktop.engine.video.probe import VideoInfo


# --------------------------------------------------------------------------- errors
class EngineError(MovieChatError):
    """The engine could not be reached or stopped answering (its process, its server)."""


class EngineDied(EngineError):
    """The engine's process ended in the middle of its work (killed, crashed, out of memory).

    The work in flight is lost; what was saved (the film's memory fragments, the chat's
    finished messages) is not. A new client can be started and the work sent again.
    """


class EngineGaveUp(EngineError):
    """The engine kept dying (e.g. three times within a minute), so it is not restarted."""


class EngineStopped(Cancelled):
    """The call was cut short because the client is shutting down (never shown as an error)."""


class RemoteError(RuntimeError):
    """An unexpected error inside the engine (a bug, a library failure) that could not be
    sent back as itself: its message names the original kind and message. Not a
    ``MovieChatError``, so front ends treat it as the bug it is."""


# --------------------------------------------------------------------------- the client API
@runtime_checkable
class EngineClient(Protocol):
    """What the GUI's model worker and the CLI call; ``Assistant`` is the reference.

    Attributes and properties (read through the client; ``settings`` may be assigned, which
    takes effect from the next question, nothing reloads):
    """

    settings: AppSettings

    @property
    def model_loaded(self) -> bool: ...

    @property
    def device_label(self) -> str:
        """Where the model runs, e.g. "CPU · float32" ("model not loaded" before)."""
        ...

    @property
    def film_id(self) -> str | None:
        """The open film's content fingerprint (None when none is open or it is unreadable)."""
        ...

    @property
    def cache_restored(self) -> int:
        """How many fragments the last ``open`` (or model load) took from the memory cache."""
        ...

    @property
    def conversation_id(self) -> str | None: ...

    @property
    def history_error(self) -> str | None:
        """Why the last chat message could not be saved; None when it was."""
        ...

    @property
    def last_answer(self) -> AnswerInfo:
        """What the last ``ask`` did (mode, memory frames, first-token and answer times)."""
        ...

    # -- model and film
    def load_model(self) -> None:
        """Load the model (slow); ``WeightsMissing``/``WeightsCorrupt`` when it cannot."""
        ...

    def open(self, path: str | Path) -> VideoInfo:
        """Open a film: probe it, restore its cached memory and latest conversation."""
        ...

    def close(self) -> None:
        """Forget the open film (its memory stays in the cache)."""
        ...

    def shutdown(self) -> None:
        """End the engine: release the film and the model (a child process exits). The
        client cannot be used afterwards."""
        ...

    # -- encoding
    def status(self) -> EncodeStatus: ...

    def encode_step(self, cancel: CancelToken | None = None) -> EncodeStatus:
        """Encode the next fragment not yet in memory; return the new status."""
        ...

    def encode(
        self,
        cancel: CancelToken | None = None,
        on_progress: Callable[[EncodeStatus], Any] | None = None,
    ) -> EncodeStatus:
        """Encode every remaining fragment; ``on_progress(status)`` after each."""
        ...

    def covers(self, at_s: float) -> bool:
        """True when a breakpoint question at ``at_s`` can be answered now."""
        ...

    # -- questions and conversations
    def prepare_breakpoint(self, at_s: float) -> bool:
        """Decode (and encode, where the model is) the picture on screen at ``at_s`` now — the
        player paused there — so the breakpoint question typed meanwhile starts at once; False
        when there is nothing to prepare yet."""
        ...

    def generation_settings(self) -> GenerationSettings: ...

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
        """Answer ``question`` (``mode`` "global" or "breakpoint" at ``at_s``), streaming.

        ``record_question=False``: the question is already in the chat history (it was asked
        of an engine that died before answering): only the answer is recorded.
        """
        ...

    def regenerate(
        self,
        question_id: str,
        settings: GenerationSettings | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[str]:
        """Answer the current conversation's question ``question_id`` (a ``ChatRecord.id``)
        again, streaming; the new answer replaces the old one on the conversation's branch and
        the model's context is the branch up to that question (``chat_history``)."""
        ...

    def edit_question(
        self,
        question_id: str,
        text: str,
        settings: GenerationSettings | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[str]:
        """Ask ``text`` in place of question ``question_id`` (same mode and time), streaming;
        the old question and what followed it leave the branch (they stay in the history)."""
        ...

    def new_conversation(self) -> None: ...

    def open_conversation(self, conversation_id: str) -> None: ...

    def conversations(self) -> list[ConversationSummary]: ...

    def conversation_records(self, conversation_id: str | None = None) -> list[ChatRecord]: ...

    def export_markdown(self, conversation_id: str | None = None) -> str: ...

    def clear_cache(self) -> ClearResult:
        """Delete every cached memory no process is using (the open film's is kept)."""
        ...


@runtime_checkable
class Interruptible(Protocol):
    """A client whose call in flight can be cut short from another thread (quitting)."""

    def interrupt(self) -> None:
        """Thread-safe: the call in flight raises ``EngineStopped`` at once and every later
        call too; ``shutdown`` still has to be called by the owner."""
        ...


EngineClientFactory = Callable[[], EngineClient]
"""What the GUI's model worker is given: builds (or rebuilds, after a crash) its client."""
