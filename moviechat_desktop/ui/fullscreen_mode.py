"""Fullscreen as a watching mode: the controls and the mouse cursor hide after ``IDLE_MS``
without mouse movement while the film plays, and come back on the first movement (VLC's and
mpv's habit). Paused, or with the chat open beside the video, nothing hides the chat itself;
leaving fullscreen brings everything back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication

if TYPE_CHECKING:
    from moviechat_desktop.ui.main_window import MainWindow

IDLE_MS = 2000


class FullscreenIdle(QObject):
    """Watches the mouse over ``window`` and hides its controls while it rests."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(IDLE_MS)
        self.timer.timeout.connect(self._idle)
        self.hidden = False
        QApplication.instance().installEventFilter(self)
        window.player.state_changed.connect(lambda _state: self.poke())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.MouseMove and self.window.isFullScreen():
            self.poke()
        return False

    def poke(self) -> None:
        """The mouse moved (or the film started/stopped): show the controls; while playing
        in fullscreen, hide them again after ``IDLE_MS``."""
        self._show()
        if self.window.isFullScreen() and self.window.player.is_playing:
            self.timer.start()
        else:
            self.timer.stop()

    def stop(self) -> None:
        """Fullscreen left: everything visible, no timer."""
        self.timer.stop()
        self._show()

    def _idle(self) -> None:
        w = self.window
        if not (w.isFullScreen() and w.player.is_playing):
            return
        self.hidden = True
        w.transport.hide()
        w.setCursor(Qt.CursorShape.BlankCursor)
        w.player.surface.setCursor(Qt.CursorShape.BlankCursor)

    def _show(self) -> None:
        if not self.hidden:
            return
        self.hidden = False
        self.window.transport.show()
        self.window.unsetCursor()
        self.window.player.surface.unsetCursor()

    def detach(self) -> None:
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)
