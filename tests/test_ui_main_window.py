"""The main window offscreen (VLC with dummy outputs, a fake Assistant): opening and
validating films, VLC's keys, the chat's mode switch, dialogs, closing."""

import sys
import threading

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QWheelEvent
from PySide6.QtWidgets import QApplication, QFileDialog

from moviechat_desktop.ui.chat_transcript import BREAKPOINT, GLOBAL
from moviechat_desktop.ui.player_widget import PAUSED, PLAYING

pytest_plugins = ["ui_fixtures"]  # make_main_window, tiny_maker, …

pytestmark = pytest.mark.timeout(120)


def open_and_play(qtbot, window, path, min_position=0.0):
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(path)
    qtbot.waitUntil(
        lambda: window.player.state == PLAYING and window.player.position >= min_position,
        timeout=10000,
    )


def focus_player(qtbot, window):
    window.activateWindow()
    window.player.surface.setFocus()
    qtbot.waitUntil(window.player.surface.hasFocus, timeout=3000)


def test_opening_a_film_plays_it_and_the_assistant_watches_it(qtbot, make_main_window, bikes_mp4):
    window = make_main_window()
    open_and_play(qtbot, window, bikes_mp4)
    assert bikes_mp4.name in window.windowTitle()
    assert window.history.recent()[0] == str(bikes_mp4.resolve())
    qtbot.waitUntil(lambda: window.transport.slider.covered_fraction() > 0.99, timeout=10000)
    assert window.status.device_label.text() == "Model: Fake CPU · float32"
    assert window.status.encoding_label.text() == "Watched the whole film"
    assert window.player.duration == pytest.approx(10.0, abs=0.3)


def test_a_bad_file_gets_a_dialog_and_the_previous_film_keeps_playing(
    qtbot, make_main_window, bikes_mp4, tmp_path
):
    from moviechat_desktop.workers.probe_worker import engine_probe

    probe_threads = []

    def probe(path):
        probe_threads.append(threading.get_ident())
        return engine_probe(path)

    window = make_main_window(probe=probe)
    open_and_play(qtbot, window, bikes_mp4, min_position=0.2)
    fake = window._make_assistant.instance
    bad = tmp_path / "holiday notes.mp4"
    bad.write_text("certainly not a video\n" * 100)
    missing = tmp_path / "missing.mkv"
    window.history.add_recent(missing)  # a recent film that has gone away
    for path in (bad, missing):
        with qtbot.waitSignal(window.open_failed, timeout=10000) as failed:
            window.open_file(path)
        report = failed.args[0]
        box = window.last_error_box
        assert box is not None and box.isVisible()
        assert box.windowTitle() == "Cannot play this file" == report.title
        assert report.message and report.message in box.informativeText()
        box.close()
        assert window.player.path == str(bikes_mp4)
        assert window.player.state == PLAYING
        assert fake.path == str(bikes_mp4)
    assert threading.get_ident() not in probe_threads  # validated off the GUI thread
    assert len(probe_threads) == 3
    assert window.history.recent() == [str(bikes_mp4.resolve())]  # the gone one was dropped
    window.actions.fill_recent_menu()
    texts = [a.text() for a in window.actions.recent_menu.actions()]
    assert texts[0] == "bikes.mp4" and "Clear list" in texts


