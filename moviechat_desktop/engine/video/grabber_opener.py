"""A breakpoint ``FrameGrabber`` opened in the background as soon as a film opens.

Opening the full-size reader indexes the whole file (~0.5 s for a 2-hour film), which made the
first breakpoint question of a film pay it before its first token. ``GrabberOpener`` opens it in
a daemon thread while the film is being probed for dialogue, encoded or simply watched; the
first breakpoint question then only waits for whatever of the opening is left (nothing, usually)
and pays the seek from the nearest keyframe and the decode of the exact frame.

The grabber has one owner: the opening thread until it finishes, then the engine thread that
``get``s it (``get`` joins the thread first). ``close`` may come before the opening finished:
the grabber is then closed by whichever of the two comes last.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from moviechat_desktop.engine.video.frames import FrameGrabber

log = logging.getLogger(__name__)


class GrabberOpener:
    """Opens ``FrameGrabber(path)`` in a daemon thread; ``get()`` returns it (or raises what
    opening raised, as a synchronous open would have)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._grabber: FrameGrabber | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(
            target=self._open, name="moviechat-grabber-open", daemon=True
        )
        self._thread.start()

    def _open(self) -> None:
        from moviechat_desktop.engine.video.frames import FrameGrabber

        try:
            grabber = FrameGrabber(self.path)
        except BaseException as err:  # handed to get()
            log.debug("opening the breakpoint reader of %s failed: %s", self.path, err)
            self._error = err
            return
        with self._lock:
            if self._closed:
                grabber.close()
            else:
                self._grabber = grabber

    def get(self) -> FrameGrabber:
        """The open grabber, after waiting for the opening to finish."""
        self._thread.join()
        if self._closed:
            raise ValueError("this GrabberOpener is closed")
        if self._error is not None:
            raise self._error
        assert self._grabber is not None
        return self._grabber

    @property
    def ready(self) -> bool:
        """The opening is over (whether it worked or not)."""
        return not self._thread.is_alive()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._grabber is not None:
                self._grabber.close()
            self._grabber = None
