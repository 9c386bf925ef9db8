"""Real libVLC drawing into the Qt window under Xvfb: play, pause, seek, screen capture.

Run: ``xvfb-run -a -s "-screen 0 1280x720x24" .venv/bin/pytest tests/test_player_vlc.py -q``.
``QWidget.grab()`` is black where VLC draws, so the screen itself is captured. The shown
picture is compared with the frame opencv decodes at the time VLC reports.
"""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage
from vlc_fixtures import (
    VLC_PAUSED,
    VLC_VIDEO,
    decoded_frame,
    focus_video,
    grab_widget_on_screen,
    grid,
    open_film,
    pause_in_vlc,
    to_rgb_array,
    video_rect,
    video_window,
)

from moviechat_desktop.ui.chat_transcript import BREAKPOINT
from moviechat_desktop.ui.player_widget import PAUSED, PLAYING

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"

pytest_plugins = ["ui_fixtures", "vlc_fixtures"]  # make_main_window, tiny_maker, needs_xcb…

pytestmark = VLC_VIDEO


def test_vlc_plays_pauses_seeks_and_shows_the_right_frame(qtbot, make_main_window, bigbuckbunny):
    window = video_window(make_main_window)
    player = window.player
    open_film(qtbot, window, bigbuckbunny)
    pause_in_vlc(qtbot, player)
    paused_at = player.position
    qtbot.wait(500)
    assert player.position == pytest.approx(paused_at, abs=0.05)  # time stands still
    player.seek(3.2)
    qtbot.wait(1500)  # VLC decodes and shows the new frame
    assert player.state == PAUSED
    vlc_time = player._player.get_time() / 1000
    assert vlc_time == pytest.approx(3.2, abs=0.5)

    shot = grab_widget_on_screen(player.surface)
    ARTIFACTS.mkdir(exist_ok=True)
    cv2.imwrite(str(ARTIFACTS / "player_vlc_paused.png"), cv2.cvtColor(shot, cv2.COLOR_RGB2BGR))
    x, y, w, h = video_rect(shot.shape[1], shot.shape[0], 1280, 720)
    shown = shot[y + 2 : y + h - 2, x + 2 : x + w - 2]
    assert shown.mean() > 25 and shown.std() > 15, "the video area is black or flat"

    frame = decoded_frame(bigbuckbunny, vlc_time)
    frame = cv2.resize(frame, (shown.shape[1], shown.shape[0]), interpolation=cv2.INTER_AREA)
    colour_error = np.abs(shown.reshape(-1, 3).mean(0) - frame.reshape(-1, 3).mean(0))
    layout_error = np.abs(grid(shown) - grid(frame)).mean()
    print(f"\nmean colour error {colour_error.round(1)}, 16x9 grid error {layout_error:.1f}")
    assert colour_error.max() < 20, f"mean colour differs: {colour_error}"
    assert layout_error < 30, f"the picture does not match the decoded frame ({layout_error:.1f})"

    player.play()
    qtbot.waitUntil(lambda: player.state == PLAYING, timeout=5000)
    qtbot.waitUntil(lambda: player.position > vlc_time + 0.3, timeout=10000)


