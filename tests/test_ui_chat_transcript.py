"""The chat's Qt-free parts: transcript, rich-text rendering with seek links, history."""

import json
import re
from html import unescape

import pytest

from moviechat_desktop.ui.chat_render import (
    linkify_times,
    parse_seek_href,
    render_transcript,
    seek_href,
)
from moviechat_desktop.ui.chat_transcript import (
    ANSWERING,
    BREAKPOINT,
    DONE,
    FAILED,
    GLOBAL,
    STOPPED,
    ChatTranscript,
    mode_label,
)
from moviechat_desktop.ui.playback_history import PlaybackHistory


def test_mode_labels():
    assert mode_label(GLOBAL, None) == "Whole film"
    assert mode_label(BREAKPOINT, 4350) == "This moment (01:12:30)"
    assert mode_label(BREAKPOINT, 72.5) == "This moment (01:12)"
    assert mode_label(BREAKPOINT, 72.5, hours=True) == "This moment (00:01:12)"


def test_transcript_keeps_order_ids_and_pending():
    t = ChatTranscript()
    a = t.add("  What is he holding? ", BREAKPOINT, 12.0)
    b = t.add("How does it end?", GLOBAL, 99.0)  # a time is meaningless in global mode
    assert a.question == "What is he holding?"
    assert b.at_s is None
    assert a.id != b.id
    assert t.get(b.id) is b
    assert t.pending() == [a, b]
    a.state = DONE
    assert t.pending() == [b]
    with pytest.raises(ValueError):
        t.add("?", "sideways")


def test_markdown_export_has_modes_times_answers_and_states():
    t = ChatTranscript()
    a = t.add("What is he holding?", BREAKPOINT, 4350)
    a.answer, a.state = "An apple.", DONE
    b = t.add("Line one\nline two", GLOBAL)
    b.answer, b.state = "Partial", STOPPED
    c = t.add("And then?", GLOBAL)
    c.state, c.note = FAILED, "weights missing"
    d = t.add("Still waiting?", GLOBAL)
    md = t.to_markdown("/films/My Film.mkv")
    assert md.startswith("# My Film.mkv\n")
    assert "Film: `/films/My Film.mkv`" in md
    assert "## Q (This moment (01:12:30)" in md
    assert "> What is he holding?\n\nAn apple.\n" in md
    assert "> Line one\n> line two" in md
    assert "Partial *(stopped)*" in md
    assert "*No answer: weights missing*" in md
    assert "*(not answered yet)*" in md
    assert md.index("What is he holding?") < md.index("Line one") < md.index(d.question)


def test_seek_hrefs_round_trip_and_reject_other_links():
    assert parse_seek_href(seek_href(72.5)) == pytest.approx(72.5)
    assert parse_seek_href("https://example.com") is None
    assert parse_seek_href("seek:abc") is None
    assert parse_seek_href("seek:-3") is None


def test_linkify_escapes_html_and_links_each_time():
    html = linkify_times("<b>at 01:05</b> & later 1:02:03\nend")
    assert "<b>" not in html and "&lt;b&gt;" in html
    hrefs = re.findall(r'href="([^"]+)"', html)
    assert [parse_seek_href(h) for h in hrefs] == [65.0, 3723.0]
    assert "<br/>" in html
    # the visible text is the original text
    assert unescape(re.sub(r"<[^>]+>", "", html.replace("<br/>", "\n"))) == (
        "<b>at 01:05</b> & later 1:02:03\nend"
    )


def test_render_links_the_breakpoint_chip_and_marks_states():
    t = ChatTranscript()
    a = t.add("What now?", BREAKPOINT, 30.0)
    a.state, a.answer = ANSWERING, "He jumps at 00:31"
    b = t.add("And the end?", GLOBAL)
    html = render_transcript(t.entries, duration_s=60.0)
    hrefs = [parse_seek_href(h) for h in re.findall(r'href="([^"]+)"', html)]
    assert hrefs == [30.0, 31.0]  # the chip, then the time in the answer
    assert "This moment (00:30)" in html
    assert "▍" in html  # still streaming
    assert "queued — waits for the current answer" in html  # b waits behind a
    a.state = DONE
    html = render_transcript(t.entries, duration_s=60.0)
    assert "queued" not in html and "sending" in html  # b is next in line now
    assert b.question in html


def test_history_recent_order_limit_and_persistence(tmp_path):
    path = tmp_path / "h.json"
    h = PlaybackHistory(path, limit=3)
    for name in ("a.mp4", "b.mp4", "c.mp4", "a.mp4", "d.mp4"):
        h.add_recent(tmp_path / name)
    expected = [str(tmp_path / n) for n in ("d.mp4", "a.mp4", "c.mp4")]
    assert h.recent() == expected
    assert PlaybackHistory(path, limit=3).recent() == expected
    h.remove_recent(tmp_path / "a.mp4")
    assert str(tmp_path / "a.mp4") not in PlaybackHistory(path).recent()


def test_history_resume_positions_skip_start_and_end(tmp_path):
    h = PlaybackHistory(tmp_path / "h.json")
    film = tmp_path / "film.mkv"
    h.remember_position(film, 600.0, 5400.0)
    assert PlaybackHistory(tmp_path / "h.json").resume_position(film) == 600.0
    h.remember_position(film, 5395.0, 5400.0)  # finished: forget it
    assert h.resume_position(film) is None
    h.remember_position(film, 600.0, 5400.0)
    h.remember_position(film, 3.0, 5400.0)  # barely started: forget it
    assert PlaybackHistory(tmp_path / "h.json").resume_position(film) is None


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"recent": 5, "positions": []}'])
def test_history_survives_a_damaged_file(tmp_path, content):
    path = tmp_path / "h.json"
    path.write_text(content)
    h = PlaybackHistory(path)
    assert h.recent() == []
    h.add_recent(tmp_path / "x.mp4")
    assert json.loads(path.read_text())["recent"] == [str(tmp_path / "x.mp4")]


def test_saved_messages_become_entries_and_an_unanswered_question_says_so():
    from moviechat_desktop.engine.store.chat_history import ChatRecord
    from moviechat_desktop.ui.chat_transcript import DONE, STOPPED, entries_from_records

    def record(role, text, mode="global", at_s=None, t=1_700_000_000.0):
        return ChatRecord("c1", role, text, mode, at_s, t)

    records = [
        record("user", "Who is there?"),
        record("assistant", "A rabbit."),
        record("user", "What now?", "breakpoint", 72.5),  # stopped: no answer saved
        record("user", "And later?", "breakpoint", 90.0),
        record("assistant", "He walks away at 01:35."),
        record("assistant", "a stray answer with no question before it"),
    ]
    entries = entries_from_records(records)
    assert [(e.question, e.mode, e.at_s, e.answer, e.state) for e in entries] == [
        ("Who is there?", "global", None, "A rabbit.", DONE),
        ("What now?", "breakpoint", 72.5, "", STOPPED),
        ("And later?", "breakpoint", 90.0, "He walks away at 01:35.", DONE),
    ]
    assert all(e.restored for e in entries)
    assert entries[1].note == "no answer was saved"
    transcript = ChatTranscript()
    live = transcript.add("Asked just now?")
    transcript.restore(entries)
    assert transcript.entries == [*entries, live]
    assert "> What now?\n\n*(no answer was saved)*" in transcript.to_markdown()
