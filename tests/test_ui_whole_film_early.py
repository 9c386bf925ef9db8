"""A whole-film question asked early (issue #14 item 1): the chat asks once, with two links
("Answer now (N% watched)" / "When the whole film is watched (≈ETA)"), remembers the choice
until the app quits, holds the question until the film is watched when asked to, and offers
"Ask again with the whole film" under an answer given from part of it."""

import pytest

from moviechat_desktop.ui.chat_controller import AGAIN, CHOICE, NOW, WAIT
from moviechat_desktop.ui.chat_transcript import DONE, STOPPED, WAITING

pytest_plugins = ["ui_fixtures"]

pytestmark = pytest.mark.timeout(120)


def half_watched(qtbot, make_main_window, fake_maker, path):
    """A film the fake assistant watches slowly (8 fragments, 0.5 s each): a question asked
    now finds it partly watched; it is all watched about 4 s later."""
    window = make_main_window(make_assistant=fake_maker(step_s=0.5), whole_film_choice=None)
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(path)
    qtbot.waitUntil(lambda: window.transport.slider.covered_fraction() > 0.1, timeout=10000)
    assert window.transport.slider.covered_fraction() < 0.5
    return window


def test_asked_once_answer_now_then_ask_again(qtbot, make_main_window, fake_maker, bikes_mp4):
    window = half_watched(qtbot, make_main_window, fake_maker, bikes_mp4)
    chat, controller = window.chat, window.controller
    first = chat.submit("Summarize the film")
    assert first.state == WAITING and len(first.links) == 2
    (now_href, now_text), (wait_href, wait_text) = first.links
    assert now_text.startswith("Answer now (") and now_text.endswith("% watched)")
    assert wait_text.startswith("When the whole film is watched (")
    chat.render_now()
    html = chat.browser.toHtml()
    assert now_href in html and wait_href in html
    fake = window._make_assistant.instance
    assert fake.asked == []  # nothing sent before the user chose
    chat.link_clicked.emit(now_href)
    qtbot.waitUntil(lambda: first.state == DONE, timeout=10000)
    assert first.partial and first.coverage.startswith("Answered from ")
    assert "% of the film (up to 00:0" in first.coverage  # the engine's note, as saved
    saved = fake.conversation_records()[1]
    assert saved.role == "assistant" and saved.coverage == first.coverage
    # the choice is remembered: the next whole-film question goes at once
    second = chat.submit("And the ending?")
    assert not second.links
    qtbot.waitUntil(lambda: second.state == DONE, timeout=10000)
    assert controller.whole_film_choice == NOW
    # once the whole film is watched, the early answers offer to ask again
    qtbot.waitUntil(lambda: first.links != (), timeout=10000)
    assert first.links == ((f"{AGAIN}:{first.id}", "Ask again with the whole film"),)
    chat.render_now()
    assert "Ask again with the whole film" in chat.browser.toPlainText()
    chat.link_clicked.emit(f"{AGAIN}:{first.id}")
    again = chat.transcript.entries[-1]
    assert again.question == "Summarize the film" and not again.links
    qtbot.waitUntil(lambda: again.state == DONE, timeout=10000)
    assert not again.partial and first.links == ()
    assert [q for q, *_ in fake.asked] == ["Summarize the film", "And the ending?"] * 1 + [
        "Summarize the film"
    ]


def test_when_the_whole_film_is_watched_holds_the_question(
    qtbot, make_main_window, fake_maker, bikes_mp4
):
    window = half_watched(qtbot, make_main_window, fake_maker, bikes_mp4)
    chat = window.chat
    entry = chat.submit("Summarize the film")
    chat.link_clicked.emit(f"{CHOICE}:{WAIT}:{entry.id}")
    assert entry.state == WAITING and "as soon as the whole film is watched" in entry.note
    later = chat.submit("Who is the hero?")  # remembered: held too, no question asked
    assert later.state == WAITING and not later.links
    stopped = chat.submit("Never mind this one")
    qtbot.wait(300)
    fake = window._make_assistant.instance
    assert fake.asked == []
    chat.stop_requested.emit()  # Stop reaches a held question too (the first in line)
    assert entry.state == STOPPED
    qtbot.waitUntil(lambda: later.state == DONE and stopped.state == DONE, timeout=10000)
    assert [q for q, *_ in fake.asked] == ["Who is the hero?", "Never mind this one"]
    assert not later.partial  # answered from the whole film


def test_a_moment_question_is_never_held(qtbot, make_main_window, fake_maker, bikes_mp4):
    window = half_watched(qtbot, make_main_window, fake_maker, bikes_mp4)
    window.chat.set_mode("breakpoint")  # "This moment": never held, never asked about
    entry = window.chat.submit("What is this?")
    assert not entry.links
    qtbot.waitUntil(lambda: entry.state == DONE, timeout=10000)
