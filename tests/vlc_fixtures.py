"""Shared pieces of the tests that drive real libVLC drawing into the window under Xvfb.

A VLC test module starts with::

    from vlc_fixtures import VLC_VIDEO

    pytest_plugins = ["ui_fixtures", "vlc_fixtures"]
    pytestmark = VLC_VIDEO

Run them under ``xvfb-run -a -s "-screen 0 1280x720x24"``. ``QWidget.grab()`` is black where
VLC draws (ENVIRONMENT.md), so pictures are taken from the screen itself
(``grab_widget_on_screen``) and compared with the frame opencv decodes at VLC's time.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtGui import QGuiApplication, QImage

from moviechat_desktop.ui.player_widget import PLAYING

VLC_PAUSED = 4  # vlc.State.Paused.value: VLC itself is paused (not only the widget's state)

# the marks every real-VLC module carries (``pytestmark = VLC_VIDEO``)
VLC_VIDEO = [
    pytest.mark.vlc,
    pytest.mark.xvfb,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        not os.environ.get("DISPLAY"), reason="needs an X display: run under xvfb-run"
    ),
    pytest.mark.usefixtures("needs_xcb"),
]


@pytest.fixture
def needs_xcb(qapp):
    """VLC draws into a native X window: skip on any other Qt platform."""
    if QGuiApplication.platformName() != "xcb":
        pytest.skip(f"needs Qt's xcb platform, not {QGuiApplication.platformName()!r}")


# --------------------------------------------------------------------------- opening a film
def video_window(make_main_window, size: tuple[int, int] | None = (1280, 690), **kwargs):
    """A shown main window whose VLC draws for real (``make_main_window(video=True)``)."""
    window = make_main_window(video=True, **kwargs)
    if size is not None:
        window.resize(*size)
    return window


def open_film(qtbot, window, path, *, playing_past_s: float | None = 0.5) -> None:
    """Open ``path`` in ``window`` and wait until it is validated and playing; with
    ``playing_past_s``, also until the player's position has passed it."""
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(path)
    player = window.player
    if playing_past_s is None:
        qtbot.waitUntil(lambda: player.state == PLAYING, timeout=15000)
    else:
        qtbot.waitUntil(
            lambda: player.state == PLAYING and player.position > playing_past_s, timeout=15000
        )


def focus_video(qtbot, window) -> None:
    """Give the video the keyboard focus, as a click on it would (the player's keys work)."""
    window.activateWindow()
    window.player.surface.setFocus()
    qtbot.waitUntil(window.player.surface.hasFocus, timeout=3000)


def pause_in_vlc(qtbot, player) -> None:
    """Pause and wait until VLC itself reports the pause."""
    player.pause()
    qtbot.waitUntil(lambda: player._player.get_state().value == VLC_PAUSED, timeout=5000)


# --------------------------------------------------------------------------- pictures
def to_rgb_array(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height, stride = image.width(), image.height(), image.bytesPerLine()
    data = np.frombuffer(image.constBits(), np.uint8, count=stride * height)
    return data.reshape(height, stride)[:, : width * 3].reshape(height, width, 3).copy()


def grab_widget_on_screen(widget) -> np.ndarray:
    """What the screen shows where ``widget`` is (VLC's pixels included)."""
    top_left = widget.mapToGlobal(widget.rect().topLeft())
    pixmap = QGuiApplication.primaryScreen().grabWindow(
        0, top_left.x(), top_left.y(), widget.width(), widget.height()
    )
    return to_rgb_array(pixmap.toImage())


def video_rect(width: int, height: int, video_w: int, video_h: int) -> tuple[int, int, int, int]:
    """Where VLC draws a ``video_w``x``video_h`` picture fitted (letterboxed) in the widget."""
    scale = min(width / video_w, height / video_h)
    w, h = round(video_w * scale), round(video_h * scale)
    return (width - w) // 2, (height - h) // 2, w, h


def shown_picture(player, size: tuple[int, int] = (1280, 720)) -> np.ndarray:
    """The part of the screen where VLC draws a film of ``size`` (borders trimmed)."""
    shot = grab_widget_on_screen(player.surface)
    x, y, w, h = video_rect(shot.shape[1], shot.shape[0], *size)
    return shot[y + 2 : y + h - 2, x + 2 : x + w - 2]


def decoded_frame(path: Path, t_s: float) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    capture.set(cv2.CAP_PROP_POS_MSEC, t_s * 1000)
    ok, bgr = capture.read()
    capture.release()
    assert ok, f"opencv could not decode {path} at {t_s:.2f} s"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def grid(image: np.ndarray, cols: int = 16, rows: int = 9) -> np.ndarray:
    return cv2.resize(image, (cols, rows), interpolation=cv2.INTER_AREA).astype(np.float32)


def picture_error(shown_image: np.ndarray, path, t_s: float) -> float:
    """Mean 16x9-grid difference between a shown picture and the film's frame at ``t_s``."""
    frame = decoded_frame(path, t_s)
    frame = cv2.resize(frame, (shown_image.shape[1], shown_image.shape[0]))
    return float(np.abs(grid(shown_image) - grid(frame)).mean())
