"""The qasync bridge: UI code ``await``s an answer as an async stream of events.

``ModelWorker`` reports an answer through signals tagged with the request id; ``AnswerStreams``
(a GUI-thread QObject) routes them into one asyncio queue per request, so a coroutine running on
the app's qasync event loop can write::

    async for event in streams.follow(request_id):
        if event.kind == CHUNK: ...

The loop must be a qasync ``QEventLoop`` (the app's, or a test's with ``already_running=True``):
the signals arrive through Qt, the coroutine resumes through asyncio, both on the GUI thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Slot

from moviechat_desktop.workers.messages import ErrorReport
from moviechat_desktop.workers.model_worker import ModelWorker

DEFERRED = "deferred"  # waits for the encoder to reach the breakpoint (status: EncodeStatus)
STARTED = "started"
CHUNK = "chunk"  # text: the next piece of the answer
FINISHED = "finished"
STOPPED = "stopped"
FAILED = "failed"  # error: ErrorReport
FINAL_KINDS = frozenset({FINISHED, STOPPED, FAILED})


@dataclass(frozen=True)
class AnswerEvent:
    kind: str
    text: str = ""
    status: Any = None  # EncodeStatus for DEFERRED
    error: ErrorReport | None = None


class AnswerStreams(QObject):
    """Turns ``ModelWorker``'s answer signals into per-request async streams."""

    def __init__(self, worker: ModelWorker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._queues: dict[int, asyncio.Queue[AnswerEvent]] = {}
        # Bound slots of this GUI-thread object: Qt queues the worker's signals to this thread.
        worker.answer_deferred.connect(self._on_deferred)
        worker.answer_started.connect(self._on_started)
        worker.answer_chunk_received.connect(self._on_chunk)
        worker.answer_finished.connect(self._on_finished)
        worker.answer_stopped.connect(self._on_stopped)
        worker.answer_failed.connect(self._on_failed)

    def register(self, request_id: int) -> None:
        """Start collecting events for ``request_id`` (call before asking the worker)."""
        self._queues.setdefault(request_id, asyncio.Queue())

    async def follow(self, request_id: int) -> AsyncIterator[AnswerEvent]:
        """Yield the request's events until (and including) its final one."""
        self.register(request_id)
        queue = self._queues[request_id]
        try:
            while True:
                event = await queue.get()
                yield event
                if event.kind in FINAL_KINDS:
                    return
        finally:
            self._queues.pop(request_id, None)

    def _put(self, request_id: int, event: AnswerEvent) -> None:
        queue = self._queues.get(request_id)
        if queue is not None:
            queue.put_nowait(event)

    @Slot(int, object)
    def _on_deferred(self, request_id: int, status: Any) -> None:
        self._put(request_id, AnswerEvent(DEFERRED, status=status))

    @Slot(int)
    def _on_started(self, request_id: int) -> None:
        self._put(request_id, AnswerEvent(STARTED))

    @Slot(int, str)
    def _on_chunk(self, request_id: int, text: str) -> None:
        self._put(request_id, AnswerEvent(CHUNK, text))

    @Slot(int)
    def _on_finished(self, request_id: int) -> None:
        self._put(request_id, AnswerEvent(FINISHED))

    @Slot(int)
    def _on_stopped(self, request_id: int) -> None:
        self._put(request_id, AnswerEvent(STOPPED))

    @Slot(int, object)
    def _on_failed(self, request_id: int, error: ErrorReport) -> None:
        self._put(request_id, AnswerEvent(FAILED, error=error))
