"""How the film's dialogue travels between the remote engine's client and its server.

Torch-free (the client imports it). The client resolves the dialogue itself (it has the film:
subtitle files, sidecars, embedded tracks) and sends it once per film and choice:

    PUT /films/{film}/dialogue   {"id", "source", "label", "lines": [[start_s, end_s, text,
                                  speaker], ...], "complete_until_s"}      text lines
                                 {"id", "source": "speech", "language", "chunk_s"}
                                                                           speech, on the server
    PUT /films/{film}/speech/{i} chunk i's audio as Ogg Opus (engine/dialogue/audio_opus.py)

``id`` names what was sent (a digest); every question carries it (``"dialogue"``) and a server
that holds other dialogue for the film (it reopened the film, another client changed it)
answers 409 ``DialogueMissing``: the client sends it again and repeats. Everything from the
other side is checked here (``WireError``: the server answers 400).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Sequence
from typing import Any

from moviechat_desktop.engine.dialogue.lines import Dialogue, DialogueLine
from moviechat_desktop.engine.errors import MovieChatError
from moviechat_desktop.service.remote_wire import WireError

log = logging.getLogger(__name__)

TEXT_SOURCES = ("file", "sidecar", "embedded", "none")
MAX_LINES = 20_000  # a feature film has ~1 000-2 000; karaoke-heavy ASS files a few times that
MAX_LINE_CHARS = 2_000
MAX_LABEL_CHARS = 300
MAX_SPEAKER_CHARS = 200
MAX_LINES_BYTES = 6 * 1024 * 1024  # the lines as JSON in one PUT (remote_wire.MAX_JSON_BODY: 8 MB)
MAX_AUDIO_BODY = 1024 * 1024  # one 30 s chunk: ~90 KB at 24 kb/s; 1 MB allows 280 kb/s
END_SLACK_S = 1.0  # a line may end this far past the film's duration (cleaning.END_SLACK_S)
DIALOGUE_ID = re.compile(r"^[0-9a-z-]{1,80}$")
LANGUAGE = re.compile(r"^(auto|[a-z]{2,3}(-[A-Za-z0-9]{1,8})?)$")


class DialogueMissing(MovieChatError):
    """The server does not hold the dialogue the client means (send it again)."""


# --------------------------------------------------------------------------- lines
def line_to_wire(line: DialogueLine) -> list[Any]:
    return [line.start_s, line.end_s, line.text, line.speaker]


def fit_lines(lines: Sequence[DialogueLine]) -> list[DialogueLine]:
    """The lines within what a server takes: texts cut to ``MAX_LINE_CHARS``; past
    ``MAX_LINES`` lines or ``MAX_LINES_BYTES`` of text (a pathological file: a film has a few
    thousand lines of a few dozen characters), an even spread over the film's time, in order."""
    from moviechat_desktop.engine.dialogue.selection import spread_order

    fitted = [
        DialogueLine(
            line.start_s,
            line.end_s,
            line.text[:MAX_LINE_CHARS],
            line.speaker[:MAX_SPEAKER_CHARS],
        )
        for line in lines
    ]
    total = sum(len(json.dumps(line.text)) + len(json.dumps(line.speaker)) + 48 for line in fitted)
    if len(fitted) <= MAX_LINES and total <= MAX_LINES_BYTES:
        return fitted
    keep = min(len(fitted), MAX_LINES, len(fitted) * MAX_LINES_BYTES // max(total, 1))
    chosen = sorted(spread_order(fitted)[:keep])
    log.warning("dialogue: %d of %d lines sent to the server (its limits)", keep, len(fitted))
    return [fitted[i] for i in chosen]


def text_body(dialogue: Dialogue) -> dict[str, Any]:
    """The PUT body for a text (or no) dialogue, with its ``id``."""
    body: dict[str, Any] = {
        "source": dialogue.source,
        "label": dialogue.label[:MAX_LABEL_CHARS],
        "lines": [line_to_wire(line) for line in fit_lines(dialogue.lines)],
        "complete_until_s": dialogue.complete_until_s,
    }
    digest = hashlib.blake2b(json.dumps(body).encode(), digest_size=16).hexdigest()
    return {"id": f"{dialogue.source}-{digest}", **body}


def speech_body(language: str, chunk_s: float) -> dict[str, Any]:
    return {"id": f"speech-{language.lower()}", "source": "speech", "language": language,
            "chunk_s": chunk_s}  # fmt: skip


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise WireError(f"{what} must be a finite number")
    return float(value)


def _text(value: Any, what: str, limit: int, empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > limit or (not value.strip() and not empty):
        raise WireError(f"{what} must be text of {'0' if empty else '1'}..{limit} characters")
    if "\x00" in value:
        raise WireError(f"{what} holds a NUL character")
    return value


def lines_from_wire(rows: Any, duration_s: float) -> tuple[DialogueLine, ...]:
    """Timed lines from the other side: at most ``MAX_LINES``, times finite, inside the film
    (``0 <= start <= end <= duration + 1 s``) and in order of their start."""
    if not isinstance(rows, list):
        raise WireError("lines must be a list")
    if len(rows) > MAX_LINES:
        raise WireError(f"at most {MAX_LINES} dialogue lines, got {len(rows)}")
    lines = []
    previous = 0.0
    for number, row in enumerate(rows, 1):
        if not isinstance(row, list) or len(row) not in (3, 4):
            raise WireError(f"dialogue line {number} is not [start_s, end_s, text, speaker]")
        start = _finite(row[0], f"dialogue line {number}'s start")
        end = _finite(row[1], f"dialogue line {number}'s end")
        if not 0.0 <= start <= end <= duration_s + END_SLACK_S:
            raise WireError(
                f"dialogue line {number}'s times ({start:g}..{end:g} s) are not inside the film "
                f"(0..{duration_s:g} s) or end before they start"
            )
        if start < previous:
            raise WireError(f"dialogue line {number} starts before the line above it")
        previous = start
        text = _text(row[2], f"dialogue line {number}'s text", MAX_LINE_CHARS)
        speaker = "" if len(row) == 3 else _text(row[3], "a speaker", MAX_SPEAKER_CHARS, True)
        lines.append(DialogueLine(start, end, text, speaker))
    return tuple(lines)


def check_id(value: Any) -> str:
    if not isinstance(value, str) or not DIALOGUE_ID.match(value):
        raise WireError("the dialogue's id must be a short lowercase name")
    return value


def text_from_wire(body: dict[str, Any], duration_s: float) -> Dialogue:
    """A text (or no) dialogue sent by a client."""
    source = body.get("source")
    if source not in TEXT_SOURCES:
        raise WireError(f"the dialogue's source must be one of {', '.join(TEXT_SOURCES)}, speech")
    label = _text(body.get("label"), "the dialogue's label", MAX_LABEL_CHARS)
    lines = lines_from_wire(body.get("lines", []), duration_s)
    if source == "none" and lines:
        raise WireError("a dialogue from no source has no lines")
    until = body.get("complete_until_s")
    if until is not None:
        until = min(max(_finite(until, "complete_until_s"), 0.0), duration_s)
    return Dialogue(source, label, lines, until)


def language_from_wire(value: Any) -> str:
    if not isinstance(value, str) or not LANGUAGE.match(value):
        raise WireError("the speech language must be 'auto' or a language code like 'en'")
    return value


def chunks_to_wire(chunks: dict[int, Sequence[DialogueLine]]) -> dict[str, list[list[Any]]]:
    return {str(i): [line_to_wire(line) for line in lines] for i, lines in sorted(chunks.items())}


def chunks_from_wire(
    data: Any, n_chunks: int, duration_s: float
) -> dict[int, tuple[DialogueLine, ...]]:
    """The server's recognised chunks (``{"index": lines}``), checked."""
    if not isinstance(data, dict):
        raise WireError("the recognised chunks must be an object")
    chunks = {}
    for key, rows in data.items():
        if not (isinstance(key, str) and key.isdigit() and int(key) < n_chunks):
            raise WireError(f"chunk {key!r} is not one of the film's {n_chunks} chunks")
        chunks[int(key)] = lines_from_wire(rows, duration_s)
    return chunks
