"""Chat history per film: every question and answer, kept on disk as soon as it is complete.

One JSON Lines file per film in the user data dir, named by the film's content fingerprint (so
a renamed or moved film keeps its chats): ``~/.local/share/moviechat-desktop/chats/<fp>.jsonl``.
Each line is one message. Version 1 (written up to this version, still read)::

    {"v": 1, "conversation": "…", "role": "user", "text": "What is he holding?",
     "mode": "breakpoint", "at_s": 4350.0, "timestamp": 1763800000.5, "film": "Film.mkv"}

Version 2 (written from this version on; read beside version 1, in the same file) has the same
fields plus:

- ``id`` (required, text, at most 200 characters): the message's own id. A version-1 message
  has none; it is known as ``"L<line number>"`` (its line in the file, stable because the file
  is only ever appended to).
- ``replaces`` (optional, an id): this message replaces an earlier one of its conversation:
  an edited question replaces the question, a regenerated answer the answer. Both stay in the
  file; the *current branch* (``current_branch``) replays the messages in file order and, at a
  message that replaces another, drops the replaced one and everything after it on the branch.
  A replaced message that is no longer on the branch is followed to what replaced it (an edit
  sent twice after a crash replaces the first copy).
- ``stopped`` (optional, answers only, true or absent): the user stopped the answer; ``text``
  is what was written until then (possibly empty).
- ``coverage`` (optional, answers only, text of at most 500 characters): a whole-film answer
  given from part of the film says so, e.g. "Answered from 47% of the film (up to 00:14:02)."

The model's context follows the current branch only, without stopped answers
(``to_conversation``); the window and the Markdown export show the current branch.

An answer's line also holds the generation settings it was made with. Lines are only ever
appended, one ``write`` + ``fsync`` each (``atomic_io.append_line``): a crash loses at most the
message being written. When reading, every line is validated field by field (types, ranges,
sizes: ``ChatRecord.from_json``); a last line cut short is skipped, and any other bad line (not
JSON, nested too deeply, a wrong type, a timestamp no clock can show, a version-2 line with a
bad ``id``/``replaces``/``stopped``/``coverage``…) is copied once to a side file
``<fp>.jsonl.rejected`` with one warning, then skipped on every read. The history itself is
never rewritten; every other message is kept and the film stays usable. A conversation is the
messages sharing an id; "New conversation" starts a new id, and the old ones stay in the file,
listed.

Torch-free (the ``Conversation`` class is imported only by ``to_conversation``).
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moviechat_desktop.engine.settings import user_data_dir
from moviechat_desktop.engine.store.atomic_io import append_line

if TYPE_CHECKING:
    from moviechat_desktop.engine.model.llm import Conversation

log = logging.getLogger(__name__)

HISTORY_FORMAT = 2  # what this version writes
READ_FORMATS = (1, 2)  # what it reads
ROLES = ("user", "assistant")
MODES = ("global", "breakpoint")
REJECTED_SUFFIX = ".rejected"
MAX_LINE_BYTES = 4_000_000  # a longer line is not a message this app wrote
MAX_TEXT_CHARS = 1_000_000
MAX_ID_CHARS = 200
MAX_FILM_CHARS = 4096
MAX_FILM_SECONDS = 10_000_000.0  # ~115 days: no film is longer
MAX_TIMESTAMP = 32_503_680_000.0  # the year 3000: any clock (and datetime, in any zone) shows it
MAX_SETTINGS = 64
MAX_SETTING_CHARS = 1000
MAX_NOTE_CHARS = 500
LINE_ID_PREFIX = "L"  # a version-1 message's id: "L" + its line number


def default_history_root() -> Path:
    return user_data_dir() / "chats"


def new_conversation_id() -> str:
    """A new id; ids sort by creation time."""
    return f"{time.time_ns():016x}-{secrets.token_hex(4)}"


def new_message_id() -> str:
    """A new message id (never of the ``L<n>`` form of version-1 messages)."""
    return f"m{time.time_ns():016x}-{secrets.token_hex(3)}"


def coverage_note(fraction: float, watched_s: float) -> str:
    """What a whole-film answer given from part of the film says (stored with it)."""
    from moviechat_desktop.timefmt import format_time

    percent = min(99, max(0, round(100 * fraction)))
    return f"Answered from {percent}% of the film (up to {format_time(watched_s, hours=True)})."


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
    # version 2 (module docstring)
    # "" only for a message made in memory; not compared (a message read back equals the one
    # written, whatever id its file gave it)
    id: str = field(default="", compare=False)
    replaces: str | None = None  # the id of the message this one replaces
    stopped: bool = False  # an answer the user stopped: ``text`` is the part written
    coverage: str = ""  # "Answered from 47% of the film (up to 00:14:02)."

    def to_json(self) -> dict[str, Any]:
        """The line's object: version 2 (``ValueError`` without an ``id``), or version 1
        for a message made without an id and without any version-2 field."""
        data = {"v": HISTORY_FORMAT, **asdict(self)}
        for key, empty in (("settings", None), ("replaces", None), ("stopped", False),
                           ("coverage", "")):  # fmt: skip
            if data[key] == empty:
                del data[key]
        if not self.id:
            if any(key in data for key in ("replaces", "stopped", "coverage")):
                raise ValueError("a version-2 message needs an id")
            data["v"] = 1
            del data["id"]
        return data

    @classmethod
    def from_json(cls, data: Any) -> ChatRecord:
        """Inverse of ``to_json``; ``ValueError`` naming the first bad field when ``data`` is
        not a valid message (every field is checked: type, range, size)."""
        version = data.get("v") if isinstance(data, dict) else None
        if isinstance(version, bool) or version not in READ_FORMATS:
            raise ValueError("not a version-1 or version-2 chat message")
        at_s = data.get("at_s")
        extra: dict[str, Any] = {}
        if version == 2:
            extra = _version_two(data)
        return cls(
            conversation=_text(data, "conversation", MAX_ID_CHARS, empty=False),
            role=_choice(data, "role", ROLES),
            text=_text(data, "text", MAX_TEXT_CHARS),
            mode=_choice(data, "mode", MODES),
            at_s=None if at_s is None else _number(data, "at_s", MAX_FILM_SECONDS),
            timestamp=_number(data, "timestamp", MAX_TIMESTAMP),
            film=_text(data, "film", MAX_FILM_CHARS) if "film" in data else "",
            settings=_settings(data.get("settings")),
            **extra,
        )


def _version_two(data: dict[str, Any]) -> dict[str, Any]:
    """The version-2 fields of a line, checked (module docstring)."""
    extra: dict[str, Any] = {"id": _text(data, "id", MAX_ID_CHARS, empty=False)}
    if data.get("replaces") is not None:
        extra["replaces"] = _text(data, "replaces", MAX_ID_CHARS, empty=False)
    answer = data.get("role") == "assistant"
    if "stopped" in data:
        if not isinstance(data["stopped"], bool):
            raise ValueError("stopped is not true or false")
        if data["stopped"] and not answer:
            raise ValueError("stopped is only for answers")
        extra["stopped"] = data["stopped"]
    if "coverage" in data:
        extra["coverage"] = _text(data, "coverage", MAX_NOTE_CHARS)
        if extra["coverage"] and not answer:
            raise ValueError("coverage is only for answers")
    return extra


def _text(data: dict[str, Any], key: str, limit: int, *, empty: bool = True) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} is not text")
    if len(value) > limit or (not empty and not value):
        raise ValueError(f"{key} is {'empty' if not value else 'too long'}")
    return value


def _choice(data: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = data.get(key)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{key} is not one of {', '.join(allowed)}")
    return value


def _number(data: dict[str, Any], key: str, limit: float) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} is not a number")
    number = float(value) if abs(value) <= 1e308 else math.inf
    if not (math.isfinite(number) and 0 <= number <= limit):
        raise ValueError(f"{key} is out of range")
    return number


def _settings(value: Any) -> dict[str, Any] | None:
    """An answer's generation settings: a small object of plain values, or absent."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_SETTINGS:
        raise ValueError("settings is not a small object")
    for key, item in value.items():
        plain = (
            item is None
            or isinstance(item, bool | int | str)
            or (isinstance(item, float) and math.isfinite(item))
        )
        if (
            len(key) > MAX_SETTING_CHARS
            or not plain
            or (isinstance(item, str | int) and len(str(item)) > MAX_SETTING_CHARS)
        ):
            raise ValueError(f"settings has a bad value for {key[:40]!r}")
    return dict(value)


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
        rejected: list[tuple[int, bytes, str]] = []
        for number, line in enumerate(lines[:-1], start=1):
            if not line.strip():
                continue
            try:
                record = parse_line(line)
            except ValueError as err:
                rejected.append((number, line, str(err)))
                continue
            if not record.id:  # version 1: known by its line
                record = replace(record, id=f"{LINE_ID_PREFIX}{number}")
            records.append(record)
        if rejected:
            self._set_aside(rejected)
        return records

    @property
    def rejected_path(self) -> Path:
        """Where lines that are not valid messages are copied (the history is never edited)."""
        return self.path.with_name(self.path.name + REJECTED_SUFFIX)

    def _set_aside(self, rejected: list[tuple[int, bytes, str]]) -> None:
        """Copy each bad line to the side file once, with one warning; later reads skip it
        quietly."""
        try:
            known = set(self.rejected_path.read_bytes().split(b"\n"))
        except FileNotFoundError:
            known = set()
        except OSError as err:
            log.warning("chat history %s: cannot read %s: %s", self.path, self.rejected_path, err)
            known = set()
        for number, line, why in rejected:
            if line in known:
                log.debug("chat history %s: line %d skipped again (%s)", self.path, number, why)
                continue
            known.add(line)
            try:
                append_line(self.rejected_path, line)
                kept = f"copied to {self.rejected_path.name}"
            except OSError as err:
                kept = f"could not be copied aside: {err}"
            log.warning("chat history %s: line %d skipped (%s); %s", self.path, number, why, kept)

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


