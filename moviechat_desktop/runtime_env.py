"""Process-wide settings that must be made before torch is imported (no torch, no Qt here).

OpenMP's default lets torch's idle worker threads spin while they wait for work. Next to the
film playing in VLC (and anything else the user runs) that spinning takes the cores the encoder
needs: measured on 2 cores with one of them kept busy, encoding a film with the tiny model took
1.4–1.9 s with the default and 0.6–0.9 s with ``OMP_WAIT_POLICY=PASSIVE``; on a quiet machine
the two were within noise. OpenMP reads the variable once, when torch loads it, so the entry
points call ``prefer_passive_openmp()`` first. A value the user has set is kept.
"""

from __future__ import annotations

import os
import threading
from typing import Any

OMP_WAIT_POLICY = "OMP_WAIT_POLICY"

# OpenCV's loader changes ``sys.path`` while ``cv2`` is first imported: its own package folder
# goes first, and the old list comes back at the end. A process started with the ``spawn``
# method copies ``sys.path`` when it starts; started in that window (the window's probe thread
# importing cv2 while the model thread starts the engine's process: seen in CI), the child
# finds OpenCV's ``cv2/typing`` package before Python's ``typing`` module and dies at once.
# Both sides take this lock: ``import_cv2`` and ``start_spawned``.
SYS_PATH_LOCK = threading.Lock()


def prefer_passive_openmp() -> str:
    """Make OpenMP threads sleep while idle unless the user chose otherwise; the policy."""
    return os.environ.setdefault(OMP_WAIT_POLICY, "PASSIVE")


def import_cv2() -> Any:
    """``cv2``, its first import done while no process is being started (``SYS_PATH_LOCK``)."""
    with SYS_PATH_LOCK:
        import cv2
    return cv2


def start_spawned(process: Any) -> None:
    """``process.start()`` while no import has ``sys.path`` changed (``SYS_PATH_LOCK``): the
    child of a ``spawn`` start copies the parent's ``sys.path`` at this moment."""
    with SYS_PATH_LOCK:
        process.start()
