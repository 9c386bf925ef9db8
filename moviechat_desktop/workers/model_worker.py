"""The one serialized owner of the engine client: a QThread working through a command queue.

Everything that touches the model and the film's memory goes through this thread, so encoding
and answering never race (Anki's rule). The engine is an ``EngineClient`` (``service.api``):
in the app, the Assistant in a child process (``service.local_engine``); in tests, often an
in-process fake. Priorities, highest first:

1. control commands (load the model, open/close a film, new or earlier conversation, new
   settings, clearing the memory cache);
2. the question at the head of the line (FIFO: one answer at a time, never two);
3. one encoding step of the current film, when nothing above is waiting.

A breakpoint question beyond what is encoded stays at the head of the line, announced once
with ``answer_deferred``; encoding goes on until it is covered, then it is answered.

The GUI thread calls the public methods (they only enqueue and return at once); results come
back as signals carrying small frozen dataclasses. Cancellation uses ``CancelToken`` — opening
or closing a film cancels the encoding step and every pending question within one step, and
``shutdown()`` ends the thread without ``terminate()`` (an engine in a child process is
interrupted at once and its process stopped).

When the engine's process dies (``EngineDied``: killed, crashed, out of memory) the worker
says so (``engine_restarted``), starts a new one, reloads the model, reopens the film (its
memory comes back from the cache) and the conversation, and asks the question in flight again
— telling the engine when the question is already in the chat history, so it is saved once.
After ``MAX_RESTARTS`` deaths within ``RESTART_WINDOW_S`` it gives up (``engine_gave_up``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QThread, Signal

from moviechat_desktop.engine.errors import Cancelled, MovieChatError, NotReady, WeightsMissing
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.service.api import (
    EngineClientFactory,
    EngineDied,
    EngineError,
    EngineGaveUp,
    EngineStopped,
    Interruptible,
)
from moviechat_desktop.workers.messages import ConversationView, ErrorReport
from moviechat_desktop.workers.throttle import ProgressThrottle

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.1  # at most 10 progress signals per second
IDLE_CHECK_S = 1.0  # an idle worker looks this often whether its engine process still lives
MAX_RESTARTS = 3  # engine deaths within RESTART_WINDOW_S before giving up
RESTART_WINDOW_S = 60.0

ENGINE_GONE = (EngineError, EngineStopped)  # never handled where they happen: see run()
AssistantFactory = EngineClientFactory  # the name the window and the tests know


@dataclass(frozen=True)
class Question:
    request_id: int
    text: str
    mode: str  # "global" | "breakpoint"
    at_s: float | None
    cancel: CancelToken
    # ("regenerate", question id) / ("edit", question id): redo a saved question (the
    # engine's ``regenerate`` / ``edit_question``); None: a new question
    action: tuple[str, str] | None = None


class ModelWorker(QThread):
    """Owns the engine client; see the module docstring for the rules."""

    model_loading_started = Signal()
    model_loaded = Signal(str)  # the device label, e.g. "CPU · float32"
    model_unavailable = Signal(object)  # ErrorReport (weights missing, load failure)
    film_opened = Signal(str, object)  # path, EncodeStatus
    film_closed = Signal()
    encoding_progressed = Signal(object)  # EncodeStatus, throttled to ≤10/s
    answer_deferred = Signal(int, object)  # request id, EncodeStatus: waits for the encoder
    answer_started = Signal(int)  # again after a restart: the answer starts over
    answer_chunk_received = Signal(int, str)
    answer_finished = Signal(int)
    answer_stopped = Signal(int)
    answer_failed = Signal(int, object)  # request id, ErrorReport
    errored = Signal(object)  # ErrorReport: opening or encoding failed
    conversation_loaded = Signal(object)  # ConversationView (restored, new, switched, updated)
    cache_cleared = Signal(object)  # ClearResult
    engine_restarted = Signal(str)  # why: the engine's process died and a new one started
    engine_gave_up = Signal(object)  # ErrorReport: it kept dying; the assistant is off
    dialogue_changed = Signal(object)  # Dialogue (frozen): the open film's lines and source
    answer_informed = Signal(int, object)  # request id, AnswerInfo (before answer_finished)
    answer_limit_known = Signal(int)  # the longest answer the model's context allows

    def __init__(self, assistant_factory: EngineClientFactory, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("ModelWorker")
        self._factory = assistant_factory
        self._engine: Any = None  # EngineClient
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
        # what a restarted engine must be brought back to
        self._model_wanted = False
        self._conversation_id: str | None = None
        self._sent: set[int] = set()  # request ids handed to the engine (maybe recorded)
        self._deaths: list[float] = []
        self._gave_up: ErrorReport | None = None
        self._dialogue_key: tuple | None = None  # what dialogue_changed last carried
        self._prepare_at: float | None = None  # the player paused here: prepare the picture

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

    def replace_assistant(self, factory: EngineClientFactory) -> None:
        """New settings: start a new engine, reload the model, reopen the current film."""
        self._cancel_film_work()
        self._post("replace", (factory,))

    def set_dialogue_source(
        self, source: str = "auto", file: str | None = None, track: int | None = None
    ) -> None:
        """Where the open film's dialogue comes from (the user's pick, a subtitle file they
        added, the subtitle track the player shows); ``dialogue_changed`` follows."""
        self._post("dialogue_source", (source, file, track))

    def update_settings(self, settings: Any) -> None:
        """New generation settings (used from the next question; nothing reloads)."""
        self._post("settings", (settings,))

    def ask(
        self,
        request_id: int,
        question: str,
        mode: str,
        at_s: float | None,
        action: tuple[str, str] | None = None,
    ) -> None:
        """Answer ``question`` (``action``: regenerate or edit a saved one, see ``Question``)."""
        with self._cond:
            self._questions.append(
                Question(request_id, question, mode, at_s, CancelToken(), action)
            )
            self._cond.notify_all()

    def prepare_breakpoint(self, at_s: float) -> None:
        """The player paused at ``at_s``: have the engine decode and encode the picture there
        before the question being typed arrives (after any question already in line, before
        more encoding; a newer pause replaces an older one not started yet)."""
        with self._cond:
            self._prepare_at = float(at_s)
            self._cond.notify_all()

    def stop_answer(self, request_id: int) -> None:
        """Stop the answer being generated, or drop the question if it is still in line."""
        with self._cond:
            for question in self._questions:
                if question.request_id == request_id:
                    question.cancel.cancel()
            self._cond.notify_all()

    def shutdown(self, timeout_ms: int = 5000) -> bool:
        """Cancel everything, end the thread and wait for it; True when it has ended.

        An engine in a child process is interrupted at once (the call in flight is abandoned)
        and its process is stopped by the worker thread as it ends."""
        with self._cond:
            self._stopping = True
            self._film_cancel.cancel()
            for question in self._questions:
                question.cancel.cancel()
            self._interrupt_engine()
            self._cond.notify_all()
        return self.wait(timeout_ms) if self.isRunning() else True

    def _post(self, command: str, args: tuple) -> None:
        with self._cond:
            self._control.append((command, args))
            self._cond.notify_all()

    def _cancel_film_work(self) -> None:
        with self._cond:
            self._prepare_at = None
            self._film_cancel.cancel()
            for question in self._questions:
                question.cancel.cancel()
            self._cond.notify_all()

    def _interrupt_engine(self) -> None:
        """(Under the lock.) Cut an interruptible engine's call in flight short."""
        if isinstance(self._engine, Interruptible):
            self._engine.interrupt()

    # ------------------------------------------------------------------ worker thread
    def run(self) -> None:
        self._start_engine()
        while True:
            try:
                work = self._next_work()
                if work is None:
                    break
                work()
            except EngineStopped:
                if self._stopping:
                    break
            except EngineDied as err:
                self._recover(err)
            except Cancelled:
                pass
            except Exception as err:  # never let the thread die silently
                self.errored.emit(ErrorReport.from_exception(err))
        self._end_engine()

    def _next_work(self) -> Callable[[], None] | None:
        """The next thing to do, by priority; None when the thread must end."""
        with self._cond:
            while not self._stopping:
                if self._control:
                    command, args = self._control.popleft()
                    return lambda: self._run_command(command, args)
                if self._questions:
                    question = self._questions[0]
                    return lambda: self._serve(question)
                if self._prepare_at is not None:
                    at_s, self._prepare_at = self._prepare_at, None
                    return lambda: self._prepare(at_s)
                if self._wants_encode():
                    return self._encode_step
                if self._engine_lost():
                    return self._engine_check
                self._progress.flush()
                self._cond.wait(IDLE_CHECK_S)
            return None

    def _wants_encode(self) -> bool:
        a = self._engine
        if a is None or self._film_path is None or self._encode_error is not None:
            return False
        status = a.status()  # memory to encode, or speech to recognise (dialogue)
        return (a.model_loaded and not status.finished) or status.speech_pending

    # ------------------------------------------------------------------ the engine's life
    def _start_engine(self) -> None:
        try:
            engine = self._factory()
        except Exception as err:  # report, then serve commands anyway
            self.model_unavailable.emit(ErrorReport.from_exception(err))
            return
        with self._cond:
            self._engine = engine
            if self._stopping:
                self._interrupt_engine()

    def _end_engine(self) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        try:
            engine.shutdown()
        except Exception:
            log.exception("stopping the assistant's engine failed")

    def _engine_lost(self) -> bool:
        """True when an engine in a child process has died while nothing was asked of it."""
        a = self._engine
        return isinstance(a, Interruptible) and not a.alive

    def _engine_check(self) -> None:
        a = self._engine
        if isinstance(a, Interruptible) and not a.alive:
            a.status()  # raises EngineDied (or EngineStopped when shutting down)

    def _recover(self, err: EngineDied) -> None:
        """The engine's process died: restart it and bring it back to where it was (again
        if the new one dies too, until ``MAX_RESTARTS`` deaths within the window)."""
        while not self._stopping:
            log.warning("the assistant's engine died: %s", err)
            self._end_engine()
            now = time.monotonic()
            self._deaths = [t for t in self._deaths if now - t < RESTART_WINDOW_S] + [now]
            if len(self._deaths) >= MAX_RESTARTS:
                self._give_up(err)
                return
            self.engine_restarted.emit(f"The assistant restarted ({err})")
            try:
                self._restore()
                return
            except EngineDied as again:
                err = again
            except EngineStopped:
                return

    def _restore(self) -> None:
        """A new engine, with the model loaded, the film and its conversation reopened; the
        question in flight stays at the head of the line and is asked again."""
        self._start_engine()
        if self._engine is None:
            return
        if self._model_wanted:
            self._load_model()
        path, conversation_id = self._film_path, self._conversation_id
        if path is not None:
            self._open(path, reason="reopened", keep_questions=True)
            self._return_to_conversation(conversation_id)

    def _give_up(self, err: EngineDied) -> None:
        report = ErrorReport.from_exception(
            EngineGaveUp(
                f"The assistant stopped: its process ended {len(self._deaths)} times within a "
                f"minute (last: {err}). The player keeps working; quit and reopen the app to "
                "try the assistant again."
            )
        )
        self._gave_up = report
        with self._cond:
            questions = list(self._questions)
            self._questions.clear()
        for question in questions:
            self.answer_failed.emit(question.request_id, report)
        self.engine_gave_up.emit(report)

    def _return_to_conversation(self, conversation_id: str | None) -> None:
        """After a restart: continue the conversation that was on screen."""
        a = self._engine
        if a is None or conversation_id is None or a.conversation_id == conversation_id:
            return
        if a.conversation_records(conversation_id):
            a.open_conversation(conversation_id)
        else:  # nothing of it was saved: a fresh one is the same
            a.new_conversation()
        self._report_conversation("reopened")

    # ------------------------------------------------------------------ commands
    def _run_command(self, command: str, args: tuple) -> None:
        if command == "load":
            self._model_wanted = True
            self._load_model()
        elif command == "open":
            self._open(args[0])
        elif command == "close":
            self._close_film()
            self.film_closed.emit()
        elif command == "new_conversation":
            if self._engine is not None:
                self._engine.new_conversation()
                self._report_conversation("new")
        elif command == "open_conversation":
            if self._engine is not None and self._film_path is not None:
                self._engine.open_conversation(args[0])
                self._report_conversation("switched")
        elif command == "clear_cache":
            if self._engine is not None:
                self.cache_cleared.emit(self._engine.clear_cache())
        elif command == "settings":
            if self._engine is not None:
                self._engine.settings = args[0]
                self._report_dialogue()
        elif command == "dialogue_source":
            self._choose_dialogue(*args)
        elif command == "replace":
            path = self._film_path
            self._end_engine()
            self._factory = args[0]
            self._gave_up = None
            self._deaths.clear()
            self._start_engine()
            self._model_wanted = True
            self._load_model()
            if path is not None:
                self._open(path, reason="reopened")

    def _load_model(self) -> None:
        if self._engine is None:
            return
        if self._engine.model_loaded:
            self.model_loaded.emit(self._engine.device_label)
            return
        self.model_loading_started.emit()
        try:
            self._engine.load_model()
        except ENGINE_GONE:
            raise
        except Exception as err:
            self.model_unavailable.emit(ErrorReport.from_exception(err))
            return
        self.model_loaded.emit(self._engine.device_label)
        self._report_answer_limit()

    def _report_answer_limit(self) -> None:
        limit = getattr(self._engine, "answer_length_limit", None)
        if limit is None:
            return
        try:
            self.answer_limit_known.emit(int(limit()))
        except ENGINE_GONE:
            raise
        except Exception:  # the spin box keeps its default range
            log.exception("the model's answer length limit is unknown")

    def _open(self, path: str, reason: str = "opened", keep_questions: bool = False) -> None:
        self._close_film(keep_questions)
        with self._cond:
            self._film_cancel = CancelToken()
        if self._engine is None:
            return
        try:
            self._engine.open(path)
        except ENGINE_GONE:
            raise
        except Exception as err:
            self.errored.emit(ErrorReport.from_exception(err))
            return
        self._film_path = path
        status = self._engine.status()
        self.film_opened.emit(path, status)
        self._report_dialogue(force=True)
        self._report_conversation(reason)
        self._progress.report(status, force=True)

    def _report_conversation(self, reason: str) -> None:
        """Send the open film's conversation and the list of its conversations; a history that
        cannot be read is logged. The messages are left out where the chat on screen already
        shows them (an answer was saved: "updated"; new settings reopened it: "reopened")."""
        a = self._engine
        if a is None or self._film_path is None:
            return
        try:
            shown = reason in ("updated", "reopened")
            records = () if shown else tuple(a.conversation_records())
            listed = tuple(a.conversations())
            self._conversation_id = a.conversation_id
        except ENGINE_GONE:
            raise
        except Exception:  # the chat must never stop the player or the encoder
            log.exception("reading the chat history failed")
            return
        view = ConversationView(self._film_path, self._conversation_id, records, listed, reason)
        self.conversation_loaded.emit(view)

    def _close_film(self, keep_questions: bool = False) -> None:
        self._film_path = None
        self._encode_error = None
        if not keep_questions:
            self._deferred_announced.clear()
            self._sent.clear()
        self._history_warned = False
        if self._engine is not None:
            self._engine.close()

    def _encode_step(self) -> None:
        try:
            engine = self._engine
            # speech to recognise (only an engine that reads dialogue says so): it takes
            # turns with the memory in background_step; otherwise plain encoding
            step = engine.background_step if engine.status().speech_pending else engine.encode_step
            status = step(self._film_cancel)
        except ENGINE_GONE:
            raise
        except Cancelled:  # the film was closed or replaced, or the app is quitting
            return
        except Exception as err:  # a bad stretch of film, out of memory, a bug: stop here
            self._encode_error = ErrorReport.from_exception(err)
            self.errored.emit(self._encode_error)
            return
        self._progress.report(status, force=status.finished)
        if status.speech_pending or status.speech_done_s > 0:
            self._report_dialogue()  # recognised speech adds lines

    # ------------------------------------------------------------------ dialogue
    def _choose_dialogue(self, source: str, file: str | None, track: int | None) -> None:
        if self._engine is None or self._film_path is None:
            return
        try:
            self._engine.set_dialogue_source(source, file=file, track=track)
        except ENGINE_GONE:
            raise
        except Exception as err:  # an unreadable file, a bitmap track: say why
            if file is None and track is not None:  # the player switched tracks: no dialog
                log.warning("the subtitle track shown cannot be read: %s", err)
            else:
                self.errored.emit(ErrorReport.from_exception(err))
        self._report_dialogue(force=True)

    def _report_dialogue(self, force: bool = False) -> None:
        """Send the open film's dialogue when it changed (source, label or line count)."""
        a = self._engine
        if a is None or self._film_path is None:
            return
        try:
            dialogue = getattr(a, "dialogue", None)
        except ENGINE_GONE:
            raise
        except Exception:  # the dialogue must never stop the player or the encoder
            log.exception("reading the film's dialogue failed")
            return
        if dialogue is None:
            return
        key = (dialogue.source, dialogue.label, len(dialogue.lines))
        if force or key != self._dialogue_key:
            self._dialogue_key = key
            self.dialogue_changed.emit(dialogue)

    # ------------------------------------------------------------------ questions
    def _prepare(self, at_s: float) -> None:
        if self._engine is None or self._film_path is None:
            return
        try:
            self._engine.prepare_breakpoint(at_s)
        except (EngineDied, EngineStopped):
            raise  # run() restarts the engine, or ends
        except Exception as err:  # never a dialog: the question, if one comes, says what fails
            log.info("the picture at %.3f s could not be prepared: %s", at_s, err)

    def _finish_question(self, question: Question) -> None:
        with self._cond:
            if self._questions and self._questions[0] is question:
                self._questions.popleft()
        self._deferred_announced.discard(question.request_id)
        self._sent.discard(question.request_id)

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
                self.answer_deferred.emit(question.request_id, self._engine.status())
            self._encode_step()
            return
        self._progress.flush()
        self.answer_started.emit(question.request_id)
        self._sent.add(question.request_id)
        try:
            for chunk in self._answer_chunks(question):
                self.answer_chunk_received.emit(question.request_id, chunk)
                if question.cancel.cancelled:
                    break
        except ENGINE_GONE:
            raise  # the question stays at the head of the line: asked again after a restart
        except Cancelled:
            pass
        except Exception as err:
            self._finish_question(question)
            self.answer_failed.emit(question.request_id, ErrorReport.from_exception(err))
            return
        self._finish_question(question)
        if question.cancel.cancelled:
            info = getattr(self._engine, "last_answer", None)
            if info is not None:  # the stopped answer's saved ids
                self.answer_informed.emit(question.request_id, info)
            self.answer_stopped.emit(question.request_id)
        else:
            info = getattr(self._engine, "last_answer", None)
            if info is not None:
                self.answer_informed.emit(question.request_id, info)
            self.answer_finished.emit(question.request_id)
            self._report_conversation("updated")
        self._check_history_saved()

    def _answer_chunks(self, question: Question) -> Any:
        """The engine's answer stream for ``question`` (a new one, or a regenerated/edited
        saved one: asked again as such after an engine restart)."""
        if question.action is not None:
            kind, question_id = question.action
            if kind == "regenerate":
                return self._engine.regenerate(question_id, cancel=question.cancel)
            return self._engine.edit_question(question_id, question.text, cancel=question.cancel)
        options = {} if not self._already_recorded(question) else {"record_question": False}
        return self._engine.ask(
            question.text, mode=question.mode, at_s=question.at_s, cancel=question.cancel,
            **options,
        )  # fmt: skip

    def _already_recorded(self, question: Question) -> bool:
        """True when an engine that died saved this question without its answer (the
        question was handed to it and is the conversation's last, unanswered message)."""
        if question.request_id not in self._sent:
            return False
        records = self._engine.conversation_records()
        if not records:
            return False
        last = records[-1]
        saved = last.role == "user" and last.text == question.text.strip()
        if saved and last.mode == question.mode:
            log.info("question %d was saved by the engine that died: asked again, saved once",
                     question.request_id)  # fmt: skip
            return True
        return False

    def _check_history_saved(self) -> None:
        """Tell the user (once per film) when the conversation can no longer be saved."""
        problem = self._engine.history_error
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
        a = self._engine
        if a is None:
            if self._gave_up is not None:
                return EngineGaveUp(self._gave_up.message)
            return NotReady("The assistant could not start; see Assistant → Settings….")
        if self._film_path is None:
            return NotReady("Open a film first: the assistant answers about the film playing.")
        if not a.model_loaded:
            self._model_wanted = True
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
        a = self._engine
        if question.mode == "breakpoint" and question.at_s is not None:
            return bool(a.covers(question.at_s))
        return a.status().fragments_done > 0