def test_player_keys_follow_vlc(qtbot, make_main_window, vtest_avi):
    window = make_main_window()
    open_and_play(qtbot, window, vtest_avi, min_position=0.1)
    player = window.player
    focus_player(qtbot, window)
    qtbot.keyClick(player.surface, Qt.Key.Key_Space)
    assert player.state == PAUSED
    start = player.position
    steps = [
        (Qt.Key.Key_Right, Qt.KeyboardModifier.NoModifier, 10),
        (Qt.Key.Key_Right, Qt.KeyboardModifier.ShiftModifier, 3),
        (Qt.Key.Key_Right, Qt.KeyboardModifier.ControlModifier, 60),
        (Qt.Key.Key_Left, Qt.KeyboardModifier.NoModifier, -10),
        (Qt.Key.Key_Left, Qt.KeyboardModifier.ShiftModifier, -3),
    ]
    expected = start
    for key, modifier, delta in steps:
        qtbot.keyClick(player.surface, key, modifier)
        expected = min(max(0.0, expected + delta), player.duration)
        assert player.position == pytest.approx(expected, abs=0.01)
    volume = player.volume
    qtbot.keyClick(player.surface, Qt.Key.Key_Up)
    qtbot.keyClick(player.surface, Qt.Key.Key_Up, Qt.KeyboardModifier.ControlModifier)
    assert player.volume == volume + 10
    qtbot.keyClick(player.surface, Qt.Key.Key_Down)
    assert player.volume == volume + 5
    assert window.transport.volume.value() == volume + 5
    wheel = QWheelEvent(
        QPointF(20, 20),
        QPointF(player.surface.mapToGlobal(QPoint(20, 20))),
        QPoint(0, 0),
        QPoint(0, 240),  # two notches up
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(player.surface, wheel)
    assert player.volume == volume + 15
    qtbot.keyClick(player.surface, Qt.Key.Key_M)
    assert player.muted and window.transport.muted
    qtbot.keyClick(player.surface, Qt.Key.Key_M)
    assert not player.muted
    qtbot.keyClick(player.surface, Qt.Key.Key_Plus)
    assert player.rate == 1.25 and window.transport.speed_button.text() == "1.25×"
    qtbot.keyClick(player.surface, Qt.Key.Key_Minus)
    qtbot.keyClick(player.surface, Qt.Key.Key_Minus)
    assert player.rate == 0.8
    qtbot.keyClick(player.surface, Qt.Key.Key_Equal)
    assert player.rate == 1.0
    qtbot.keyClick(player.surface, Qt.Key.Key_V)
    assert window.statusBar().currentMessage() == "No subtitles"
    qtbot.keyClick(player.surface, Qt.Key.Key_F)
    qtbot.waitUntil(window.isFullScreen, timeout=3000)
    assert window.chat.isHidden() and window.menuBar().isHidden()
    qtbot.keyClick(player.surface, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.isFullScreen(), timeout=3000)
    assert not window.chat.isHidden()
    qtbot.keyClick(player.surface, Qt.Key.Key_Space)
    assert player.state in ("playing", "opening")
    qtbot.keyClick(player.surface, Qt.Key.Key_E)  # next frame pauses
    assert player.state == PAUSED


def test_keys_typed_in_the_chat_never_reach_the_player(qtbot, make_main_window, vtest_avi):
    window = make_main_window()
    open_and_play(qtbot, window, vtest_avi, min_position=0.1)
    player = window.player
    window.activateWindow()
    box = window.chat.question
    box.setFocus()
    qtbot.waitUntil(box.hasFocus, timeout=3000)
    before = (player.volume, player.muted, player.rate, window.isFullScreen())
    qtbot.keyClicks(box, "m f e v s +-= ")
    for key in (Qt.Key.Key_Up, Qt.Key.Key_Down, Qt.Key.Key_Left, Qt.Key.Key_Right):
        qtbot.keyClick(box, key)
    qtbot.keyClick(box, Qt.Key.Key_S, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClick(box, Qt.Key.Key_Space)
    assert box.toPlainText().lower() == "m f e v s +-= s "  # QTest types Shift+S as "s"
    assert (player.volume, player.muted, player.rate, window.isFullScreen()) == before
    assert not window.statusBar().currentMessage().startswith(("Snapshot", "Subtitles", "No "))
    assert player.state == PLAYING  # Space did not pause


def test_the_mode_switch_follows_pause_and_play(qtbot, make_main_window, vtest_avi):
    window = make_main_window()
    chat, player = window.chat, window.player
    assert chat.mode() == GLOBAL
    open_and_play(qtbot, window, vtest_avi, min_position=0.3)
    assert chat.mode() == GLOBAL
    player.pause()
    qtbot.waitUntil(lambda: chat.mode() == BREAKPOINT, timeout=3000)
    player.seek(72.5)
    qtbot.waitUntil(lambda: chat.mode_box.currentText() == "This moment (01:12)", timeout=3000)
    entry = chat.submit("What is he holding?")
    assert (entry.mode, entry.at_s) == (BREAKPOINT, pytest.approx(72.5))
    player.play()
    qtbot.waitUntil(lambda: chat.mode() == GLOBAL, timeout=3000)
    # a choice made while paused stays until the next pause/play
    player.pause()
    qtbot.waitUntil(lambda: chat.mode() == BREAKPOINT, timeout=3000)
    chat.set_mode(GLOBAL)
    player.seek(30.0)
    qtbot.wait(300)
    assert chat.mode() == GLOBAL
    assert chat.submit("And the whole film?").at_s is None


def test_time_links_in_the_chat_seek_the_player(qtbot, make_main_window, bikes_mp4):
    window = make_main_window()
    open_and_play(qtbot, window, bikes_mp4)
    qtbot.waitUntil(lambda: window.transport.slider.covered_fraction() > 0.99, timeout=10000)
    entry = window.chat.submit("When does he stretch?")
    qtbot.waitUntil(lambda: entry.state == "done", timeout=10000)
    window.chat.render_now()
    html = window.chat.browser.toHtml()
    assert 'href="seek:3.000"' in html
    window.chat.browser.anchorClicked.emit(QUrl("seek:3.000"))
    assert window.player.position == pytest.approx(3.0)


def test_export_chat_writes_markdown(qtbot, make_main_window, bikes_mp4, tmp_path, monkeypatch):
    window = make_main_window()
    open_and_play(qtbot, window, bikes_mp4)
    entry = window.chat.submit("Who rides?")
    qtbot.waitUntil(lambda: entry.state == "done", timeout=10000)
    target = tmp_path / "exported chat"
    seen = {}

    def fake_save(parent, caption, start, filters):
        seen["start"] = start
        return str(target), filters

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(fake_save))
    written = window.export_chat()
    assert written == target.with_suffix(".md")
    text = written.read_text("utf-8")
    assert text == window.chat.to_markdown(str(bikes_mp4))
    assert "> Who rides?" in text and entry.answer.strip() in text
    assert seen["start"].endswith("bikes — chat.md")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a: ("", "")))
    assert window.export_chat() is None  # cancelled: nothing written
    window.chat.copy_button.click()
    assert QApplication.clipboard().text() == window.chat.to_markdown()