def test_full_window_screenshot_for_the_docs(
    qtbot, make_main_window, tiny_maker, wait_for_model, bigbuckbunny
):
    """A real window: VLC video, the watched bar, the mode switch on a paused moment."""
    window = video_window(make_main_window, (1280, 720), make_assistant=tiny_maker(n_fragments=32))
    wait_for_model(window)
    open_film(qtbot, window, bigbuckbunny, playing_past_s=1.0)
    player = window.player
    player.pause()  # before the 5 s clip ends: encoding may take longer on a busy machine
    qtbot.waitUntil(lambda: window.transport.slider.covered_fraction() > 0.99, timeout=60000)
    player.seek(2.6)
    qtbot.waitUntil(lambda: window.chat.mode() == BREAKPOINT, timeout=5000)
    window.chat.question.setPlainText("What is the rabbit doing?")
    qtbot.wait(1500)
    pixmap = QGuiApplication.primaryScreen().grabWindow(
        0, window.x(), window.y(), window.width(), window.height()
    )
    image = to_rgb_array(pixmap.toImage())
    assert image.std() > 20  # a real picture, not an empty screen
    ARTIFACTS.mkdir(exist_ok=True)
    assert pixmap.save(str(ARTIFACTS / "main_window.png"))
    docs_shot = ROOT / "docs" / "screenshot.png"
    if not docs_shot.exists() or os.environ.get("MOVIECHAT_UPDATE_SCREENSHOT"):
        # the README's picture: written once (or on request) so runs do not churn git
        docs_shot.parent.mkdir(exist_ok=True)
        assert pixmap.save(str(docs_shot))


def test_snapshot_key_and_subtitle_files(qtbot, make_main_window, bigbuckbunny, tmp_path):
    window = video_window(make_main_window, size=None)
    window.snapshot_dir = tmp_path / "snapshots"
    player = window.player
    open_film(qtbot, window, bigbuckbunny)
    player.pause()
    qtbot.wait(500)
    focus_video(qtbot, window)
    qtbot.keyClick(player.surface, Qt.Key.Key_S, Qt.KeyboardModifier.ShiftModifier)
    shots = list(window.snapshot_dir.glob("bigbuckbunny-*.png"))
    assert len(shots) == 1, window.statusBar().currentMessage()
    saved = to_rgb_array(QImage(str(shots[0])))  # (opencv 5.0's libpng rejects VLC's PNGs)
    assert saved.shape == (720, 1280, 3) and saved.std() > 15
    assert window.statusBar().currentMessage() == f"Snapshot saved: {shots[0]}"

    srt = tmp_path / "sous-titres été.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:09,000\nHello from the subtitles\n", "utf-8")
    assert window.add_subtitle_file(srt)
    qtbot.waitUntil(lambda: player._player.video_get_spu_count() > 0, timeout=10000)
    names = {player.cycle_subtitles() for _ in range(3)}
    assert any(name and name != "Disable" for name in names), names


def test_at_the_end_the_last_frame_stays_and_play_starts_again(
    qtbot, make_main_window, bigbuckbunny
):
    """--play-and-pause: the ending stays on screen (and repaints after a menu closes over
    it) and is reported as "ended"; Play starts the film again."""
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QMenu

    from moviechat_desktop.ui.player_widget import ENDED

    window = video_window(make_main_window)
    player = window.player
    open_film(qtbot, window, bigbuckbunny, playing_past_s=None)
    player.seek(4.0)
    qtbot.waitUntil(lambda: player.state == ENDED, timeout=15000)
    assert player._player.get_state().value == VLC_PAUSED  # its video still there
    assert player.position == pytest.approx(player.duration, abs=0.01)

    def shown():
        shot = grab_widget_on_screen(player.surface)
        x, y, w, h = video_rect(shot.shape[1], shot.shape[0], 1280, 720)
        return shot[y + 2 : y + h - 2, x + 2 : x + w - 2]

    qtbot.wait(300)
    before = shown()
    assert before.mean() > 25 and before.std() > 15, "the last frame is not on screen"
    menu = QMenu(window)
    for i in range(12):
        menu.addAction(f"an item to cover the picture {i}")
    menu.popup(player.surface.mapToGlobal(QPoint(200, 100)))
    qtbot.waitExposed(menu)
    qtbot.wait(200)
    menu.close()
    qtbot.wait(500)
    after = shown()
    difference = np.abs(after.astype(np.int16) - before.astype(np.int16)).mean()
    assert difference < 3, f"the picture was not repainted where the menu was ({difference:.1f})"

    player.play()
    qtbot.waitUntil(lambda: player.state == PLAYING, timeout=10000)
    assert player.position < 2.0
