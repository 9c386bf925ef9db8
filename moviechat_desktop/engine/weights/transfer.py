"""Progress of a weights operation: bytes done, rate and ETA, reported through a plain callback.

The engine calls the callback as often as it likes (once per chunk); front ends throttle (the
Qt worker emits at most 10 updates per second, tqdm redraws at its own pace).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from moviechat_desktop.engine.progress import CancelToken

PHASES = ("download", "verify", "convert", "done")


@dataclass(frozen=True)
class TransferProgress:
    """A snapshot of one part's progress (small and immutable: safe to send across threads)."""

    part: str  # manifest part id
    phase: str  # "download" | "verify" | "convert" | "done"
    done: int  # bytes done in this phase (downloads count bytes already on disk from before)
    total: int | None  # bytes expected in this phase, None if unknown
    rate: float = 0.0  # bytes per second over the last few seconds of this session
    eta_s: float | None = None  # seconds left at that rate, None if unknown
    file: str = ""  # the file being worked on
    message: str = ""

    @property
    def fraction(self) -> float:
        if not self.total:
            return 0.0
        return max(0.0, min(1.0, self.done / self.total))


TransferCallback = Callable[[TransferProgress], None]


def no_transfer_progress(_: TransferProgress) -> None:
    """A callback that ignores everything."""


class RateMeter:
    """Bytes per second over a sliding window (default 5 s), and the ETA it implies."""

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self._window = window_s
        self._clock = clock
        self._samples: list[tuple[float, int]] = []

    def update(self, done: int) -> float:
        now = self._clock()
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self._window:
            self._samples.pop(0)
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0

    @staticmethod
    def eta(done: int, total: int | None, rate: float) -> float | None:
        if total is None or rate <= 0:
            return None
        return max(0.0, (total - done) / rate)


class ByteReporter:
    """Turns "n more bytes" events (from any thread) into ``TransferProgress`` callbacks.

    Raises ``Cancelled`` from ``add`` once the token is cancelled, which is how a download
    loop — ours or huggingface_hub's through its tqdm hook — stops within one chunk.
    """

    def __init__(
        self,
        part: str,
        callback: TransferCallback,
        cancel: CancelToken,
        total: int | None,
        *,
        phase: str = "download",
        file: str = "",
        done: int = 0,
    ) -> None:
        self.part, self.callback, self.cancel = part, callback, cancel
        self.total, self.phase, self.file = total, phase, file
        self.done = done
        self._meter = RateMeter()
        self._lock = threading.Lock()

    def set(self, done: int, file: str | None = None) -> None:
        with self._lock:
            self.done = done
            if file is not None:
                self.file = file
            self._emit()

    def add(self, n: int, file: str | None = None) -> None:
        self.cancel.raise_if_cancelled()
        with self._lock:
            self.done += n
            if file is not None:
                self.file = file
            self._emit()

    def _emit(self) -> None:
        rate = self._meter.update(self.done)
        total = self.total
        if total is not None and self.done > total:  # an estimate was low: never show >100 %
            total = self.done
        self.callback(
            TransferProgress(
                part=self.part,
                phase=self.phase,
                done=self.done,
                total=total,
                rate=rate,
                eta_s=RateMeter.eta(self.done, total, rate),
                file=self.file,
            )
        )
