"""Validate a file before playing it, off the GUI thread (VLC reports nothing on bad files).

A ``ProbeWorker`` is a short-lived QThread: it runs the engine's ``probe(path)`` (fast, a few
hundred milliseconds at most) and emits ``probed`` with the ``VideoInfo`` or ``probe_failed``
with an ``ErrorReport``. It never touches the model, so a file is checked at once even while
the model worker is busy answering.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QThread, Signal

from moviechat_desktop.workers.messages import ErrorReport

ProbeFunction = Callable[[str], Any]


def engine_probe(path: str) -> Any:
    """The engine's ``probe`` (re-exported by ``engine.video``), imported lazily from
    ``engine.video_probe`` so that validating a file never has to import torch."""
    from moviechat_desktop.engine.video.probe import probe

    return probe(path)


class ProbeWorker(QThread):
    probed = Signal(int, str, object)  # request id, path, VideoInfo
    probe_failed = Signal(int, str, object)  # request id, path, ErrorReport

    def __init__(
        self, request_id: int, path: str, probe: ProbeFunction | None = None, parent=None
    ) -> None:
        super().__init__(parent)
        self.setObjectName(f"ProbeWorker-{request_id}")
        self.request_id = request_id
        self.path = path
        self._probe = probe or engine_probe

    def run(self) -> None:
        try:
            info = self._probe(self.path)
        except Exception as err:  # thread boundary: every failure becomes a report
            self.probe_failed.emit(self.request_id, self.path, ErrorReport.from_exception(err))
            return
        self.probed.emit(self.request_id, self.path, info)
