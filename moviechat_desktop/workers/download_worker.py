"""The weights jobs (download, import, verify) on a QThread, so the UI never waits on them.

Each job runs in a child process (``service.weights_child``): converting a ``.pth`` reads it
with torch and verifying the decoder loads its tokenizer, and the GUI process never imports
torch or transformers. The child's progress arrives through a plain callback on this thread;
the worker keeps the latest ``TransferProgress`` of each part and emits them in batches, at
most ten times a second (``progressed``). ``cancel()`` may be called from any thread: the job
stops within one chunk, ``cancelled`` is emitted and partial downloads are kept for a resume.
The worker holds no reference to any widget; results and errors travel only through signals.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal

from moviechat_desktop.engine.errors import Cancelled, MovieChatError
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.weights.manifest import Manifest
from moviechat_desktop.engine.weights.transfer import TransferProgress
from moviechat_desktop.service.weights_child import JOBS, run_weights_job

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.1  # at most 10 progress signals per second


class DownloadWorker(QThread):
    """Runs one weights job. Signals are emitted from the worker thread (queued to the UI)."""

    progressed = Signal(object)  # tuple[TransferProgress, ...]: the latest of each changed part
    completed = Signal(object)  # download: list[PartStatus]; import: ImportResult; verify: list
    errored = Signal(str)  # a one-line, user-facing message
    cancelled = Signal()

    def __init__(
        self,
        job: str = "download",
        *,
        part_ids: Sequence[str] | None = None,
        path: str | Path | None = None,
        manifest: Manifest | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        if job not in JOBS:
            raise ValueError(f"unknown job {job!r}")
        if job == "import" and path is None:
            raise ValueError("an import needs a path")
        self.job = job
        self.part_ids = list(part_ids) if part_ids else None
        self.path = path
        self.manifest = manifest
        self._token = CancelToken()
        self._lock = threading.Lock()
        self._pending: dict[str, TransferProgress] = {}
        self._last_emit = 0.0
        self.emitted = 0  # number of progressed signals (for the throttle's test)

    def cancel(self) -> None:
        """Ask the job to stop (any thread; returns at once)."""
        self._token.cancel()

    @property
    def cancel_requested(self) -> bool:
        return self._token.cancelled

    def _on_progress(self, progress: TransferProgress) -> None:
        with self._lock:
            self._pending[progress.part] = progress
            now = time.monotonic()
            if now - self._last_emit < MIN_INTERVAL_S:
                return
            self._last_emit = now
            batch = tuple(self._pending.values())
            self._pending.clear()
        self.emitted += 1
        self.progressed.emit(batch)

    def _flush(self) -> None:
        with self._lock:
            batch = tuple(self._pending.values())
            self._pending.clear()
        if batch:
            self.emitted += 1
            self.progressed.emit(batch)

    def run(self) -> None:
        try:
            result: object = run_weights_job(
                self.job,
                part_ids=self.part_ids,
                path=self.path,
                manifest=self.manifest,
                progress=self._on_progress,
                cancel=self._token,
            )
        except Cancelled:
            self._flush()
            self.cancelled.emit()
        except MovieChatError as err:
            self._flush()
            self.errored.emit(str(err))
        except Exception as err:  # the thread boundary: never let it die silently
            log.exception("weights %s failed", self.job)
            self._flush()
            self.errored.emit(f"unexpected error during {self.job}: {type(err).__name__}: {err}")
        else:
            self._flush()
            self.completed.emit(result)
