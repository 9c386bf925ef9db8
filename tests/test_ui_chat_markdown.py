"""Answers as Markdown (issue #14 item 4, part): markdown-it-py with raw HTML disabled, time
links kept (not inside code), one paragraph without extra margins, a Copy link per answer."""

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtWidgets import QApplication

from moviechat_desktop.ui.chat_panel import ChatPanel
from moviechat_desktop.ui.chat_render import markdown_html, render_entry
from moviechat_desktop.ui.chat_transcript import DONE, ChatEntry


def test_markdown_with_time_links_and_no_raw_html():
    html = markdown_html(
        "**The rabbit** <script>alert(1)</script> wakes at 00:03.\n\n"
        "- stretches at 01:02\n- `00:04` in code stays text\n\nA [link](javascript:x)",
        max_seconds=100,
    )
    assert "<strong>The rabbit</strong>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html  # shown, never run
    assert '<a href="seek:3.000"' in html and '<a href="seek:62.000"' in html
    assert "<code>00:04</code>" in html and "seek:4.000" not in html
    assert 'href="javascript' not in html  # markdown-it refuses that link target
    assert "<li>" in html


def test_one_paragraph_answers_have_no_paragraph_and_a_copy_link():
    entry = ChatEntry("Q?", answer="A rabbit at 00:03.\nThen he walks.", state=DONE)
    html = render_entry(entry, duration_s=10)
    assert "<p>" not in html and "<br />" in html
    assert f'href="copy:{entry.id}"' in html


@pytest.mark.usefixtures("qapp")
def test_the_copy_link_copies_that_answer(qtbot):
    panel = ChatPanel()
    qtbot.addWidget(panel)
    first = panel.transcript.add("First?")
    first.answer, first.state = "**One** at 00:01", DONE
    second = panel.transcript.add("Second?")
    second.answer, second.state = "Two.", DONE
    panel.render_now()
    assert f'href="copy:{first.id}"' in panel.browser.toHtml()
    panel.browser.anchorClicked.emit(QUrl(f"copy:{first.id}"))
    assert QApplication.clipboard().text() == "**One** at 00:01"  # as written (Markdown)
