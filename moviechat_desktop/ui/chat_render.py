"""Chat entries → the rich text a ``QTextBrowser`` shows (Qt-free, so it is tested plainly).

Every time in a bubble is a link ``seek:SECONDS``: the breakpoint chip of a question and each
``mm:ss`` / ``hh:mm:ss`` written in an answer. The chat panel turns a click into a seek.
Qt's rich text understands tables and a subset of CSS, hence the table-based bubbles.
"""

from __future__ import annotations

import functools
from html import escape
from typing import Any

from moviechat_desktop.timefmt import find_times
from moviechat_desktop.ui.chat_transcript import (
    ANSWERING,
    BREAKPOINT,
    DONE,
    FAILED,
    QUEUED,
    STOPPED,
    WAITING,
    ChatEntry,
    mode_label,
)

SEEK_SCHEME = "seek"
MORE_HREF = "more:earlier"  # the link that shows earlier entries of a long chat
COPY_SCHEME = "copy"  # "copy:<entry id>": copy that answer
MOMENT_SCHEME = "moment"  # "moment:<entry id>": ask that question about its moment instead
REGENERATE_SCHEME = "regenerate"  # "regenerate:<entry id>": answer that question again
EDIT_SCHEME = "edit"  # "edit:<entry id>": put that question in the box to edit and resend

_QUESTION_BG = "#2d4f7c"
_ANSWER_BG = "#2b2b30"
_NOTE_COLOUR = "#a0a4ab"
_ERROR_COLOUR = "#ff8a80"
_LINK_COLOUR = "#7fb6ff"


EMPTY_CHAT_HTML = (
    f'<p style="color:{_NOTE_COLOUR}; margin-top:24px" align="center">'
    "Pause anywhere and ask about the scene,<br/>or ask about the whole film.<br/><br/>"
    "Times in answers are links: click one to jump there.</p>"
)


def seek_href(seconds: float) -> str:
    return f"{SEEK_SCHEME}:{seconds:.3f}"


def parse_seek_href(href: str) -> float | None:
    """``"seek:72.500"`` → 72.5; anything else → None."""
    scheme, _, value = href.partition(":")
    if scheme != SEEK_SCHEME:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def parse_moment_href(href: str) -> int | None:
    """``"moment:12"`` → 12 (an entry id); anything else → None."""
    scheme, _, value = href.partition(":")
    return int(value) if scheme == MOMENT_SCHEME and value.isdigit() else None


def linkify_times(text: str, *, max_seconds: float | None = None) -> str:
    """Escape ``text`` for rich text and make each time in it a seek link."""
    parts: list[str] = []
    last = 0
    for mention in find_times(text, max_seconds=max_seconds):
        parts.append(escape(text[last : mention.start]))
        parts.append(
            f'<a href="{seek_href(mention.seconds)}" style="color:{_LINK_COLOUR}">'
            f"{escape(mention.text)}</a>"
        )
        last = mention.end
    parts.append(escape(text[last:]))
    return "".join(parts).replace("\n", "<br/>")


def markdown_html(text: str, *, max_seconds: float | None = None) -> str:
    """An answer as rich text: Markdown (CommonMark by markdown-it-py, raw HTML shown as
    text, never interpreted) with every time in its plain text a seek link (not in code)."""
    return _markdown().render(text, {"max_seconds": max_seconds}).strip()


def _text_with_times(self: Any, tokens: list, idx: int, options: Any, env: dict) -> str:
    return linkify_times(tokens[idx].content, max_seconds=env.get("max_seconds"))


@functools.cache
def _markdown() -> Any:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "breaks": True})  # a newline stays one
    md.add_render_rule("text", _text_with_times)
    return md


def render_entry(
    entry: ChatEntry,
    *,
    hours: bool = False,
    duration_s: float | None = None,
    behind_another: bool = True,
    model_ready: bool = True,
) -> str:
    """One question bubble (right) and its answer bubble (left); ``model_ready`` False:
    a question first in line says it waits for the model to load."""
    label = escape(mode_label(entry.mode, entry.at_s, hours=hours))
    if entry.mode == BREAKPOINT and entry.at_s is not None:
        chip = f'<a href="{seek_href(entry.at_s)}" style="color:{_LINK_COLOUR}">{label}</a>'
    else:
        chip = label
    if entry.mode != BREAKPOINT and entry.moment_s is not None:
        moment = escape(mode_label(BREAKPOINT, entry.moment_s, hours=hours))
        chip += (
            f' · <a href="{MOMENT_SCHEME}:{entry.id}" style="color:{_LINK_COLOUR}">'
            f"ask about {moment[0].lower()}{moment[1:]} instead</a>"
        )
    if entry.revised:
        chip += f" · <i>{escape(entry.revised)}</i>"
    if entry.finished and entry.question_id:
        chip += f' · <a href="{EDIT_SCHEME}:{entry.id}" style="color:#c8d6ea">Edit</a>'
    question = escape(entry.question).replace("\n", "<br/>")
    html = [
        f'<table width="100%" cellspacing="0" cellpadding="0" style="margin-top:10px">'
        f'<tr><td width="12%"></td><td bgcolor="{_QUESTION_BG}" style="padding:8px">'
        f'<span style="font-size:small;color:#c8d6ea">{chip}</span><br/>{question}'
        f"</td></tr></table>"
    ]
    html.append(_answer_html(entry, duration_s, behind_another, model_ready))
    return "".join(html)


