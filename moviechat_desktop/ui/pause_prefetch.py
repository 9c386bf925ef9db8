"""The picture a breakpoint question will need, prepared as soon as the player pauses.

Pausing is how a viewer says "this moment": the question about it is typed next. Decoding the
exact picture on screen costs up to a second or more on a real 1080p/4K film (a seek from a
keyframe up to ~10 s earlier), and encoding it costs the model's frame encoder; both are done
while the viewer types, so the question's first words come at once (issue 16 item 3).

``PausePrefetch`` follows the player: paused mid-film and still there for ``SETTLE_MS`` (frame
steps and seeks while paused come in bursts), it asks the model worker to prepare that moment,
once per position. The worker does it after any question in line and before more encoding.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer

from moviechat_desktop.ui.chat_panel import END_MARGIN_S
from moviechat_desktop.ui.player_widget import PAUSED, PlayerWidget
from moviechat_desktop.workers.model_worker import ModelWorker

SETTLE_MS = 150


class PausePrefetch(QObject):
    def __init__(self, player: PlayerWidget, worker: ModelWorker, parent=None) -> None:
        super().__init__(parent)
        self._player, self._worker = player, worker
        self._asked: float | None = None  # the position last handed to the worker
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SETTLE_MS)
        self._timer.timeout.connect(self._settled)
        for signal in (player.state_changed, player.position_changed):
            signal.connect(self._changed)

    def forget(self) -> None:
        """A new film (or none): whatever was prepared belongs to the old one."""
        self._asked = None
        self._timer.stop()

    def _paused_at(self) -> float | None:
        p = self._player
        position, duration = p.position, p.duration
        if p.state == PAUSED and 0 < position < max(0.0, duration - END_MARGIN_S):
            return position
        return None

    def _changed(self, *_: object) -> None:
        at_s = self._paused_at()
        if at_s is None:
            self._timer.stop()
        elif at_s != self._asked:
            self._timer.start()  # (again): wait for the position to settle

    def _settled(self) -> None:
        at_s = self._paused_at()
        if at_s is not None and at_s != self._asked:
            self._asked = at_s
            self._worker.prepare_breakpoint(at_s)
