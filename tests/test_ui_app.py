"""``moviechat-desktop VIDEO`` end to end in a subprocess: the app starts on a qasync loop,
plays the film, explains that no weights are installed, and quits cleanly (exit status 0)."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(180)

DRIVER = r"""
import sys, time
import decord  # noqa: F401  (before Qt)
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

app = QApplication(sys.argv[:1])
start = time.monotonic()

def check():
    windows = [w for w in QApplication.topLevelWidgets() if type(w).__name__ == "MainWindow"]
    ready = bool(windows) and windows[0].player.state == "playing" and (
        windows[0].status.model_state in ("ready", "unavailable"))
    if ready or time.monotonic() - start > 60:
        w = windows[0]
        print("TITLE", w.windowTitle())
        print("PLAYER", w.player.state)
        print("MODEL", w.status.model_state)
        print("NOTICE", w.chat.weights_notice_visible, w.chat.notice_label.text()[:200])
        sys.stdout.flush()
        QApplication.closeAllWindows()
    else:
        QTimer.singleShot(200, check)

QTimer.singleShot(200, check)
from moviechat_desktop.app import run_gui
sys.exit(run_gui(sys.argv[1]))
"""


def test_the_app_plays_a_film_without_weights_and_quits_cleanly(bikes_mp4):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")  # isolated XDG/HF dirs: no weights
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, str(bikes_mp4)],
        capture_output=True,
        text=True,
        env=env,
        timeout=150,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert lines["TITLE"] == "bikes.mp4 — MovieChat Desktop"
    assert lines["PLAYER"] == "playing"
    assert lines["MODEL"] == "unavailable"
    assert lines["NOTICE"].startswith("True")
    assert "Traceback" not in out.stderr
