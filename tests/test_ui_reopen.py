"""Reopening a film (issue #14 item 2): the saved conversation and the watched range come
straight from disk before any model exists; the resume bar is reachable by keyboard, counts
down, and can be told to always continue. Offscreen VLC, the fake Assistant, real files in the
isolated user dirs."""

import json
import threading
import time

import pytest
from PySide6.QtCore import Qt
from ui_fixtures import FakeAssistant
from ui_fixtures import test_settings as fixture_settings

from moviechat_desktop.engine.settings import load_settings
from moviechat_desktop.engine.store.chat_history import ChatHistory, ChatRecord
from moviechat_desktop.engine.store.fingerprint import file_fingerprint, sampling_identity
from moviechat_desktop.engine.store.saved_state import default_cache_root, read_saved_state
from moviechat_desktop.ui.chat_transcript import DONE
from moviechat_desktop.ui.player_widget import PLAYING

pytest_plugins = ["ui_fixtures"]

pytestmark = pytest.mark.timeout(120)


def saved_records(film: str) -> list[ChatRecord]:
    now = time.time() - 3600
    return [
        ChatRecord("old", "user", "An older chat?", "global", None, now - 100, film),
        ChatRecord("old", "assistant", "Yes.", "global", None, now - 99, film),
        ChatRecord("c1", "user", "Who rides the bike?", "global", None, now, film),
        ChatRecord("c1", "assistant", "A man at 00:02.", "global", None, now + 1, film),
        ChatRecord("c1", "user", "What is he holding?", "breakpoint", 3.0, now + 2, film),
        ChatRecord("c1", "assistant", "A helmet.", "breakpoint", 3.0, now + 3, film),
    ]


def write_saved_state(path, sampling, covered=((0.0, 2.5),)):
    film_id = file_fingerprint(path)
    history = ChatHistory.for_film(film_id)
    for record in saved_records(path.name):
        history.append(record)
    entry = default_cache_root() / "0123456789abcdef0123456789abcdef"
    entry.mkdir(parents=True)
    header = {
        "key": {
            "film": film_id,
            "model": {"eva_vit": "x"},
            "sampling": sampling_identity(sampling),
        },
        "last_used": time.time(),
        "fragments": {"0": {}, "1": {}},
        "fragments_total": 8,
        "covered": [list(r) for r in covered],
    }
    (entry / "header.json").write_text(json.dumps(header), "utf-8")
    # an entry of the same film under other sampling settings is not used
    other = default_cache_root() / "fedcba9876543210fedcba9876543210"
    other.mkdir()
    header = {**header, "key": {**header["key"], "sampling": {"plan": "fps", "fps": 9.0}}}
    header["covered"] = [[0.0, 5.0]]
    (other / "header.json").write_text(json.dumps(header), "utf-8")
    return film_id


def test_read_saved_state_without_a_model(bikes_mp4):
    settings = fixture_settings()
    film_id = write_saved_state(bikes_mp4, settings.sampling)
    state = read_saved_state(bikes_mp4, settings.sampling)
    assert state.film_id == film_id and state.conversation_id == "c1"
    assert [r.text for r in state.records] == [
        "Who rides the bike?", "A man at 00:02.", "What is he holding?", "A helmet."
    ]  # fmt: skip
    assert [c.id for c in state.conversations] == ["old", "c1"]
    assert state.covered == ((0.0, 2.5),) and (state.fragments_done, state.fragments_total) == (
        2,
        8,
    )
    # a damaged header and a missing history read as "nothing saved", never an exception
    (default_cache_root() / "0123456789abcdef0123456789abcdef" / "header.json").write_text(
        json.dumps(
            {
                "key": {"film": film_id, "sampling": sampling_identity(settings.sampling)},
                "covered": [[0, "x"]],
                "last_used": time.time(),
            }
        )
    )
    state = read_saved_state(bikes_mp4, settings.sampling)
    assert state.covered == ()
    assert read_saved_state(bikes_mp4.parent / "missing.mp4") is None


def test_film_cache_root_is_the_one_previewed():
    from moviechat_desktop.engine.store import film_cache

    assert film_cache.default_cache_root() == default_cache_root()