def test_new_conversation_clears_the_chat_and_the_assistant(qtbot, make_main_window, bikes_mp4):
    window = make_main_window()
    open_and_play(qtbot, window, bikes_mp4)
    entry = window.chat.submit("First?")
    qtbot.waitUntil(lambda: entry.state == "done", timeout=10000)
    fake = window._make_assistant.instance
    assert [q for q, *_ in fake.conversation] == ["First?"]
    window.new_conversation()
    assert len(window.chat.transcript) == 0
    qtbot.waitUntil(lambda: fake.conversation == [], timeout=5000)
    again = window.chat.submit("Fresh start?")
    qtbot.waitUntil(lambda: again.state == "done", timeout=10000)
    assert [q for q, *_ in fake.conversation] == ["Fresh start?"]


def test_closing_the_window_cancels_encoding_and_answers(
    qtbot, make_main_window, fake_maker, bikes_mp4
):
    gate = threading.Event()  # never set: the encoder is stuck inside a step
    window = make_main_window(make_assistant=fake_maker(gate=gate))
    open_and_play(qtbot, window, bikes_mp4)
    window.chat.submit("Will this be answered?")
    qtbot.wait(100)
    window.close()
    assert not window.worker.isRunning()  # ended without terminate()


def test_without_weights_the_chat_explains_and_the_player_works(
    qtbot, make_main_window, fake_maker, bikes_mp4, monkeypatch
):
    window = make_main_window(make_assistant=fake_maker(weights=False))
    qtbot.waitUntil(lambda: window.chat.weights_notice_visible, timeout=5000)
    assert "weights" in window.chat.notice_label.text().lower()
    assert window.status.device_label.text() == "Model: not installed"
    open_and_play(qtbot, window, bikes_mp4, min_position=0.2)
    entry = window.chat.submit("Hello?")
    qtbot.waitUntil(lambda: entry.state == "failed", timeout=5000)
    assert "weights" in entry.note.lower()
    # the weights dialog is imported lazily; when it cannot be, a notice explains instead
    monkeypatch.setitem(sys.modules, "moviechat_desktop.ui.weights_dialog", None)
    window.chat.weights_button.click()
    box = window.last_error_box
    assert box.isVisible() and "weights download" in box.text()
    box.close()


