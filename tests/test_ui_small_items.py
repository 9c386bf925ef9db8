"""Issue #14 item 10, the smaller items: the file dialog starts in a folder that exists (no
"Videos" pre-filled as a file name), the status field says what the assistant has seen, a
question sent while the model loads says it waits for the model, the Clear memory cache box
says how much it frees, and the window has a minimum size."""

import threading

import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox
from ui_fixtures import FakeAssistant

from moviechat_desktop.engine.store.saved_state import default_cache_root, memory_cache_usage
from moviechat_desktop.ui import dialogs
from moviechat_desktop.ui.main_window import MINIMUM_SIZE
from moviechat_desktop.ui.player_widget import PLAYING

pytest_plugins = ["ui_fixtures"]

pytestmark = pytest.mark.timeout(120)


def test_the_open_dialog_starts_in_a_folder_that_exists(monkeypatch, tmp_path, bikes_mp4):
    seen = []

    def fake_open(parent, caption, start, filters):
        seen.append(start)
        return "", ""

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(fake_open))
    monkeypatch.setattr(dialogs.platformdirs, "user_videos_dir", lambda: str(tmp_path / "Videos"))
    monkeypatch.setenv("HOME", str(tmp_path))
    dialogs.choose_video(None, None)
    assert seen[-1] == str(tmp_path)  # no Videos folder: home, never "Videos" as a name
    (tmp_path / "Videos").mkdir()
    dialogs.choose_video(None, None)
    assert seen[-1] == str(tmp_path / "Videos")
    dialogs.choose_subtitles(None, str(bikes_mp4))
    assert seen[-1] == str(bikes_mp4.parent)
    dialogs.choose_video(None, str(tmp_path / "gone" / "film.mkv"))  # its folder was removed
    assert seen[-1] == str(tmp_path / "Videos")


def test_a_question_sent_while_the_model_loads_says_it_waits_for_it(
    qtbot, make_main_window, bikes_mp4
):
    release = threading.Event()

    class SlowLoad(FakeAssistant):
        def load_model(self):
            release.wait(60)
            super().load_model()

    def make(settings):
        make.instance = SlowLoad(settings)
        return make.instance

    window = make_main_window(make_assistant=make)
    try:
        with qtbot.waitSignal(window.film_opened, timeout=10000):
            window.open_file(bikes_mp4)
        qtbot.waitUntil(lambda: window.status.model_state == "loading", timeout=5000)
        entry = window.chat.submit("Who rides?")
        qtbot.waitUntil(
            lambda: (
                "waiting for the assistant's model to load" in window.chat.browser.toPlainText()
            ),
            timeout=3000,
        )
        assert "sending…" not in window.chat.browser.toPlainText()
    finally:
        release.set()
    qtbot.waitUntil(lambda: entry.state == "done", timeout=10000)
    assert "waiting for the assistant's model" not in window.chat.browser.toPlainText()


def test_clearing_the_cache_says_how_much_it_frees(qtbot, make_main_window):
    root = default_cache_root()
    for name, size in (("a" * 32, 1_500_000), ("b" * 32, 700_000)):
        (root / name).mkdir(parents=True)
        (root / name / "frag-000000.safetensors").write_bytes(b"\0" * size)
        (root / name / "header.json").write_text("{}")
    assert memory_cache_usage() == (2, 2_200_004)
    window = make_main_window()
    box = window.clear_cache()
    qtbot.waitUntil(lambda: "frees" in box.informativeText(), timeout=5000)
    assert box.informativeText() == "It holds 2 films: clearing frees up to 2.20 MB."
    assert box.defaultButton() is box.button(QMessageBox.StandardButton.Cancel)
    box.button(QMessageBox.StandardButton.Cancel).click()


def test_an_empty_cache_says_so(qtbot, make_main_window):
    window = make_main_window()
    box = window.clear_cache()
    qtbot.waitUntil(lambda: "empty" in box.informativeText(), timeout=5000)
    box.close()


def test_the_window_has_a_minimum_size(qtbot, make_main_window, bikes_mp4):
    window = make_main_window()
    window.resize(300, 200)
    qtbot.wait(100)
    assert (window.width(), window.height()) >= MINIMUM_SIZE
    assert window.width() >= MINIMUM_SIZE[0] and window.height() >= MINIMUM_SIZE[1]
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(bikes_mp4)
    qtbot.waitUntil(lambda: window.player.state == PLAYING, timeout=10000)
    for widget in (window.chat.question, window.transport.play_button, window.player.surface):
        assert widget.isVisible() and widget.width() > 0 and widget.height() > 0