def test_reopening_shows_the_saved_chat_and_watched_range_before_any_model(
    qtbot, make_main_window, bikes_mp4
):
    settings = fixture_settings()
    write_saved_state(bikes_mp4, settings.sampling)
    release = threading.Event()
    history = {str(bikes_mp4): saved_records(bikes_mp4.name)}

    def slow_engine(chosen):  # the model process is still starting: no engine at all yet
        release.wait(60)
        slow_engine.instance = FakeAssistant(chosen, history=history)
        return slow_engine.instance

    window = make_main_window(make_assistant=slow_engine, settings=settings)
    try:
        with qtbot.waitSignal(window.film_opened, timeout=10000):
            window.open_file(bikes_mp4)
        chat = window.chat
        qtbot.waitUntil(lambda: len(chat.transcript) == 2, timeout=5000)
        first, second = chat.transcript.entries
        assert (first.question, first.answer, first.state) == (
            "Who rides the bike?",
            "A man at 00:02.",
            DONE,
        )
        assert (second.mode, second.at_s, second.answer) == ("breakpoint", 3.0, "A helmet.")
        assert "Who rides the bike?" in chat.browser.toPlainText()
        covered = window.transport.slider.covered
        assert covered == ((0.0, 2.5),), covered  # this sampling's entry, not the fps one
        assert [c.id for c in window.controller.conversations] == ["old", "c1"]
        assert window.status.model_state != "ready"
    finally:
        release.set()
    # the engine comes: its own status replaces the preview; the chat stays
    qtbot.waitUntil(lambda: window.transport.slider.covered_fraction() > 0.99, timeout=20000)
    assert [e.question for e in window.chat.transcript.entries] == [
        "Who rides the bike?", "What is he holding?"
    ]  # fmt: skip


def test_the_resume_bar_counts_down_and_enter_continues(qtbot, make_main_window, vtest_avi):
    window = make_main_window()
    window.history.remember_position(vtest_avi, 42.0, 79.5)
    window.activateWindow()
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(vtest_avi)
    bar = window.resume_bar
    assert bar.isVisible() and bar.resume_button.text() == "Continue (10 s)"
    qtbot.waitUntil(bar.resume_button.hasFocus, timeout=3000)  # reachable without the mouse
    qtbot.waitUntil(lambda: bar.resume_button.text() == "Continue (9 s)", timeout=3000)
    qtbot.waitUntil(lambda: window.player.state == PLAYING, timeout=10000)
    qtbot.keyClick(bar.resume_button, Qt.Key.Key_Return)
    assert not bar.isVisible()
    assert window.player.position == pytest.approx(42.0)
    assert window.player.surface.hasFocus()  # the keys go back to the video


def test_the_resume_bar_goes_after_its_countdown(qtbot, make_main_window, vtest_avi, monkeypatch):
    from moviechat_desktop.ui import resume_bar

    monkeypatch.setattr(resume_bar, "OFFER_MS", 2000)
    window = make_main_window()
    window.history.remember_position(vtest_avi, 42.0, 79.5)
    window.activateWindow()
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(vtest_avi)
    assert window.resume_bar.resume_button.text() == "Continue (2 s)"
    qtbot.waitUntil(lambda: not window.resume_bar.isVisible(), timeout=4000)
    assert window.player.position < 10  # not resumed
    qtbot.waitUntil(window.player.surface.hasFocus, timeout=2000)


def test_always_continue_is_a_setting(qtbot, make_main_window, vtest_avi, bikes_mp4):
    window = make_main_window()
    window.history.remember_position(vtest_avi, 42.0, 79.5)
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(vtest_avi)
    assert not window.settings.player.always_resume
    qtbot.waitUntil(lambda: window.player.position > 1.0, timeout=10000)
    window.resume_bar.always_button.click()
    assert window.player.position == pytest.approx(42.0)
    assert window.settings.player.always_resume and load_settings().player.always_resume
    # the next reopening continues at once, without asking
    window.player.seek(30.0)
    qtbot.wait(1500)  # watched a little from there
    assert window.player.position == pytest.approx(31.5, abs=1.0)
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(bikes_mp4)
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(vtest_avi)
    assert not window.resume_bar.isVisible()
    qtbot.waitUntil(lambda: window.player.state == PLAYING, timeout=10000)
    qtbot.waitUntil(lambda: window.player.position >= 30.5, timeout=5000)


def test_the_settings_dialog_has_always_continue(qtbot):
    from moviechat_desktop.ui.settings_dialog import SettingsDialog

    settings = fixture_settings()
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    assert not dialog.always_resume.isChecked() and dialog.always_resume.toolTip()
    dialog.always_resume.setChecked(True)
    assert dialog.settings().player.always_resume and not settings.player.always_resume
