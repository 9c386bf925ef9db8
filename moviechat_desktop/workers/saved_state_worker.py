"""Read a film's saved conversation and watched range off the GUI thread, before any model.

A short-lived QThread (like ``ProbeWorker``): fingerprinting reads 512 KiB of the film and the
stores read a few small files, which must never block the window. It emits ``read`` with a
``SavedState`` (or None when nothing could be read); it never raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QThread, Signal

log = logging.getLogger(__name__)

SavedStateReader = Callable[[str], Any]


class SavedStateWorker(QThread):
    read = Signal(int, str, object)  # request id, path, SavedState | None

    def __init__(self, request_id: int, path: str, reader: SavedStateReader, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName(f"SavedStateWorker-{request_id}")
        self.request_id, self.path, self._reader = request_id, path, reader

    def run(self) -> None:
        try:
            state = self._reader(self.path)
        except Exception:  # thread boundary: a preview that cannot be read is just not shown
            log.exception("reading the saved state of %s failed", self.path)
            state = None
        self.read.emit(self.request_id, self.path, state)