def parse_line(line: bytes) -> ChatRecord:
    """One line of a history file as a message; ``ValueError`` (one line, naming what is
    wrong) for anything else — never a ``RecursionError`` or ``KeyError``."""
    if len(line) > MAX_LINE_BYTES:
        raise ValueError("line too long")
    try:
        data = json.loads(line)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as err:  # UnicodeDecodeError is a ValueError
        raise ValueError(f"not JSON: {str(err)[:80]}") from None
    return ChatRecord.from_json(data)


def summarize(records: list[ChatRecord]) -> list[ConversationSummary]:
    """The conversations among ``records``, oldest first, as listed to the user."""
    groups: dict[str, list[ChatRecord]] = {}
    for record in records:
        groups.setdefault(record.conversation, []).append(record)
    summaries = []
    for cid, written in groups.items():
        messages = current_branch(written)
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


def current_branch(records: list[ChatRecord]) -> list[ChatRecord]:
    """The messages of one conversation as they stand after every edit and regeneration
    (module docstring): replayed in file order, a message that ``replaces`` another drops that
    one and everything after it on the branch; the ones it replaced stay in the file."""
    branch: list[ChatRecord] = []
    position: dict[str, int] = {}  # id → index on the branch
    replaced_by: dict[str, str] = {}
    for record in records:
        if record.replaces is not None:
            target, seen = record.replaces, set()
            while target not in position and target in replaced_by and target not in seen:
                seen.add(target)
                target = replaced_by[target]
            if target in position:
                cut = position[target]
                for dropped in branch[cut:]:
                    position.pop(dropped.id, None)
                del branch[cut:]
            if record.id:
                replaced_by[record.replaces] = record.id
        if record.id:
            position[record.id] = len(branch)
        branch.append(record)
    return branch


