"""Outside text made safe to print to a terminal.

File names, film names read from cache headers, answers and dialogue lines come from outside
the program; printed raw, an escape sequence in them can set the terminal's title, move the
cursor or clear the screen. ``for_terminal`` shows every control character escaped instead.
"""

from __future__ import annotations

import logging
import unicodedata

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\x1b": "\\e"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_terminal(text: str, keep_newlines: bool = False) -> str:
    """``text`` with control characters (C0, DEL, C1, and Unicode format/bidi controls)
    escaped as ``\\xNN`` / ``\\uNNNN``; ``keep_newlines`` keeps ``\\n`` and ``\\t`` as they are
    (answers and dialogue are multi-line)."""
    out = []
    for char in str(text):
        if keep_newlines and char in "\n\t":
            out.append(char)
        elif _is_control(char):
            out.append(_escape(char))
        else:
            out.append(char)
    return "".join(out)


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf") and char != "\u200d"


def json_for_terminal(data: object, **kwargs: object) -> str:
    """``json.dumps(data, ensure_ascii=False)`` with every control character left by it (C1,
    Unicode format/bidi controls) written as a ``\\uXXXX`` escape: the same JSON value, safe
    to print."""
    import json

    text = json.dumps(data, ensure_ascii=False, **kwargs)  # type: ignore[arg-type]
    return "".join(json.dumps(c)[1:-1] if _is_control(c) else c for c in text)


class TerminalLogFormatter(logging.Formatter):
    """Log records as the terminal should show them: control characters escaped (a film's
    name in a warning cannot drive the terminal), line breaks of tracebacks kept."""

    def format(self, record: logging.LogRecord) -> str:
        return for_terminal(super().format(record), keep_newlines=True)
