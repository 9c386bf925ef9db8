"""Chat history per film: every question and answer, kept on disk as soon as it is complete.

One JSON Lines file per film in the user data dir, named by the film's content fingerprint (so
a renamed or moved film keeps its chats): ``~/.local/share/moviechat-desktop/chats/<fp>.jsonl``.
Each line is one message::

    {"v": 1, "conversation": "…", "role": "user", "text": "What is he holding?",
     "mode": "breakpoint", "at_s": 4350.0, "timestamp": 1763800000.5, "film": "Film.mkv"}

An answer's line also holds the generation settings it was made with. Lines are only ever
appended, one ``write`` + ``fsync`` each (``atomic_io.append_line``): a crash loses at most the
message being written. When reading, a last line cut short and any damaged line are skipped
(with a warning); every other message is kept. A conversation is the messages sharing an id;
"New conversation" starts a new id, and the old ones stay in the file, listed.

Torch-free (the ``Conversation`` class is imported only by ``to_conversation``).
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moviechat_desktop.engine.settings import user_data_dir
from moviechat_desktop.engine.store.atomic_io import append_line

if TYPE_CHECKING:
    from moviechat_desktop.engine.model.llm import Conversation

log = logging.getLogger(__name__)

HISTORY_FORMAT = 1
ROLES = ("user", "assistant")
MODES = ("global", "breakpoint")


def default_history_root() -> Path:
    return user_data_dir() / "chats"


def new_conversation_id() -> str:
    """A new id; ids sort by creation time."""
    return f"{time.time_ns():016x}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class ChatRecord:
    """One message of a conversation about a film."""

    conversation: str
    role: str  # "user" (the question) | "assistant" (the answer)
    text: str
    mode: str  # "global" | "breakpoint"
    at_s: float | None  # the breakpoint time (None in global mode)
    timestamp: float  # when the message was complete, seconds since the epoch
    film: str = ""  # the film's file name at the time
    settings: dict[str, Any] | None = None  # generation settings of an answer

    def to_json(self) -> dict[str, Any]:
        data = {"v": HISTORY_FORMAT, **asdict(self)}
        if data["settings"] is None:
            del data["settings"]
        return data

    @classmethod
    def from_json(cls, data: Any) -> ChatRecord:
        """Inverse of ``to_json``; ``ValueError`` when ``data`` is not a valid message."""
        if not isinstance(data, dict) or data.get("v") != HISTORY_FORMAT:
            raise ValueError("not a version-1 chat message")
        at_s, settings = data.get("at_s"), data.get("settings")
        record = cls(
            conversation=data["conversation"],
            role=data["role"],
            text=data["text"],
            mode=data["mode"],
            at_s=None if at_s is None else float(at_s),
            timestamp=float(data["timestamp"]),
            film=str(data.get("film", "")),
            settings=settings,
        )
        if not (
            isinstance(record.conversation, str)
            and record.conversation
            and record.role in ROLES
            and isinstance(record.text, str)
            and record.mode in MODES
            and (settings is None or isinstance(settings, dict))
            and math.isfinite(record.timestamp)
        ):
            raise ValueError("malformed chat message")
        return record


@dataclass(frozen=True)
class ConversationSummary:
    """A conversation as listed to the user."""

    id: str
    started: float
    updated: float
    messages: int
    title: str  # the first question, shortened


class ChatHistory:
    """The chat history file of one film (see module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def for_film(cls, film_id: str, root: Path | None = None) -> ChatHistory:
        root = default_history_root() if root is None else Path(root)
        return cls(root / f"{film_id}.jsonl")

    def append(self, record: ChatRecord) -> None:
        """Add ``record`` durably. ``OSError`` when the disk refuses."""
        line = json.dumps(record.to_json(), ensure_ascii=False).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        append_line(self.path, line)

    def records(self) -> list[ChatRecord]:
        """Every readable message in the order written."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as err:
            log.warning("chat history %s is unreadable: %s", self.path, err)
            return []
        lines = data.split(b"\n")
        if lines[-1]:
            log.warning("chat history %s: an unfinished last message was dropped", self.path)
        records = []
        for number, line in enumerate(lines[:-1], start=1):
            if not line.strip():
                continue
            try:
                records.append(ChatRecord.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError) as err:  # UnicodeDecodeError is a ValueError
                log.warning("chat history %s: line %d skipped (%s)", self.path, number, err)
        return records

    def conversation(self, conversation_id: str) -> list[ChatRecord]:
        return [r for r in self.records() if r.conversation == conversation_id]

    def conversations(self) -> list[ConversationSummary]:
        """Every conversation, oldest first."""
        return summarize(self.records())

    def latest_conversation(self) -> tuple[str | None, list[ChatRecord]]:
        """The id and messages of the conversation with the most recent message, from one read
        (``(None, [])`` when there is none)."""
        records = self.records()
        if not records:
            return None, []
        latest = records[-1].conversation  # appended in time order: the last line wins
        return latest, [r for r in records if r.conversation == latest]


def summarize(records: list[ChatRecord]) -> list[ConversationSummary]:
    """The conversations among ``records``, oldest first, as listed to the user."""
    groups: dict[str, list[ChatRecord]] = {}
    for record in records:
        groups.setdefault(record.conversation, []).append(record)
    summaries = []
    for cid, messages in groups.items():
        question = next((m.text for m in messages if m.role == "user"), "")
        title = " ".join(question.split())
        summaries.append(
            ConversationSummary(
                id=cid,
                started=messages[0].timestamp,
                updated=messages[-1].timestamp,
                messages=len(messages),
                title=title if len(title) <= 80 else title[:79] + "…",
            )
        )
    return sorted(summaries, key=lambda s: (s.started, s.id))


def to_conversation(records: list[ChatRecord]) -> Conversation:
    """The prompt-side ``Conversation`` of ``records``: each question with the answer that
    follows it; a question left unanswered (stopped, failed, crashed) is not part of it."""
    from moviechat_desktop.engine.model.llm import Conversation

    conversation = Conversation()
    question: str | None = None
    for record in records:
        if record.role == "user":
            question = record.text
        elif question is not None:
            conversation.add(question, record.text)
            question = None
    return conversation


def _where(record: ChatRecord) -> str:
    if record.mode == "breakpoint" and record.at_s is not None:
        from moviechat_desktop.timefmt import format_time

        return f"breakpoint at {format_time(record.at_s)}"
    return "whole film (global)"


def _body(text: str) -> str:
    # a line starting with "#" inside a message must not become a heading of the export
    return "\n".join("\\" + line if line.startswith("#") else line for line in text.split("\n"))


def export_markdown(conversation_records: list[ChatRecord], film_name: str) -> str:
    """The conversation as Markdown: each message with who, its mode and breakpoint time, and
    when it was written; an unanswered question is marked as such."""
    out = [f"# Conversation about {film_name}", ""]
    if conversation_records:
        first = time.strftime("%Y-%m-%d %H:%M", time.localtime(conversation_records[0].timestamp))
        out += [f"_Started {first}; {len(conversation_records)} messages._", ""]
    for i, record in enumerate(conversation_records):
        who = "Question" if record.role == "user" else "Answer"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.timestamp))
        out += [f"## {who} · {_where(record)} · {when}", "", _body(record.text.strip()), ""]
        following = conversation_records[i + 1] if i + 1 < len(conversation_records) else None
        if record.role == "user" and (following is None or following.role != "assistant"):
            out += ["_(no answer)_", ""]
    return "\n".join(out).rstrip("\n") + "\n"
