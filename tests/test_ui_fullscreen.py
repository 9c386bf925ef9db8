"""Fullscreen as a watching mode (issue #14 item 5): the controls and the cursor hide after
~2 s without mouse movement while playing and come back on movement; the chat opens beside
the video in fullscreen (Ctrl+J); the Chat toggle always matches what is shown."""

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

from moviechat_desktop.ui import fullscreen_mode
from moviechat_desktop.ui.player_widget import PLAYING

pytest_plugins = ["ui_fixtures"]

pytestmark = pytest.mark.timeout(120)


def move_mouse(widget, x=40, y=40):
    event = QMouseEvent(
        QMouseEvent.Type.MouseMove,
        QPointF(x, y),
        QPointF(widget.mapToGlobal(QPoint(x, y))),
        Qt.MouseButton.NoButton,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(widget, event)


def chat_toggles(window):
    return window.transport.chat_button.isChecked(), window.actions.show_chat.isChecked()


def test_controls_and_cursor_hide_while_playing_and_come_back(
    qtbot, make_main_window, vtest_avi, monkeypatch
):
    monkeypatch.setattr(fullscreen_mode, "IDLE_MS", 2000)
    window = make_main_window()
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(vtest_avi)
    qtbot.waitUntil(lambda: window.player.state == PLAYING, timeout=10000)
    window.toggle_fullscreen()
    qtbot.waitUntil(window.isFullScreen, timeout=3000)
    assert window.transport.isVisible()
    qtbot.wait(1000)
    assert window.transport.isVisible()  # not before ~2 s
    qtbot.waitUntil(lambda: not window.transport.isVisible(), timeout=3000)
    assert window.cursor().shape() == Qt.CursorShape.BlankCursor
    assert window.player.surface.cursor().shape() == Qt.CursorShape.BlankCursor
    move_mouse(window.player.surface)
    assert window.transport.isVisible()
    assert window.cursor().shape() != Qt.CursorShape.BlankCursor
    qtbot.waitUntil(lambda: not window.transport.isVisible(), timeout=4000)  # idle again
    # paused, the controls stay
    window.player.pause()
    assert window.transport.isVisible()
    qtbot.wait(2600)
    assert window.transport.isVisible()
    # leaving fullscreen brings everything back, and nothing hides outside fullscreen
    window.player.play()
    qtbot.waitUntil(lambda: not window.transport.isVisible(), timeout=4000)
    window.leave_fullscreen()
    qtbot.waitUntil(lambda: not window.isFullScreen(), timeout=3000)
    assert window.transport.isVisible() and window.cursor().shape() != Qt.CursorShape.BlankCursor
    qtbot.wait(2600)
    assert window.transport.isVisible()


def test_the_chat_opens_beside_the_video_in_fullscreen_and_the_toggle_follows(
    qtbot, make_main_window, vtest_avi
):
    window = make_main_window()
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(vtest_avi)
    assert chat_toggles(window) == (True, True) and window.chat.isVisible()
    window.activateWindow()
    window.player.surface.setFocus()
    qtbot.waitUntil(window.player.surface.hasFocus, timeout=3000)
    qtbot.keyClick(window.player.surface, Qt.Key.Key_F)
    qtbot.waitUntil(window.isFullScreen, timeout=3000)
    assert window.chat.isHidden() and chat_toggles(window) == (False, False)
    qtbot.keyClick(window.player.surface, Qt.Key.Key_J, Qt.KeyboardModifier.ControlModifier)
    assert window.isFullScreen() and window.chat.isVisible()
    assert chat_toggles(window) == (True, True)
    assert window.chat.geometry().width() > 100
    assert window.player.surface.width() > window.chat.width()  # beside the video
    qtbot.keyClick(window.player.surface, Qt.Key.Key_J, Qt.KeyboardModifier.ControlModifier)
    assert window.chat.isHidden() and chat_toggles(window) == (False, False)
    window.transport.chat_button.click()  # the button does the same
    assert window.chat.isVisible() and chat_toggles(window) == (True, True)
    qtbot.keyClick(window.player.surface, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.isFullScreen(), timeout=3000)
    assert window.chat.isVisible() and chat_toggles(window) == (True, True)
    # hidden before fullscreen: hidden after, toggles matching all along
    window.set_chat_visible(False)
    window.toggle_fullscreen()
    qtbot.waitUntil(window.isFullScreen, timeout=3000)
    qtbot.keyClick(window.player.surface, Qt.Key.Key_Slash)  # `/` works in fullscreen too
    assert window.chat.question.hasFocus() and chat_toggles(window) == (True, True)
    window.set_chat_visible(False)
    window.leave_fullscreen()
    qtbot.waitUntil(lambda: not window.isFullScreen(), timeout=3000)
    assert window.chat.isHidden() and chat_toggles(window) == (False, False)
