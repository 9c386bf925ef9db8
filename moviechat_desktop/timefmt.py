"""Film times as people write them: ``"01:12:30"``, ``"72:30"``, ``"1:05"``, ``"95s"``.

Qt-free and torch-free: the GUI (labels, chat links), the CLI (``--at``) and the tests share
these rules. ``format_time`` writes, ``parse_time`` reads, ``find_times`` locates times inside
free text (an assistant's answer) so the chat can turn them into seek links.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["TimeMention", "find_times", "format_time", "parse_time"]

# h:mm:ss, mm:ss or m:ss, with an optional fraction; minutes and seconds are two digits after
# a colon. Not part of a longer number or ratio ("10:30:45:12", "3.14:15", "1:2").
_CLOCK = re.compile(
    r"(?<![\d:.])"
    r"(?:(?P<h>\d{1,3}):)?(?P<m>\d{1,4}):(?P<s>[0-5]\d)(?P<frac>\.\d{1,3})?"
    r"(?![\d:]|\.\d)"
)
_SECONDS = re.compile(r"^\s*(?P<num>\d+(?:\.\d*)?|\.\d+)\s*(?:s|sec|secs|seconds?)?\s*$", re.I)


def format_time(seconds: float, *, hours: bool | None = None, fraction: bool = False) -> str:
    """Seconds → ``"mm:ss"`` (under an hour) or ``"hh:mm:ss"``; negative and NaN clamp to 0.

    ``hours=True`` always writes the hour field (``"00:04:05"``: use it for every time of a
    film that lasts an hour or more so the labels do not change width); ``hours=False`` never
    does (minutes may then exceed 59). ``fraction=True`` adds tenths (``"04:05.3"``).
    """
    if not math.isfinite(seconds) or seconds < 0:
        seconds = 0.0
    if fraction:
        tenths = round(seconds * 10)
        whole, tenth = divmod(tenths, 10)
    else:
        whole, tenth = math.floor(seconds), 0
    h, rest = divmod(int(whole), 3600)
    m, s = divmod(rest, 60)
    hours_field = h > 0 if hours is None else hours
    text = f"{h:02d}:{m:02d}:{s:02d}" if hours_field else f"{h * 60 + m:02d}:{s:02d}"
    return f"{text}.{tenth}" if fraction else text


def parse_time(text: str) -> float:
    """``"01:12:30"`` / ``"72:30"`` / ``"1:05.5"`` / ``"95"`` / ``"95s"`` → seconds.

    Raises ``ValueError`` with a readable message for anything else (including negative
    times and minutes/seconds fields of 60 or more after an hour field).
    """
    stripped = text.strip()
    plain = _SECONDS.match(stripped)
    if plain:
        seconds = float(plain.group("num"))
        if not math.isfinite(seconds):  # "999…9" (hundreds of digits) reads as infinity
            raise ValueError(f"not a time: {text[:40]!r} (too large)")
        return seconds
    match = _CLOCK.fullmatch(stripped)
    if not match:
        raise ValueError(f"not a time: {text!r} (use h:mm:ss, mm:ss or seconds)")
    h = int(match.group("h") or 0)
    m = int(match.group("m"))
    if match.group("h") is not None and m >= 60:
        raise ValueError(f"not a time: {text!r} (minutes must be below 60)")
    s = int(match.group("s")) + float(match.group("frac") or 0.0)
    return h * 3600 + m * 60 + s


@dataclass(frozen=True)
class TimeMention:
    """A time written inside a text: ``text[start:end]`` reads ``seconds``."""

    start: int
    end: int
    seconds: float
    text: str


def find_times(text: str, *, max_seconds: float | None = None) -> list[TimeMention]:
    """Every ``h:mm:ss`` / ``mm:ss`` time in ``text``, in order.

    ``max_seconds`` drops mentions past the end of the film (``"12:45"`` in a 5-minute clip is
    more likely a clock time than a position). Bare numbers are never taken as times.
    """
    found: list[TimeMention] = []
    for match in _CLOCK.finditer(text):
        try:
            seconds = parse_time(match.group(0))
        except ValueError:
            continue
        if max_seconds is not None and seconds > max_seconds:
            continue
        found.append(TimeMention(match.start(), match.end(), seconds, match.group(0)))
    return found