def find_on_branch(branch: list[ChatRecord], message_id: str, replaced: list[ChatRecord]) -> int:
    """The index on ``branch`` of message ``message_id``, or of what replaced it since (an
    operation repeated after a crash); -1 when it is on no branch. ``replaced`` is every
    message of the conversation, to follow the replacements."""
    ids = {record.id: index for index, record in enumerate(branch) if record.id}
    replaced_by = {r.replaces: r.id for r in replaced if r.replaces is not None and r.id}
    seen: set[str] = set()
    while message_id not in ids and message_id in replaced_by and message_id not in seen:
        seen.add(message_id)
        message_id = replaced_by[message_id]
    return ids.get(message_id, -1)


def to_conversation(records: list[ChatRecord]) -> Conversation:
    """The prompt-side ``Conversation`` of ``records``: the current branch's questions, each
    with the answer that follows it; a question left unanswered (failed, crashed) or whose
    answer was stopped is not part of it."""
    from moviechat_desktop.engine.model.llm import Conversation

    conversation = Conversation()
    question: str | None = None
    for record in current_branch(records):
        if record.role == "user":
            question = record.text
        elif question is not None:
            if not record.stopped:
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
    """The conversation's current branch as Markdown: each message with who, its mode and
    breakpoint time, and when it was written; an edited question and a regenerated answer are
    marked, a stopped answer too (its partial text kept), an unanswered question as such, and
    an answer given from part of the film carries its coverage note."""
    branch = current_branch(conversation_records)
    out = [f"# Conversation about {film_name}", ""]
    if branch:
        first = time.strftime("%Y-%m-%d %H:%M", time.localtime(branch[0].timestamp))
        out += [f"_Started {first}; {len(branch)} messages._", ""]
    for i, record in enumerate(branch):
        who = "Question" if record.role == "user" else "Answer"
        if record.replaces is not None:
            who += " (edited)" if record.role == "user" else " (regenerated)"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.timestamp))
        out += [f"## {who} · {_where(record)} · {when}", ""]
        text = _body(record.text.strip())
        if record.stopped:
            text = f"{text} _(stopped)_" if text else "_(stopped)_"
        out += [text, ""]
        if record.coverage:
            out += [f"_{record.coverage}_", ""]
        following = branch[i + 1] if i + 1 < len(branch) else None
        if record.role == "user" and (following is None or following.role != "assistant"):
            out += ["_(no answer)_", ""]
    return "\n".join(out).rstrip("\n") + "\n"
