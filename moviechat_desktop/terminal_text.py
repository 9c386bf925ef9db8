"""Outside text made safe to print to a terminal.

File names, film names read from cache headers, answers and dialogue lines come from outside
the program; printed raw, an escape sequence in them can set the terminal's title, move the
cursor or clear the screen. ``for_terminal`` shows every control character escaped instead.
"""

from __future__ import annotations

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
        elif unicodedata.category(char) in ("Cc", "Cf") and char not in "\u200d":
            out.append(_escape(char))
        else:
            out.append(char)
    return "".join(out)
