"""The chat as data (Qt-free): questions, their mode and time, streamed answers, export.

``ChatPanel`` shows a ``ChatTranscript``; the tests drive it directly. An entry is one
question and its answer; its ``state`` follows the question through the model worker:
queued → (waiting for the encoder) → answering → done | stopped | failed.

The transcript holds the conversation's *current branch* (``chat_history.current_branch``):
Regenerate and Edit replace an entry's answer or question in place and drop the entries after
it (the history file keeps the replaced ones); the entry says "edited" / "answer regenerated".
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from moviechat_desktop.timefmt import format_time

if TYPE_CHECKING:
    from moviechat_desktop.engine.store.chat_history import ChatRecord

GLOBAL = "global"
BREAKPOINT = "breakpoint"

QUEUED = "queued"
WAITING = "waiting"
ANSWERING = "answering"
DONE = "done"
STOPPED = "stopped"
FAILED = "failed"
FINAL_STATES = frozenset({DONE, STOPPED, FAILED})

_ids = itertools.count(1)


def mode_label(mode: str, at_s: float | None, *, hours: bool = False) -> str:
    """What the mode switch and a question bubble say: "Whole film" / "This moment (01:12:30)"."""
    if mode == BREAKPOINT and at_s is not None:
        return f"This moment ({format_time(at_s, hours=hours or None)})"
    return "Whole film"


@dataclass
class ChatEntry:
    """One question and its answer as they stream in."""

    question: str
    mode: str = GLOBAL
    at_s: float | None = None
    answer: str = ""
    state: str = QUEUED
    note: str = ""  # a status line: why it waits, the error message, "stopped"
    asked_at: datetime = field(default_factory=datetime.now)
    id: int = field(default_factory=lambda: next(_ids))
    restored: bool = False  # read back from the film's chat history, not asked this session
    # a whole-film question sent while the film played: where it was when Enter was pressed
    # (the chat offers to ask about that moment instead)
    moment_s: float | None = None
    # links shown under the answer (href, text): the whole-film choice, "Ask again…"
    links: tuple[tuple[str, str], ...] = ()
    partial: bool = False  # a whole-film answer given from part of the film
    coverage: str = ""  # its note: "Answered from 47% of the film (up to 00:14:02)."
    question_id: str | None = None  # the question's id in the chat history, once saved
    revised: str = ""  # "edited", "answer regenerated" (shown beside the question)
    # what the worker is asked: None (a question), ("regenerate", question id) or
    # ("edit", question id): the entry replaces a saved question or answer
    action: tuple[str, str] | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


class ChatTranscript:
    """The ordered entries of one conversation."""

    def __init__(self) -> None:
        self.entries: list[ChatEntry] = []

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, question: str, mode: str = GLOBAL, at_s: float | None = None) -> ChatEntry:
        if mode not in (GLOBAL, BREAKPOINT):
            raise ValueError(f"unknown mode {mode!r}")
        entry = ChatEntry(question.strip(), mode, at_s if mode == BREAKPOINT else None)
        self.entries.append(entry)
        return entry

    def get(self, entry_id: int) -> ChatEntry | None:
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        return None

    def pending(self) -> list[ChatEntry]:
        return [e for e in self.entries if not e.finished]

    def clear(self) -> None:
        self.entries.clear()

    def restore(self, entries: list[ChatEntry]) -> None:
        """Show a saved conversation: ``entries`` first, then the questions still waiting
        for an answer (finished ones of this session are part of the saved conversation)."""
        self.entries = [*entries, *self.pending()]

    def to_markdown(self, film: str | Path | None = None, *, hours: bool = False) -> str:
        """The conversation as Markdown: a heading, then each question (with its mode and
        time) and its answer. Unfinished answers are marked as such."""
        title = Path(film).name if film else "MovieChat conversation"
        lines = [f"# {title}", ""]
        if film:
            lines += [f"Film: `{film}`", ""]
        for entry in self.entries:
            label = mode_label(entry.mode, entry.at_s, hours=hours)
            stamp = entry.asked_at.strftime("%Y-%m-%d %H:%M")
            revised = f", {entry.revised}" if entry.revised else ""
            lines += [f"## Q ({label}, asked {stamp}{revised})", "", _quote(entry.question), ""]
            answer = entry.answer.strip()
            if entry.state == FAILED:
                lines += [f"*No answer: {entry.note}*", ""]
            elif entry.state == STOPPED:
                mark = f"*({entry.note or 'stopped'})*"
                lines += [f"{answer} {mark}" if answer else mark, ""]
            elif entry.state != DONE:
                lines += [(answer + " " if answer else "") + "*(not answered yet)*", ""]
            else:
                lines += [answer, ""]
            if entry.coverage and entry.state in (DONE, STOPPED):
                lines += [f"*{entry.coverage}*", ""]
        return "\n".join(lines).rstrip() + "\n"

    def drop_after(self, entry: ChatEntry) -> None:
        """Forget the entries after ``entry`` (they leave the branch: Regenerate, Edit)."""
        if entry in self.entries:
            del self.entries[self.entries.index(entry) + 1 :]


def revision(done: str, more: str) -> str:
    """``done`` revisions of an entry with ``more`` added once ("edited · answer regenerated")."""
    parts = [part for part in done.split(" · ") if part]
    return " · ".join(parts if more in parts else [*parts, more])


def entries_from_records(records: list[ChatRecord] | tuple[ChatRecord, ...]) -> list[ChatEntry]:
    """Saved messages → chat entries along the conversation's current branch: each question
    with the answer that follows it; a stopped answer shows its partial text and "(stopped)";
    a question whose answer was never saved (failed, a crash) shows as such."""
    from moviechat_desktop.engine.store.chat_history import current_branch

    entries: list[ChatEntry] = []
    current: ChatEntry | None = None
    for record in current_branch(list(records)):
        if record.role == "user":
            at_s = record.at_s if record.mode == BREAKPOINT else None
            current = ChatEntry(
                record.text,
                record.mode,
                at_s,
                state=STOPPED,
                note="no answer was saved",
                asked_at=datetime.fromtimestamp(record.timestamp),
                restored=True,
                question_id=record.id or None,
                revised="edited" if record.replaces is not None else "",
            )
            entries.append(current)
        elif current is not None:
            current.answer = record.text
            current.state, current.note = (STOPPED, "stopped") if record.stopped else (DONE, "")
            current.coverage, current.partial = record.coverage, bool(record.coverage)
            if record.replaces is not None:
                current.revised = revision(current.revised, "answer regenerated")
            current = None
    return entries


def _quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.splitlines() or [""])
