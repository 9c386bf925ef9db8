"""The engine's process never starts with a ``sys.path`` an import has changed for a moment.

OpenCV's loader puts its own package folder first in ``sys.path`` while ``cv2`` is first
imported, then restores the list; a ``spawn`` child copies ``sys.path`` when it starts, and one
started in that window found ``cv2/typing`` before Python's ``typing`` and died (seen in CI:
the window's probe thread imported cv2 while its model thread started the engine). Here a
thread plays OpenCV's loader with a folder whose ``typing.py`` fails, holding
``runtime_env.SYS_PATH_LOCK`` as ``import_cv2`` does, while another starts a ``LocalEngine``.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest

from moviechat_desktop.runtime_env import SYS_PATH_LOCK
from moviechat_desktop.service.local_engine import LocalEngine

pytestmark = pytest.mark.timeout(120)


def test_an_engine_started_during_a_sys_path_change_gets_the_restored_path(tmp_path):
    bogus = tmp_path / "loader"
    bogus.mkdir()
    (bogus / "typing.py").write_text("raise ImportError('the wrong typing module')\n")
    changed, done = threading.Event(), threading.Event()

    def like_opencv_loader() -> None:
        with SYS_PATH_LOCK:
            saved = sys.path
            sys.path = [str(bogus), *saved]
            changed.set()
            time.sleep(1.0)  # the engine is asked to start meanwhile
            sys.path = saved
        done.set()

    loader = threading.Thread(target=like_opencv_loader)
    loader.start()
    changed.wait(5)
    engine = LocalEngine("engine_children:Scripted")  # waits for the lock, then starts cleanly
    try:
        assert done.is_set(), "the engine started while sys.path was changed"
        assert engine.alive
        assert str(bogus) not in engine.sys_path()
    finally:
        engine.shutdown()
        loader.join()
