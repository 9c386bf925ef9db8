"""Connects the ``ChatPanel`` to the ``ModelWorker``: each question is one coroutine.

The worker also sends the film's saved conversation (``ConversationView``) when a film is
opened, a conversation started or chosen, and after each answer; the controller shows it and
keeps the list of the film's conversations for the Assistant menu.

A question is sent to the worker (which answers one at a time, in order) and then followed
with ``async for`` over its answer events on the app's qasync loop: queued → waiting for the
encoder (breakpoint beyond what is watched) → streamed chunks → finished / stopped / failed.

Regenerate (the link under every finished answer whose question is saved) and Edit (the link
on such a question; the panel puts it in the box, Enter resends) redo that entry in place: the
entries after it leave the chat (the history keeps them; they are no longer on the
conversation's branch) and the worker asks the engine to regenerate or edit that saved
question. Both wait until no other question is in line.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from PySide6.QtCore import QObject, Signal

from moviechat_desktop.engine.store.chat_history import coverage_note
from moviechat_desktop.timefmt import format_time
from moviechat_desktop.ui import chat_render
from moviechat_desktop.ui.chat_panel import ChatPanel
from moviechat_desktop.ui.chat_transcript import (
    ANSWERING,
    BREAKPOINT,
    DONE,
    FAILED,
    GLOBAL,
    QUEUED,
    STOPPED,
    WAITING,
    ChatEntry,
    entries_from_records,
    revision,
)
from moviechat_desktop.workers import answer_stream as ev
from moviechat_desktop.workers.answer_stream import AnswerStreams
from moviechat_desktop.workers.messages import ConversationView, ErrorReport
from moviechat_desktop.workers.model_worker import ModelWorker

log = logging.getLogger(__name__)

CHOICE, NOW, WAIT, AGAIN = "choice", "now", "wait", "again"  # the chat's link schemes


def watched_until(covered: tuple[tuple[float, float], ...]) -> float:
    """End of the stretch watched without a gap from the start of the film."""
    if not covered or covered[0][0] > 0.5:
        return 0.0
    return covered[0][1]


def waiting_note(entry: ChatEntry, status: Any, *, hours: bool = False) -> str:
    watched = watched_until(status.covered) if status is not None else 0.0
    percent = round(100 * status.fraction) if status is not None else 0
    if entry.mode == BREAKPOINT and entry.at_s is not None:
        return (
            f"The assistant has watched up to {format_time(watched, hours=hours)} so far "
            f"({percent}% of the film); it answers as soon as it reaches "
            f"{format_time(entry.at_s, hours=hours)}."
        )
    return "The assistant has not watched anything yet; it answers once it has seen the start."


class ChatController(QObject):
    """Runs the chat's questions through the model worker."""

    answer_failed = Signal(object)  # ErrorReport worth a notice outside the chat (weights…)

    def __init__(self, panel: ChatPanel, worker: ModelWorker, parent: QObject | None = None):
        super().__init__(parent)
        self.panel = panel
        self.worker = worker
        self.streams = AnswerStreams(worker, self)
        self._tasks: set[asyncio.Task] = set()
        self._status: Any = None
        self._film: str | None = None
        self._engine_spoke = False  # the worker has sent the open film's conversation
        self.whole_film_choice: str | None = None  # NOW / WAIT, chosen once per session
        self._awaiting: set[int] = set()  # entries showing the choice
        self._held: list[ChatEntry] = []  # whole-film questions waiting for the whole film
        panel.link_clicked.connect(self.on_link)
        self.conversation_id: str | None = None
        self.conversations: tuple = ()  # ConversationSummary of the open film, oldest first
        panel.question_submitted.connect(self.ask)
        panel.edit_submitted.connect(self.edit)
        panel.stop_requested.connect(self.stop_current)
        worker.encoding_progressed.connect(self.on_encoding_progressed)
        worker.conversation_loaded.connect(self.on_conversation_loaded)
        worker.answer_informed.connect(self.on_answer_informed)

    # ------------------------------------------------------------------ questions
    def ask(self, entry: ChatEntry) -> None:
        """Send ``entry`` to the worker; a whole-film question while the film is only partly
        watched first asks (once per session) whether to answer now or when it is all seen."""
        if entry.mode == GLOBAL and self._partly_watched():
            if self.whole_film_choice is None:
                self._offer_choice(entry)
                return
            if self.whole_film_choice == WAIT:
                self._hold(entry)
                return
        self._dispatch(entry)

    def _partly_watched(self) -> bool:
        status = self._status
        return status is not None and not status.finished and status.fragments_total > 0

    def _offer_choice(self, entry: ChatEntry) -> None:
        percent = round(100 * self._status.fraction)
        entry.state = WAITING
        entry.note = f"The assistant has seen {percent}% of the film so far."
        entry.links = (
            (f"{CHOICE}:{NOW}:{entry.id}", f"Answer now ({percent}% watched)"),
            (f"{CHOICE}:{WAIT}:{entry.id}", f"When the whole film is watched ({self._eta()})"),
        )
        self._awaiting.add(entry.id)
        self.panel.refresh(entry)

    def _eta(self) -> str:
        status = self._status
        left = max(0, status.frames_total - status.frames_done)
        if status.frames_per_s <= 0:
            return "when it is done"
        seconds = left / status.frames_per_s
        if seconds < 60:
            return f"≈{max(1, round(seconds))} s"
        return f"≈{round(seconds / 60)} min"

    def _hold(self, entry: ChatEntry) -> None:
        entry.state = WAITING
        entry.links = ()
        entry.note = f"Asked as soon as the whole film is watched ({self._eta()})."
        self._held.append(entry)
        self.panel.refresh(entry)

    def on_link(self, href: str) -> None:
        """The chat's links: the whole-film choice and "Ask again with the whole film"."""
        parts = href.split(":")
        if len(parts) == 3 and parts[0] == CHOICE and parts[2].isdigit():
            entry = self.panel.transcript.get(int(parts[2]))
            if entry is None or entry.id not in self._awaiting or parts[1] not in (NOW, WAIT):
                return
            self.whole_film_choice = parts[1]  # remembered until the app quits
            for waiting in [e for e in self.transcript_pending() if e.id in self._awaiting]:
                self._awaiting.discard(waiting.id)
                waiting.links = ()
                if parts[1] == WAIT and self._partly_watched():
                    self._hold(waiting)
                else:
                    waiting.state, waiting.note = QUEUED, ""
                    self._dispatch(waiting)
            self.panel.render_now()
        elif len(parts) == 2 and parts[1].isdigit() and parts[0] == chat_render.REGENERATE_SCHEME:
            entry = self.panel.transcript.get(int(parts[1]))
            if entry is not None:
                self.regenerate(entry)
        elif len(parts) == 2 and parts[1].isdigit() and parts[0] == chat_render.EDIT_SCHEME:
            entry = self.panel.transcript.get(int(parts[1]))
            if entry is not None and entry.question_id and self._may_revise():
                self.panel.start_edit(entry)
        elif len(parts) == 2 and parts[0] == AGAIN and parts[1].isdigit():
            old = self.panel.transcript.get(int(parts[1]))
            if old is None:
                return
            old.links = ()
            self.panel._settled_key = None  # the old bubble loses its link
            again = self.panel.transcript.add(old.question, GLOBAL)
            self.panel.render_now()
            self.panel.question_submitted.emit(again)

    # ------------------------------------------------------------------ regenerate, edit
    def _may_revise(self) -> bool:
        """Regenerate and Edit wait for the questions in line (they change the branch)."""
        if self.transcript_pending():
            self.panel.set_status(
                "Wait for the answer being written (or stop it) before regenerating or editing."
            )
            return False
        return True

    def regenerate(self, entry: ChatEntry) -> None:
        """Answer ``entry``'s saved question again; the entries after it leave the chat."""
        if entry.question_id is None or not entry.finished or not self._may_revise():
            return
        self._redo(entry, ("regenerate", entry.question_id), "answer regenerated")

    def edit(self, entry: ChatEntry, text: str) -> None:
        """Ask ``text`` in place of ``entry``'s saved question (from the panel's edit box)."""
        text = text.strip()
        if not text or entry.question_id is None or entry not in self.panel.transcript.entries:
            self.panel.finish_edit()
            return
        if not self._may_revise():
            from PySide6.QtCore import QTimer

            QTimer.singleShot(0, lambda: self.panel.question.setPlainText(text))  # kept
            return
        self.panel.finish_edit()
        entry.question = text
        self._redo(entry, ("edit", entry.question_id), "edited")

    def _redo(self, entry: ChatEntry, action: tuple[str, str], revised: str) -> None:
        self.panel.transcript.drop_after(entry)
        entry.action = action
        entry.revised = revision(entry.revised, revised)
        entry.answer, entry.state, entry.note, entry.links = "", QUEUED, "", ()
        entry.coverage, entry.partial, entry.moment_s = "", False, None
        self.panel._settled_key = None  # the entry is redrawn, those after it go
        self.panel.render_now()
        self._dispatch(entry)

    def _dispatch(self, entry: ChatEntry) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a programming error: say so instead of waiting forever
            log.error("the chat needs a running qasync event loop (see app.run_gui)")
            self._fail(entry, ErrorReport.simple("Internal error", "No event loop for the chat."))
            self.panel.refresh(entry)
            return
        self.streams.register(entry.id)
        self.worker.ask(entry.id, entry.question, entry.mode, entry.at_s, action=entry.action)
        task = loop.create_task(self._follow(entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self, entry: ChatEntry) -> None:
        async for event in self.streams.follow(entry.id):
            if event.kind == ev.DEFERRED:
                entry.state = WAITING
                entry.note = waiting_note(entry, event.status, hours=self.panel.hours)
            elif event.kind == ev.STARTED:  # again after an engine restart: start over
                entry.state = ANSWERING
                entry.answer = ""
                entry.note = ""
                entry.coverage = self._partial_note(entry)
                entry.partial = bool(entry.coverage)
            elif event.kind == ev.CHUNK:
                entry.answer += event.text
            elif event.kind == ev.FINISHED:
                entry.state = DONE
            elif event.kind == ev.STOPPED:
                entry.state = STOPPED
            elif event.kind == ev.FAILED:
                self._fail(entry, event.error)
            self.panel.refresh(entry)
        self.panel.render_now()

    def on_answer_informed(self, request_id: int, info: Any) -> None:
        """The saved question's id (for Regenerate and Edit) and the engine's coverage note;
        an answer given without any dialogue says so in its footnote."""
        entry = self.panel.transcript.get(request_id)
        if entry is None:
            return
        entry.question_id = getattr(info, "question_id", None) or entry.question_id
        if getattr(info, "question_id", None) is not None:  # the engine's own note
            entry.coverage = getattr(info, "coverage", "") or ""
            entry.partial = bool(entry.coverage)
        if getattr(info, "stopped", False) or getattr(info, "dialogue_lines", 0) > 0:
            return
        note = "Answered without dialogue."
        entry.note = f"{entry.note} {note}" if entry.note else note

    def _fail(self, entry: ChatEntry, error: ErrorReport | None) -> None:
        entry.state = FAILED
        entry.note = error.message if error is not None else "no answer"
        if error is not None and error.needs_weights:
            self.answer_failed.emit(error)

    def _partial_note(self, entry: ChatEntry) -> str:
        status = self._status
        if entry.mode == BREAKPOINT or status is None or status.finished:
            return ""
        return coverage_note(status.fraction, watched_until(status.covered))

    def stop_current(self) -> None:
        """Stop the answer being written (or awaited); questions behind it go on."""
        pending = self.transcript_pending()
        if pending and not self._stop_here(pending[0]):
            self.worker.stop_answer(pending[0].id)

    def stop_all(self) -> None:
        for entry in self.transcript_pending():
            if not self._stop_here(entry):
                self.worker.stop_answer(entry.id)

    def _stop_here(self, entry: ChatEntry) -> bool:
        """A question still held here (awaiting the choice or the whole film) never reached
        the worker: stop it here."""
        if entry.id not in self._awaiting and entry not in self._held:
            return False
        self._awaiting.discard(entry.id)
        if entry in self._held:
            self._held.remove(entry)
        entry.state, entry.note, entry.links = STOPPED, "stopped", ()
        self.panel.refresh(entry)
        return True

    def transcript_pending(self) -> list[ChatEntry]:
        return self.panel.transcript.pending()

    def new_conversation(self) -> None:
        self.stop_all()
        self.worker.new_conversation()
        self.panel.clear()

    def open_conversation(self, conversation_id: str) -> None:
        """Show and continue an earlier conversation about the film (answers being written
        are stopped, as for a new conversation)."""
        if conversation_id == self.conversation_id:
            return
        self.stop_all()
        self.worker.open_conversation(conversation_id)
        self.panel.clear()

    def film_changed(self, path: str | None = None) -> None:
        """A new film: the chat empties until the worker sends the film's saved conversation
        (the worker drops the old film's questions)."""
        self._status = None
        self._film = path
        self.conversation_id, self.conversations = None, ()
        self._engine_spoke = False
        self._held.clear()
        self._awaiting.clear()
        for entry in self.transcript_pending():
            entry.state, entry.note = STOPPED, "the film was closed"
        self.panel.clear()

    def on_conversation_loaded(self, view: ConversationView) -> None:
        if view.film_path != self._film:
            return  # about a film closed since
        self._engine_spoke = True
        self.conversation_id, self.conversations = view.conversation_id, view.conversations
        if view.reason in ("opened", "new", "switched"):
            self.panel.transcript.restore(entries_from_records(view.records))
            self.panel.render_now()

    def show_saved(self, path: str, state: Any) -> None:
        """The film's saved conversation read from disk (``SavedState``) before the engine
        has opened it: shown at once; the engine's own view replaces it when it comes."""
        if path != self._film or self._engine_spoke:
            return
        self.conversation_id, self.conversations = state.conversation_id, state.conversations
        self.panel.transcript.restore(entries_from_records(state.records))
        self.panel.render_now()

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    def cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    # ------------------------------------------------------------------ encoding
    def on_encoding_progressed(self, status: Any) -> None:
        self._status = status
        changed = False
        if status.finished:
            for entry in self._held:  # the whole film is watched: ask them now
                entry.state, entry.note = QUEUED, ""
                self._dispatch(entry)
            self._held.clear()
            for entry in self.panel.transcript.entries:
                if entry.partial and entry.state == DONE and not entry.links:
                    entry.partial = False
                    entry.links = ((f"{AGAIN}:{entry.id}", "Ask again with the whole film"),)
                    self.panel._settled_key = None
                    changed = True
            for entry in self.transcript_pending():
                if entry.id in self._awaiting:  # the choice no longer matters
                    self._awaiting.discard(entry.id)
                    entry.state, entry.note, entry.links = QUEUED, "", ()
                    self._dispatch(entry)
                    changed = True
        for entry in self.transcript_pending():
            if entry.state == WAITING:
                entry.note = waiting_note(entry, status, hours=self.panel.hours)
                changed = True
        if changed:
            self.panel.refresh()
