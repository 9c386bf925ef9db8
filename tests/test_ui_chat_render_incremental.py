"""The chat panel lays finished entries out once: a streamed chunk replaces only the entries
still changing, and the document always reads exactly like a full render."""

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QTextBrowser

from moviechat_desktop.ui import chat_render
from moviechat_desktop.ui.chat_panel import SHOWN_AT_FIRST, ChatPanel
from moviechat_desktop.ui.chat_transcript import ANSWERING, DONE, FAILED, STOPPED, ChatEntry


@pytest.fixture
def panel(qtbot):
    widget = ChatPanel()
    qtbot.addWidget(widget)
    widget.resize(420, 700)
    return widget


def full_text(panel) -> str:
    reference = QTextBrowser()
    entries = panel.transcript.entries
    html = (
        chat_render.render_transcript(
            entries, hours=panel.hours, duration_s=None, hidden=panel.hidden
        )
        if entries
        else chat_render.EMPTY_CHAT_HTML
    )
    reference.setHtml(html)
    return reference.toPlainText()


def count_full_renders(panel, monkeypatch):
    calls = []
    real = panel.browser.setHtml
    monkeypatch.setattr(panel.browser, "setHtml", lambda html: (calls.append(1), real(html)))
    return calls


def test_streaming_into_a_long_chat_touches_only_the_live_entries(panel, monkeypatch):
    for i in range(60):
        entry = panel.transcript.add(f"Question {i}?")
        entry.answer, entry.state = f"Answer {i}, at 00:{i:02d}.", DONE
    live = panel.transcript.add("Streaming now?")
    live.state = ANSWERING
    queued = panel.transcript.add("Waiting behind it?")
    panel.render_now()
    assert panel.browser.toPlainText() == full_text(panel)
    full_renders = count_full_renders(panel, monkeypatch)

    for k in range(15):  # chunks
        live.answer += f"word{k} "
        panel.render_now()
        assert panel.browser.toPlainText() == full_text(panel)
    live.state = DONE  # it finishes: laid out for good, still no full render
    panel.render_now()
    queued.state, queued.answer = ANSWERING, "Next"
    panel.render_now()
    queued.state, queued.note = FAILED, "the film was closed"
    panel.render_now()
    assert panel.browser.toPlainText() == full_text(panel)
    assert full_renders == []
    assert "word14" in panel.browser.toPlainText()


def test_a_new_layout_or_conversation_renders_everything_again(panel, monkeypatch):
    first = panel.transcript.add("First?")
    first.answer, first.state = "Yes at 01:05.", DONE
    panel.render_now()
    full_renders = count_full_renders(panel, monkeypatch)
    panel.set_playback("playing", 10.0, 4000.0)  # a film over an hour: times get hours
    panel.render_now()
    assert len(full_renders) == 1
    assert panel.browser.toPlainText() == full_text(panel)

    restored = ChatEntry("Saved earlier?", answer="Saved answer.", state=DONE, restored=True)
    panel.transcript.restore([restored])
    panel.render_now()
    assert len(full_renders) == 2
    assert panel.browser.toPlainText() == full_text(panel)
    assert panel.browser.toPlainText().startswith("Saved conversation")

    panel.clear()
    assert panel.browser.toPlainText() == full_text(panel)
    stopped = panel.transcript.add("Stopped one?")
    stopped.state = STOPPED
    panel.render_now()
    assert panel.browser.toPlainText() == full_text(panel)


def test_a_long_chat_opens_on_its_last_entries_and_shows_earlier_ones_on_request(panel):
    entries = []
    for i in range(120):
        entry = ChatEntry(f"Question number {i}?", answer=f"Answer {i}.", state=DONE)
        entry.restored = True
        entries.append(entry)
    panel.transcript.restore(entries)
    panel.render_now()
    text = panel.browser.toPlainText()
    assert panel.hidden == 120 - SHOWN_AT_FIRST == 90
    assert "Show 90 earlier questions" in text and text.startswith("Saved conversation")
    assert "Question number 89?" not in text and "Question number 90?" in text
    assert text == full_text(panel)

    panel._on_anchor(QUrl(chat_render.MORE_HREF))  # the link, as clicked
    assert panel.hidden == 60 and "Show 60 earlier questions" in panel.browser.toPlainText()
    for _ in range(2):
        panel._on_anchor(QUrl(chat_render.MORE_HREF))
    text = panel.browser.toPlainText()
    assert panel.hidden == 0 and "earlier question" not in text
    assert "Question number 0?" in text and text == full_text(panel)

    live = panel.transcript.add("One more?")  # streaming below still works
    live.state, live.answer = ANSWERING, "Partly"
    panel.render_now()
    assert panel.browser.toPlainText() == full_text(panel)
    panel.copy_to_clipboard()  # Copy and Export take the whole chat, shown or not
    assert "> Question number 0?" in QGuiApplication.clipboard().text()
    panel.clear()
    assert panel.hidden == 0