def test_the_weights_dialog_opens_from_the_chat_and_a_closed_one_retries_the_model(
    qtbot, make_main_window, fake_maker
):
    pytest.importorskip("moviechat_desktop.ui.weights_dialog")
    maker = fake_maker(weights=False)
    window = make_main_window(make_assistant=maker)
    qtbot.waitUntil(lambda: window.chat.weights_notice_visible, timeout=5000)
    window.chat.weights_button.click()
    dialog = window.weights_dialog
    assert dialog is not None and dialog.isVisible()
    window.open_weights_dialog()  # from the menu as well: the same dialog comes forward
    assert window.weights_dialog is dialog
    maker.instance.weights = True  # as if the dialog had installed them
    with qtbot.waitSignal(window.worker.model_loaded, timeout=5000):
        dialog.reject()
    qtbot.waitUntil(lambda: not window.chat.weights_notice_visible, timeout=3000)
    assert window.status.device_label.text() == "Model: Fake CPU · float32"


def test_reopening_offers_to_resume(qtbot, make_main_window, vtest_avi):
    window = make_main_window()
    window.history.remember_position(vtest_avi, 42.0, 79.5)
    open_and_play(qtbot, window, vtest_avi)
    assert window.resume_bar.isVisible()
    assert "00:42" in window.resume_bar.label.text()
    window.resume_bar.resume_button.click()
    assert window.player.position == pytest.approx(42.0)
    assert not window.resume_bar.isVisible()
    window.player.seek(50.0)
    window.close()
    assert window.history.resume_position(vtest_avi) == pytest.approx(50.0, abs=1.0)


def test_drops_open_videos_and_add_subtitles(qtbot, make_main_window, tmp_path, monkeypatch):
    window = make_main_window()
    opened, subtitles = [], []
    monkeypatch.setattr(window, "open_file", opened.append)
    monkeypatch.setattr(window, "add_subtitle_file", subtitles.append)
    srt, mkv = tmp_path / "film.srt", tmp_path / "film.mkv"
    for paths in ([srt], [mkv]):
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
        event = QDropEvent(
            QPointF(10, 10),
            Qt.DropAction.CopyAction,
            mime,
            Qt.MouseButton.LeftButton,
            Qt.KeyboardModifier.NoModifier,
        )
        window.dropEvent(event)
    assert subtitles == [str(srt)] and opened == [str(mkv)]


def test_chat_panel_collapses_and_comes_back(qtbot, make_main_window):
    window = make_main_window()
    focus_player(qtbot, window)
    qtbot.keyClick(window.player.surface, Qt.Key.Key_J, Qt.KeyboardModifier.ControlModifier)
    assert window.chat.isHidden() and not window.transport.chat_button.isChecked()
    window.transport.chat_button.click()
    assert not window.chat.isHidden() and window.actions.show_chat.isChecked()


def test_settings_dialog_saves_and_updates_the_assistant(qtbot, make_main_window):
    from moviechat_desktop.engine.settings import load_settings
    from moviechat_desktop.ui import dialogs

    window = make_main_window()
    qtbot.waitUntil(lambda: window._make_assistant.instance is not None, timeout=5000)
    dialog = dialogs.open_settings_dialog(window)
    dialog.max_tokens.setValue(77)
    dialog.greedy.setChecked(False)
    dialog.accept()
    assert load_settings().generation.max_new_tokens == 77
    fake = window._make_assistant.instance
    qtbot.waitUntil(lambda: fake.settings.generation.max_new_tokens == 77, timeout=5000)
    assert fake.settings.generation.greedy is False


def test_settings_dialog_sets_the_cache_limit_and_offers_clearing(qtbot, make_main_window):
    from PySide6.QtWidgets import QMessageBox

    from moviechat_desktop.engine.settings import load_settings
    from moviechat_desktop.ui import dialogs

    window = make_main_window()
    qtbot.waitUntil(lambda: window._make_assistant.instance is not None, timeout=5000)
    dialog = dialogs.open_settings_dialog(window)
    assert dialog.cache_limit.value() == window.settings.cache.limit_gb
    dialog.clear_cache.click()  # the same confirmation as Assistant → Clear memory cache…
    box = window.findChild(QMessageBox, "ClearCacheBox")
    assert box is not None and box.isVisible()
    with qtbot.waitSignal(window.worker.cache_cleared, timeout=5000):
        box.button(QMessageBox.StandardButton.Yes).click()
    dialog.cache_limit.setValue(2.5)
    dialog.accept()
    assert load_settings().cache.limit_gb == 2.5
    fake = window._make_assistant.instance
    qtbot.waitUntil(lambda: fake.settings.cache.limit_gb == 2.5, timeout=5000)
    assert fake.cleared == 1
