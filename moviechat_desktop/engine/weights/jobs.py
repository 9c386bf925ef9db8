"""The Weights dialog's jobs (download, import, verify) as an engine for a child process.

The GUI process never imports torch (import-linter contract): converting a ``.pth`` once reads
it with torch, and verifying the decoder loads its tokenizer with transformers, so the dialog's
worker runs each job in a child process (``service.weights_child``) whose "engine" is a
``WeightsJobs``. The child sends the job's progress back through the pipe; ``ProgressRelay``
sends at most one update per part every ``RELAY_INTERVAL_S`` (a download reports every chunk)
and never drops a part's last update or a change of phase.

Errors reach the GUI as the engine's own exception classes: a ``MovieChatError`` defined
elsewhere (``NoConnection`` in ``no_connection``) is re-raised as its nearest base class in
``engine.errors``, with the same message, because the pipe only rebuilds those classes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from moviechat_desktop.engine import errors
from moviechat_desktop.engine.errors import MovieChatError
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.weights.manifest import Manifest
from moviechat_desktop.engine.weights.transfer import (
    TransferCallback,
    TransferProgress,
    no_transfer_progress,
)

RELAY_INTERVAL_S = 0.05  # ≤ 20 updates a second per part through the pipe (the GUI shows 10)

T = TypeVar("T")


class ProgressRelay:
    """Forwards ``TransferProgress`` to ``send``, thinned out (see the module docstring)."""

    def __init__(self, send: TransferCallback, interval_s: float = RELAY_INTERVAL_S) -> None:
        self._send = send
        self._interval = interval_s
        self._lock = threading.Lock()
        self._last_sent: dict[str, tuple[float, str]] = {}  # part → (when, phase)
        self._held: dict[str, TransferProgress] = {}  # part → latest update not yet sent

    def __call__(self, progress: TransferProgress) -> None:
        now = time.monotonic()
        with self._lock:
            when, phase = self._last_sent.get(progress.part, (-1e9, ""))
            if progress.phase == phase and progress.phase != "done" and now - when < self._interval:
                self._held[progress.part] = progress
                return
            self._held.pop(progress.part, None)
            self._last_sent[progress.part] = (now, progress.phase)
        self._send(progress)

    def flush(self) -> None:
        """Send every part's held-back last update."""
        with self._lock:
            held = list(self._held.values())
            self._held.clear()
        for progress in held:
            self._send(progress)


def engine_error(err: MovieChatError) -> MovieChatError:
    """``err`` as an instance of a class in ``engine.errors`` (itself if it already is one)."""
    for kind in type(err).__mro__:
        if kind.__module__ == errors.__name__:
            if kind is type(err):
                return err
            return kind(str(err))
    return MovieChatError(str(err))  # pragma: no cover - MovieChatError is in engine.errors


class WeightsJobs:
    """What ``service.weights_child`` calls in the child: one job per call."""

    def download(
        self,
        part_ids: Sequence[str] | None = None,
        *,
        manifest: Manifest | None = None,
        progress: TransferCallback = no_transfer_progress,
        cancel: CancelToken | None = None,
    ) -> list:
        from moviechat_desktop.engine.weights.install import download_weights

        return self._run(download_weights, progress, part_ids, manifest=manifest, cancel=cancel)

    def import_path(
        self,
        path: str | Path,
        part_id: str | None = None,
        *,
        manifest: Manifest | None = None,
        progress: TransferCallback = no_transfer_progress,
        cancel: CancelToken | None = None,
    ) -> Any:
        from moviechat_desktop.engine.weights.importer import import_weights

        return self._run(import_weights, progress, path, part_id, manifest=manifest, cancel=cancel)

    def verify(
        self,
        part_ids: Sequence[str] | None = None,
        *,
        manifest: Manifest | None = None,
        progress: TransferCallback = no_transfer_progress,
        cancel: CancelToken | None = None,
    ) -> list:
        from moviechat_desktop.engine.weights.audit import verify_weights

        return self._run(verify_weights, progress, part_ids, manifest=manifest, cancel=cancel)

    @staticmethod
    def _run(job: Callable[..., T], progress: TransferCallback, *args: Any, **kwargs: Any) -> T:
        relay = ProgressRelay(progress)
        try:
            return job(*args, progress=relay, **kwargs)
        except MovieChatError as err:
            raise engine_error(err) from err
        finally:
            relay.flush()

    def shutdown(self) -> None:
        """Nothing to release (the host calls this when the child stops)."""
