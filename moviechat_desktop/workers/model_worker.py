"""The one serialized owner of the ``Assistant``: a QThread working through a command queue.

Everything that touches the model and the film's memory happens on this thread, so encoding
and answering never race (Anki's rule). Priorities, highest first:

1. control commands (load the model, open/close a film, new or earlier conversation, new
   settings, clearing the memory cache);
2. the question at the head of the line (FIFO: one answer at a time, never two);
3. one encoding step of the current film, when nothing above is waiting.

A breakpoint question beyond what is encoded stays at the head of the line, announced once
with ``answer_deferred``; encoding goes on until it is covered, then it is answered.

The GUI thread calls the public methods (they only enqueue and return at once); results come
back as signals carrying small frozen dataclasses. Cancellation uses ``CancelToken`` — opening
or closing a film cancels the encoding step and every pending question within one step, and
``shutdown()`` ends the thread without ``terminate()``.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QThread, Signal

from moviechat_desktop.engine.errors import Cancelled, MovieChatError, NotReady, WeightsMissing
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.workers.messages import ConversationView, ErrorReport
from moviechat_desktop.workers.throttle import ProgressThrottle

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.1  # at most 10 progress signals per second

AssistantFactory = Callable[[], Any]  # returns an object with the engine Assistant's API


@dataclass(frozen=True)
class Question:
    request_id: int
    text: str
    mode: str  # "global" | "breakpoint"
    at_s: float | None
    cancel: CancelToken


class ModelWorker(QThread):
    """Owns the Assistant; see the module docstring for the rules."""

    model_loading_started = Signal()
    model_loaded = Signal(str)  # the device label, e.g. "CPU · float32"
    model_unavailable = Signal(object)  # ErrorReport (weights missing, load failure)
    film_opened = Signal(str, object)  # path, EncodeStatus
    film_closed = Signal()
    encoding_progressed = Signal(object)  # EncodeStatus, throttled to ≤10/s
    answer_deferred = Signal(int, object)  # request id, EncodeStatus: waits for the encoder
    answer_started = Signal(int)
    answer_chunk_received = Signal(int, str)
    answer_finished = Signal(int)
    answer_stopped = Signal(int)
    answer_failed = Signal(int, object)  # request id, ErrorReport
    errored = Signal(object)  # ErrorReport: opening or encoding failed
    conversation_loaded = Signal(object)  # ConversationView (restored, new, switched, updated)
    cache_cleared = Signal(object)  # ClearResult

    def __init__(self, assistant_factory: AssistantFactory, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("ModelWorker")
        self._factory = assistant_factory
        self._assistant: Any = None
        self._cond = threading.Condition()
        self._control: deque[tuple[str, tuple]] = deque()
        self._questions: deque[Question] = deque()
        self._film_cancel = CancelToken()
        self._stopping = False
        self._deferred_announced: set[int] = set()
        self._history_warned = False  # the user was told this film's chat is not being saved
        self._film_path: str | None = None
        self._encode_error: ErrorReport | None = None
        self._progress = ProgressThrottle(self.encoding_progressed.emit, PROGRESS_INTERVAL_S)

    # ------------------------------------------------------------------ GUI-thread API
    def load_model(self) -> None:
        self._post("load", ())

    def open_film(self, path: str) -> None:
        """Forget the current film (cancelling its encoding and questions); open ``path``."""
        self._cancel_film_work()
        self._post("open", (str(path),))

    def close_film(self) -> None:
        self._cancel_film_work()
        self._post("close", ())

    def new_conversation(self) -> None:
        self._post("new_conversation", ())

    def open_conversation(self, conversation_id: str) -> None:
        """Continue an earlier conversation of the open film."""
        self._post("open_conversation", (conversation_id,))

    def clear_cache(self) -> None:
        """Delete the memory cache of every film not in use (the open one is kept)."""
        self._post("clear_cache", ())

    def replace_assistant(self, factory: AssistantFactory) -> None:
        """New settings: build a new Assistant, reload the model, reopen the current film."""
        self._cancel_film_work()
        self._post("replace", (factory,))

    def update_settings(self, settings: Any) -> None:
        """New generation settings (used from the next question; nothing reloads)."""
        self._post("settings", (settings,))

    def ask(self, request_id: int, question: str, mode: str, at_s: float | None) -> None:
        with self._cond:
            self._questions.append(Question(request_id, question, mode, at_s, CancelToken()))
            self._cond.notify_all()

    def stop_answer(self, request_id: int) -> None:
        """Stop the answer being generated, or drop the question if it is still in line."""
        with self._cond:
            for question in self._questions:
                if question.request_id == request_id:
                    question.cancel.cancel()
            self._cond.notify_all()

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Cancel everything, end the thread and wait for it; True when it has ended."""
        with self._cond:
            self._stopping = True
            self._film_cancel.cancel()
            for question in self._questions:
                question.cancel.cancel()
            self._cond.notify_all()
        return self.wait(timeout_ms) if self.isRunning() else True

    def _post(self, command: str, args: tuple) -> None:
        with self._cond:
            self._control.append((command, args))
            self._cond.notify_all()

    def _cancel_film_work(self) -> None:
        with self._cond:
            self._film_cancel.cancel()
            for question in self._questions:
                question.cancel.cancel()
            self._cond.notify_all()

    # ------------------------------------------------------------------ worker thread
    def run(self) -> None:
        try:
            self._assistant = self._factory()
        except Exception as err:  # thread boundary: report, then serve commands anyway
            self.model_unavailable.emit(ErrorReport.from_exception(err))
        while True:
            with self._cond:
                while not (
                    self._stopping or self._control or self._questions or self._wants_encode()
                ):
                    self._progress.flush()
                    self._cond.wait()
                if self._stopping:
                    break
                command = self._control.popleft() if self._control else None
                question = self._questions[0] if command is None and self._questions else None
            try:
                if command is not None:
                    self._run_command(*command)
                elif question is not None:
                    self._serve(question)
                else:
                    self._encode_step()
            except Exception as err:  # never let the thread die silently
                self.errored.emit(ErrorReport.from_exception(err))
        self._close_assistant()

    def _wants_encode(self) -> bool:
        a = self._assistant
        if a is None or self._film_path is None or self._encode_error is not None:
            return False
        return a.model_loaded and not a.status().finished

    def _run_command(self, command: str, args: tuple) -> None:
        if command == "load":
            self._load_model()
        elif command == "open":
            self._open(args[0])
        elif command == "close":
            self._close_film()
            self.film_closed.emit()
        elif command == "new_conversation":
            if self._assistant is not None:
                self._assistant.new_conversation()
                self._report_conversation("new")
        elif command == "open_conversation":
            if self._assistant is not None and self._film_path is not None:
                self._assistant.open_conversation(args[0])
                self._report_conversation("switched")
        elif command == "clear_cache":
            if self._assistant is not None:
                self.cache_cleared.emit(self._assistant.clear_cache())
        elif command == "settings":
            if self._assistant is not None:
                self._assistant.settings = args[0]
        elif command == "replace":
            path = self._film_path
            self._close_assistant()
            self._assistant = None
            self._assistant = args[0]()
            self._load_model()
            if path is not None:
                self._open(path, reason="reopened")

    def _load_model(self) -> None:
        if self._assistant is None:
            return
        if self._assistant.model_loaded:
            self.model_loaded.emit(self._assistant.device_label)
            return
        self.model_loading_started.emit()
        try:
            self._assistant.load_model()
        except Exception as err:
            self.model_unavailable.emit(ErrorReport.from_exception(err))
            return
        self.model_loaded.emit(self._assistant.device_label)

    def _open(self, path: str, reason: str = "opened") -> None:
        self._close_film()
        with self._cond:
            self._film_cancel = CancelToken()
        if self._assistant is None:
            return
        try:
            self._assistant.open(path)
        except Exception as err:
            self.errored.emit(ErrorReport.from_exception(err))
            return
        self._film_path = path
        status = self._assistant.status()
        self.film_opened.emit(path, status)
        self._report_conversation(reason)
        self._progress.report(status, force=True)

    def _report_conversation(self, reason: str) -> None:
        """Send the open film's conversation and the list of its conversations; a history that
        cannot be read is logged. The messages are left out where the chat on screen already
        shows them (an answer was saved: "updated"; new settings reopened it: "reopened")."""
        a = self._assistant
        if a is None or self._film_path is None:
            return
        try:
            shown = reason in ("updated", "reopened")
            records = () if shown else tuple(a.conversation_records())
            listed = tuple(a.conversations())
        except Exception:  # the chat must never stop the player or the encoder
            log.exception("reading the chat history failed")
            return
        view = ConversationView(self._film_path, a.conversation_id, records, listed, reason)
        self.conversation_loaded.emit(view)

    def _close_film(self) -> None:
        self._film_path = None
        self._encode_error = None
        self._deferred_announced.clear()
        self._history_warned = False
        if self._assistant is not None:
            self._assistant.close()

    def _close_assistant(self) -> None:
        if self._assistant is not None:
            try:
                self._assistant.close()
            except Exception:
                log.exception("closing the assistant failed")

    def _encode_step(self) -> None:
        try:
            status = self._assistant.encode_step(self._film_cancel)
        except Cancelled:
            return
        except Exception as err:  # a bad stretch of film, out of memory, a bug: stop here
            self._encode_error = ErrorReport.from_exception(err)
            self.errored.emit(self._encode_error)
            return
        self._progress.report(status, force=status.finished)

    # ------------------------------------------------------------------ questions
    def _finish_question(self, question: Question) -> None:
        with self._cond:
            if self._questions and self._questions[0] is question:
                self._questions.popleft()
        self._deferred_announced.discard(question.request_id)

    def _serve(self, question: Question) -> None:
        if question.cancel.cancelled:
            self._finish_question(question)
            self.answer_stopped.emit(question.request_id)
            return
        problem = self._readiness_problem(question)
        if problem is not None:
            self._finish_question(question)
            self.answer_failed.emit(question.request_id, ErrorReport.from_exception(problem))
            return
        if not self._answerable(question):
            if question.request_id not in self._deferred_announced:
                self._deferred_announced.add(question.request_id)
                self.answer_deferred.emit(question.request_id, self._assistant.status())
            self._encode_step()
            return
        self._progress.flush()
        self.answer_started.emit(question.request_id)
        try:
            for chunk in self._assistant.ask(
                question.text, mode=question.mode, at_s=question.at_s, cancel=question.cancel
            ):
                self.answer_chunk_received.emit(question.request_id, chunk)
                if question.cancel.cancelled:
                    break
        except Cancelled:
            pass
        except Exception as err:
            self._finish_question(question)
            self.answer_failed.emit(question.request_id, ErrorReport.from_exception(err))
            return
        self._finish_question(question)
        if question.cancel.cancelled:
            self.answer_stopped.emit(question.request_id)
        else:
            self.answer_finished.emit(question.request_id)
            self._report_conversation("updated")
        self._check_history_saved()

    def _check_history_saved(self) -> None:
        """Tell the user (once per film) when the conversation can no longer be saved."""
        problem = self._assistant.history_error
        if problem is None:
            self._history_warned = False  # saved again: warn anew if it fails later
        elif not self._history_warned:
            self._history_warned = True
            self.errored.emit(
                ErrorReport.simple(
                    "Conversation not saved",
                    f"This conversation could not be saved ({problem}). The answers stay in the "
                    "chat for now: use Export… to keep them, and free some disk space.",
                    "OSError",
                )
            )

    def _readiness_problem(self, question: Question) -> MovieChatError | None:
        """Why ``question`` can never be answered as things stand (None: it can, or will)."""
        a = self._assistant
        if a is None:
            return NotReady("The assistant could not start; see Assistant → Settings….")
        if self._film_path is None:
            return NotReady("Open a film first: the assistant answers about the film playing.")
        if not a.model_loaded:
            self._load_model()
            if not a.model_loaded:
                return WeightsMissing(
                    "The assistant's model is not available. "
                    "Use Assistant → Weights… to install it; the player works without it."
                )
        if self._answerable(question):
            return None
        if self._encode_error is not None:
            return NotReady(f"The film could not be watched further: {self._encode_error.message}")
        if a.status().finished:
            return NotReady("That moment is not part of the film the assistant watched.")
        return None

    def _answerable(self, question: Question) -> bool:
        a = self._assistant
        if question.mode == "breakpoint" and question.at_s is not None:
            return bool(a.covers(question.at_s))
        return a.status().fragments_done > 0
