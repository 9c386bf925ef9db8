"""The "continue where you left off?" strip shown over the transport bar on reopening a film.

VLC's habit: the film starts from the beginning at once and the offer stays for a few
seconds; accepting jumps to the remembered position.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from moviechat_desktop.timefmt import format_time

OFFER_MS = 10_000


class ResumeBar(QFrame):
    resume_accepted = Signal(float)  # the position to jump to

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ResumeBar")
        self._position = 0.0
        self.label = QLabel(self)
        self.resume_button = QPushButton("Continue", self)
        self.dismiss_button = QPushButton("Start over", self)
        for button in (self.resume_button, self.dismiss_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.resume_button.clicked.connect(self._accept)
        self.dismiss_button.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 4, 10, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.resume_button)
        layout.addWidget(self.dismiss_button)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.hide)
        self.hide()

    @property
    def position(self) -> float:
        return self._position

    def offer(self, position_s: float, duration_s: float = 0.0) -> None:
        self._position = position_s
        stamp = format_time(position_s, hours=duration_s >= 3600 or None)
        self.label.setText(f"Continue watching from {stamp}?")
        self.show()
        self._timer.start(OFFER_MS)

    def _accept(self) -> None:
        self.hide()
        self.resume_accepted.emit(self._position)

    def hideEvent(self, event) -> None:
        self._timer.stop()
        super().hideEvent(event)
