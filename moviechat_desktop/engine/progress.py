"""Qt-free progress reporting and cancellation, shared by every long engine operation.

A long operation takes a ``CancelToken`` and calls ``token.raise_if_cancelled()`` between
batches; it reports progress by calling a plain callback. The Qt adapters in ``workers/`` turn
these into signals (throttled to ~10 updates/s) and move them to the GUI thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moviechat_desktop.engine.errors import Cancelled

log = logging.getLogger(__name__)


class CancelToken:
    """A thread-safe cancellation flag. ``cancel()`` from any thread; the worker checks it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds; return True as soon as cancelled."""
        return self._event.wait(timeout)


@dataclass(frozen=True)
class Progress:
    """A snapshot of a long operation: ``done`` of ``total`` units (frames, bytes…)."""

    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, self.done / self.total)


ProgressCallback = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """A progress callback that ignores everything."""


def encode_to_the_end(engine, cancel: CancelToken | None = None, on_progress=None):
    """Call ``engine.encode_step(cancel)`` until ``engine.status().finished``;
    ``on_progress(status)`` after each step. Shared by the Assistant and the remote client."""
    status = engine.status()
    while not status.finished:
        status = engine.encode_step(cancel)
        if on_progress is not None:
            on_progress(status)
    return status


class BackgroundTurns:
    """``background_step`` for an engine (``Assistant``, the remote client): one unit of the open
    film's background work, on the engine's schedule. A memory fragment (when the model is
    loaded) and a ~30 s speech chunk (when speech is the dialogue source) take turns; a speech
    failure is kept in the status (``speech_error``) and never stops the memory; a fragment's
    failure raises. The engine provides ``status()``, ``model_loaded``, ``encode_step`` and
    ``dialogue_step``."""

    _speech_turn = False  # the next turn is speech's (when both are due)

    def background_step(self, cancel: CancelToken | None = None) -> Any:
        from moviechat_desktop.engine.errors import DialogueError

        status = self.status()
        memory_due = self.model_loaded and not status.finished
        if memory_due and not (status.speech_pending and self._speech_turn):
            self._speech_turn = True
            return self.encode_step(cancel)
        self._speech_turn = False
        if status.speech_pending:
            try:
                self.dialogue_step(cancel)
            except DialogueError as err:
                log.warning("speech recognition stopped: %s", err)
        return self.status()
