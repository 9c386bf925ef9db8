"""From raw subtitle events to clean dialogue lines.

Markup goes (ASS override blocks ``{\\i1}``, ``{\\an8}``; HTML-like tags ``<i>``, ``<font …>``;
WebVTT ``<c.x>``, ``<v Name>``, inline timestamps), HTML entities are decoded, whitespace is
collapsed. Then the lines are tidied as a whole: sorted by start, exact repeats and the same text
shown again back to back (ASS layers, karaoke copies, rolling captions) merged, zero-length or
reversed times given a short duration, lines that start after the film's end dropped and the
others cut at the end. Overlapping lines (two people talking) are kept as they are.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

from moviechat_desktop.engine.dialogue.lines import DialogueLine

ASS_BLOCK = re.compile(r"\{[^}]*\}")
ASS_DRAWING = re.compile(r"\\p[1-9]")
TAG = re.compile(
    r"</?(?:i|b|u|s|em|strong|font|span|c|v|lang|ruby|rt|br|sub|sup)(?:[.\s][^<>]*)?/?>"
    r"|<\d{1,2}:\d{2}(?::\d{2})?[.,]\d{1,3}>",
    re.IGNORECASE,
)
VTT_VOICE = re.compile(r"<v(?:\.[\w.-]+)?\s+([^>]+)>", re.IGNORECASE)
SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]+")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

MIN_DURATION_S = 1.0  # what a zero-length or reversed line is given (less if the next starts)
MERGE_GAP_S = 0.05  # the same text again within this gap is one line shown longer
END_SLACK_S = 1.0  # a line may start this far past the film's last frame


def clean_text(raw: str) -> tuple[str, str]:
    """``(text, speaker)`` of one subtitle event's text; speaker from a WebVTT ``<v Name>``.

    ``raw`` uses ASS conventions (``\\N`` hard breaks), as pysubs2 keeps every format's text.
    """
    if ASS_DRAWING.search(raw):  # a vector drawing (signs, karaoke effects), not words
        return "", ""
    voice = VTT_VOICE.search(raw)
    speaker = voice.group(1).strip() if voice else ""
    text = ASS_BLOCK.sub("", raw)
    text = text.replace("\\N", "\n").replace("\\n", "\n").replace("\\h", " ")
    text = TAG.sub("", text)
    text = html.unescape(text)
    text = TAG.sub("", text)  # tags that were written as entities (&lt;i&gt;)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = CONTROL.sub("", text)
    rows = (SPACES.sub(" ", row).strip() for row in text.split("\n"))
    return "\n".join(row for row in rows if row), speaker


def tidy_lines(
    lines: Iterable[DialogueLine], duration_s: float | None = None
) -> tuple[list[DialogueLine], int]:
    """Sorted, merged, cut at the film's end; ``(lines, how many started past the end)``."""
    ordered = sorted(
        (line for line in lines if line.text), key=lambda line: (line.start_s, line.end_s)
    )
    past_end = 0
    kept: list[DialogueLine] = []
    for i, raw in enumerate(ordered):
        start, end = max(0.0, raw.start_s), raw.end_s
        if end <= start:  # zero-length or reversed: show it briefly, until the next line
            following = next((o.start_s for o in ordered[i + 1 :] if o.start_s > start), None)
            end = start + MIN_DURATION_S
            if following is not None:
                end = min(end, following)
        if duration_s is not None:
            if start > duration_s + END_SLACK_S:
                past_end += 1
                continue
            end = min(end, duration_s) if start < duration_s else start
        if raw.end_s < 0:
            continue
        line = DialogueLine(start, max(end, start), raw.text, raw.speaker)
        repeat = _repeat_of(kept, line)
        if repeat is not None:
            previous = kept.pop(repeat)
            line = DialogueLine(
                previous.start_s, max(previous.end_s, line.end_s), line.text, line.speaker
            )
        kept.append(line)
    kept.sort(key=lambda line: (line.start_s, line.end_s))
    return kept, past_end


def _repeat_of(kept: list[DialogueLine], line: DialogueLine) -> int | None:
    """Index of a recent line with the same text still on screen (or just gone), if any."""
    for index in range(len(kept) - 1, max(-1, len(kept) - 5), -1):
        previous = kept[index]
        same = previous.text == line.text and previous.speaker == line.speaker
        if same and line.start_s <= previous.end_s + MERGE_GAP_S:
            return index
    return None