def _answer_html(
    entry: ChatEntry, duration_s: float | None, behind_another: bool, model_ready: bool = True
) -> str:
    body = markdown_html(entry.answer, max_seconds=duration_s) if entry.answer else ""
    if body.startswith("<p>") and body.endswith("</p>") and body.count("<p>") == 1:
        body = body[3:-4]  # one paragraph: no extra margins in the bubble
    note = escape(entry.note)
    if entry.state == QUEUED:
        if behind_another:
            text = "queued — waits for the current answer"
        else:
            text = "sending…" if model_ready else "waiting for the assistant's model to load…"
        body = f'<i style="color:{_NOTE_COLOUR}">{text}</i>'
    elif entry.state == WAITING:
        body = f'<i style="color:{_NOTE_COLOUR}">{note or "waiting for the assistant"}</i>'
    elif entry.state == ANSWERING:
        body = (body or f'<i style="color:{_NOTE_COLOUR}">thinking…</i>') + " ▍"
    elif entry.state == STOPPED:
        body += f' <i style="color:{_NOTE_COLOUR}">({note or "stopped"})</i>'
    elif entry.state == FAILED:
        body = f'<span style="color:{_ERROR_COLOUR}">{note or "no answer"}</span>'
    footnote = " ".join(
        escape(text)
        for text in (entry.coverage, entry.note if entry.state == DONE else "")
        if text and entry.state in (DONE, STOPPED)
    )
    if footnote:
        body += f'<br/><i style="color:{_NOTE_COLOUR};font-size:small">{footnote}</i>'
    links = list(entry.links)
    if entry.answer and entry.state in (DONE, STOPPED):
        links.append((f"{COPY_SCHEME}:{entry.id}", "Copy"))  # this answer, as written
    if entry.finished and entry.question_id:
        links.append((f"{REGENERATE_SCHEME}:{entry.id}", "Regenerate"))
    if links:
        body += "<br/>" + " &nbsp;·&nbsp; ".join(
            f'<a href="{escape(href)}" style="color:{_LINK_COLOUR}"><b>{escape(text)}</b></a>'
            for href, text in links
        )
    return (
        f'<table width="100%" cellspacing="0" cellpadding="0" style="margin-top:4px">'
        f'<tr><td bgcolor="{_ANSWER_BG}" style="padding:8px">{body}</td>'
        f'<td width="12%"></td></tr></table>'
    )


def settled_count(entries: list[ChatEntry]) -> int:
    """How many entries at the start are finished: their bubbles no longer change."""
    for index, entry in enumerate(entries):
        if not entry.finished:
            return index
    return len(entries)


def render_tail(
    entries: list[ChatEntry],
    *,
    hours: bool = False,
    duration_s: float | None = None,
    settled: bool = False,
    model_ready: bool = True,
) -> str:
    """Entries that follow the settled ones: each is behind the unfinished ones before it
    (``settled=True``: entries that have just finished, behind none)."""
    return "".join(
        render_entry(
            e,
            hours=hours,
            duration_s=duration_s,
            behind_another=index > 0 and not settled,
            model_ready=model_ready,
        )
        for index, e in enumerate(entries)
    )


def render_transcript(
    entries: list[ChatEntry],
    *,
    hours: bool = False,
    duration_s: float | None = None,
    hidden: int = 0,
    model_ready: bool = True,
) -> str:
    """The whole chat; ``hidden`` leading entries are left out behind a "show earlier" link."""
    parts = []
    if entries and entries[0].restored:
        started = entries[0].asked_at.strftime("%Y-%m-%d %H:%M")
        parts.append(
            f'<p style="color:{_NOTE_COLOUR}; font-size:small" align="center">'
            f"Saved conversation, started {started} · New chat starts afresh</p>"
        )
    if hidden:
        earlier = "1 earlier question" if hidden == 1 else f"{hidden} earlier questions"
        parts.append(
            f'<p align="center"><a href="{MORE_HREF}" style="color:{_LINK_COLOUR}">'
            f"Show {earlier}</a></p>"
        )
    for index, entry in enumerate(entries):
        if index < hidden:
            continue
        behind = any(not e.finished for e in entries[:index])
        parts.append(
            render_entry(
                entry,
                hours=hours,
                duration_s=duration_s,
                behind_another=behind,
                model_ready=model_ready,
            )
        )
    return "".join(parts)
