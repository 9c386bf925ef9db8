"""Rate-limiting progress reports (Anki's rule: about 10 updates a second, never per item)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class ProgressThrottle:
    """Passes at most one report per ``interval_s`` to ``emit``; keeps the latest skipped one
    so ``flush()`` can deliver it when the work pauses or ends."""

    def __init__(self, emit: Callable[[Any], None], interval_s: float = 0.1) -> None:
        self._emit = emit
        self.interval_s = interval_s
        self._last = float("-inf")
        self._pending: Any = None
        self._has_pending = False

    def report(self, value: Any, *, force: bool = False) -> bool:
        """Emit ``value`` now if allowed (or forced); True when it was emitted."""
        now = time.monotonic()
        if force or now - self._last >= self.interval_s:
            self._last = now
            self._pending, self._has_pending = None, False
            self._emit(value)
            return True
        self._pending, self._has_pending = value, True
        return False

    def flush(self) -> None:
        """Emit the latest held-back value, if any."""
        if self._has_pending:
            self.report(self._pending, force=True)
