"""The GUI thread's worst event-loop stall while the real worker loads, encodes and answers.

A 5 ms ``QTimer`` (precise) ticks on the GUI thread of a ``QApplication`` (offscreen when there
is no display) while the app's own ``ModelWorker`` (the QThread that drives the engine — in
``bench.run``, as in the app, the Assistant in a child process: ``engine_process``) loads the
model, opens and encodes a film, then answers a global and a breakpoint question.
A stall is how much later than its 5 ms a tick came: ``gap − interval``. The GUI thread does
what the chat does with the worker's signals (collects progress and answer chunks) but draws
no widgets, so this is the stall the worker itself causes (the GIL, signal traffic), which is
what DESIGN §5's 50 ms budget is about.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEventLoop, QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication

from moviechat_desktop.workers import qt_fixes
from moviechat_desktop.workers.model_worker import ModelWorker

log = logging.getLogger(__name__)

INTERVAL_MS = 5
QUESTIONS = ((1, "global", "What happens in this film?"), (2, "breakpoint", "What is he doing?"))


class StallProbe(QObject):
    """Records the time of every tick of a precise timer on the calling (GUI) thread."""

    def __init__(self, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__()
        self.interval_s = interval_ms / 1000
        self.ticks: list[float] = []
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def stalls(self, start: float, end: float) -> list[float]:
        """``gap − interval`` (s, ≥ 0) for every tick that came in ``(start, end]``."""
        pairs = zip(self.ticks, self.ticks[1:], strict=False)
        return [max(0.0, b - a - self.interval_s) for a, b in pairs if start < b <= end]


class _Driver(QObject):
    """Walks the worker through load → open → encoded → two answers, stamping each step."""

    def __init__(self, worker: ModelWorker, path: Path, loop: QEventLoop) -> None:
        super().__init__()
        self.worker, self.path, self.loop = worker, path, loop
        self.marks: dict[str, float] = {}
        self.error: str | None = None
        self.chunks = 0
        self.progress_signals = 0
        self.at_s = 0.0
        worker.model_loaded.connect(self._loaded)
        worker.model_unavailable.connect(lambda report: self._fail(report.message))
        worker.errored.connect(lambda report: self._fail(report.message))
        worker.film_opened.connect(self._opened)
        worker.encoding_progressed.connect(self._progressed)
        worker.answer_chunk_received.connect(self._chunk)
        worker.answer_finished.connect(self._answered)
        worker.answer_failed.connect(lambda rid, report: self._fail(report.message))

    def _fail(self, message: str) -> None:
        self.error = message
        self.loop.quit()

    def _loaded(self, label: str) -> None:
        self.marks["loaded"] = time.perf_counter()
        self.worker.open_film(str(self.path))

    def _opened(self, path: str, status: Any) -> None:
        self.marks.setdefault("opened", time.perf_counter())
        self.at_s = round(status.duration_s / 2, 3)

    def _progressed(self, status: Any) -> None:
        self.progress_signals += 1
        if status.finished and "encoded" not in self.marks:
            self.marks["encoded"] = time.perf_counter()
            self._ask(0)

    def _ask(self, number: int) -> None:
        rid, mode, text = QUESTIONS[number]
        self.worker.ask(rid, text, mode, self.at_s if mode == "breakpoint" else None)

    def _chunk(self, rid: int, text: str) -> None:
        self.chunks += 1

    def _answered(self, rid: int) -> None:
        self.marks[f"answered{rid}"] = time.perf_counter()
        if rid < len(QUESTIONS):
            self._ask(rid)
        else:
            self.loop.quit()


def engine_process(settings: Any) -> Any:
    """The engine as the app runs it: the Assistant in a child process (``LocalEngine``)."""
    from moviechat_desktop.service.local_engine import LocalEngine

    return LocalEngine(settings=settings, use_cache=True)


def _max_ms(values: list[float]) -> float:
    return 1000 * max(values, default=0.0)


def measure_ui(
    make_assistant: Callable[[], Any], path: Path, timeout_s: float = 3600
) -> tuple[dict[str, float], list[str]]:
    """Stall metrics (ms) for loading, encoding and answering; notes on anything odd."""
    app = QApplication.instance() or QApplication(["moviechat-bench"])
    qt_fixes.install()  # PySide6 6.12.0's emit() reference bug would abort a long run
    loop = QEventLoop()
    probe = StallProbe()
    worker = ModelWorker(make_assistant)
    driver = _Driver(worker, path, loop)
    deadline = QTimer()
    deadline.setSingleShot(True)
    deadline.timeout.connect(lambda: driver._fail(f"no result after {timeout_s:.0f} s"))
    probe.timer.start()
    start = time.perf_counter()
    worker.start()
    worker.load_model()
    deadline.start(int(timeout_s * 1000))
    try:
        loop.exec()
    finally:
        deadline.stop()
        probe.timer.stop()
        if not worker.shutdown(60_000):
            log.error("the model worker did not stop")
        app.processEvents()
    if driver.error is not None:
        raise RuntimeError(f"the GUI worker failed: {driver.error}")
    m = driver.marks
    loading = probe.stalls(start, m["loaded"])
    encoding = probe.stalls(m["loaded"], m["encoded"])
    answering = probe.stalls(m["encoded"], m["answered2"])
    everything = loading + encoding + answering
    notes = []
    if m["encoded"] - m.get("opened", m["loaded"]) < 0.05:
        notes.append("UI probe: the film came from a cache, so its encoding was not measured")
    metrics = {
        "ui_max_stall_loading_ms": _max_ms(loading),
        "ui_max_stall_encoding_ms": _max_ms(encoding),
        "ui_max_stall_answering_ms": _max_ms(answering),
        "ui_p99_stall_ms": 1000 * statistics.quantiles(everything, n=100)[98]
        if len(everything) >= 2
        else _max_ms(everything),
        "ui_probe_ticks": float(len(probe.ticks)),
        "ui_encode_s": m["encoded"] - m["loaded"],
    }
    log.info("UI probe: %d ticks, %d chunks", len(probe.ticks), driver.chunks)
    return metrics, notes
