"""A seek asked for in the first second after opening a film (real libVLC under Xvfb).

VLC drops a ``set_time`` made before its input can seek, and the film then plays from 00:00:
the resume bar's Continue, "Continue films where I left them", a quick arrow key or a timeline
click right after opening were lost (vtest.avi, whose AVI index VLC reads first, lost them
most often). The player now holds such a seek and gives it to VLC once VLC can seek; the
timeline shows the position asked for meanwhile.

Run under ``xvfb-run -a -s "-screen 0 1280x720x24"`` (see tests/vlc_fixtures.py).
"""

import time

import pytest
from PySide6.QtCore import QPoint, Qt
from vlc_fixtures import VLC_VIDEO, focus_video, video_window

from moviechat_desktop.timefmt import format_time
from moviechat_desktop.ui.player_widget import PLAYING

pytest_plugins = ["ui_fixtures", "vlc_fixtures"]

pytestmark = VLC_VIDEO


class Positions:
    """Every position the player reports (what the timeline and the time label show)."""

    def __init__(self, player) -> None:
        self.seen: list[float] = []
        player.position_changed.connect(self.seen.append)

    def since(self, index: int) -> list[float]:
        return self.seen[index:]


def vlc_time(player) -> float:
    return player._player.get_time() / 1000


def assert_plays_from(qtbot, player, target: float, asked_at: float) -> None:
    """VLC plays on from ``target``: its own time gets just past it sooner than playing from
    00:00 could (it echoes the exact target at once, so that is not taken as arrival), and the
    player then reports VLC's time."""
    limit_s = min(20.0, target - 1.5)
    left_ms = round((asked_at + limit_s - time.monotonic()) * 1000)
    qtbot.waitUntil(lambda: target + 0.05 < vlc_time(player) <= target + 3.0, timeout=left_ms)
    assert player.state == PLAYING
    qtbot.wait(300)
    assert player.position == pytest.approx(vlc_time(player), abs=0.5)
    assert player.position > target


def open_and_wait_opened(qtbot, window, path) -> None:
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(path)


@pytest.fixture
def two_minute_film(make_video):
    return make_video("two minutes.mp4", seconds=120, size="320x180", audio=True)


@pytest.fixture
def one_keyframe_film(make_video):
    """30 s of 1080p with one keyframe: VLC decodes from 00:00 up to any time sought without
    showing it (measured: 3 s to reach 00:25 on an idle two-core machine)."""
    one_gop = ("-g", "1000", "-preset", "ultrafast")
    return make_video("one keyframe.mp4", seconds=30, size="1920x1080", extra=one_gop)


@pytest.mark.parametrize(
    ("film", "target"),
    [
        ("vtest_avi", 42.0),
        ("two_minute_film", 67.0),
        ("bikes_mp4", 6.0),
        ("one_keyframe_film", 25.0),
    ],
)
def test_a_seek_at_once_after_opening_is_kept(qtbot, make_main_window, request, film, target):
    path = request.getfixturevalue(film)
    window = video_window(make_main_window)
    player = window.player
    positions = Positions(player)
    open_and_wait_opened(qtbot, window, path)
    player.seek(target)  # before VLC has even started playing
    asked_at = time.monotonic()
    mark = len(positions.seen)
    assert player.position == target
    assert_plays_from(qtbot, player, target, asked_at)
    shown = positions.since(mark)
    assert min(shown, default=target) >= target - 0.5, f"the timeline went back: {shown}"


@pytest.mark.parametrize("delay_ms", [150, 400, 800])
def test_an_arrow_key_right_after_opening_is_kept(
    qtbot, make_main_window, one_keyframe_film, delay_ms
):
    window = video_window(make_main_window)
    player = window.player
    positions = Positions(player)
    open_and_wait_opened(qtbot, window, one_keyframe_film)
    focus_video(qtbot, window)
    qtbot.wait(delay_ms)
    before = player.position
    qtbot.keyClick(player.surface, Qt.Key.Key_Right)  # 10 s
    asked_at = time.monotonic()
    mark = len(positions.seen)
    assert player.position == pytest.approx(before + 10, abs=0.01)
    qtbot.keyClick(player.surface, Qt.Key.Key_Right)  # again at once: on from the new position
    target = before + 20
    assert player.position == pytest.approx(target, abs=0.01)
    assert player.osd_text == f"{window.transport.elapsed.text()} / 00:30"  # "00:20 / 00:30"
    assert_plays_from(qtbot, player, target, asked_at)
    shown = positions.since(mark)
    assert min(shown) >= target - 0.5, f"the timeline went back: {shown}"


def test_the_last_seek_asked_for_wins(qtbot, make_main_window, vtest_avi):
    window = video_window(make_main_window)
    player = window.player
    open_and_wait_opened(qtbot, window, vtest_avi)
    player.seek(20.0)
    player.seek(50.0)
    player.seek(35.0)
    asked_at = time.monotonic()
    assert player.position == 35.0
    assert_plays_from(qtbot, player, 35.0, asked_at)


@pytest.mark.parametrize(("film", "left_at"), [("vtest_avi", 42.0), ("one_keyframe_film", 12.0)])
def test_the_resume_bar_continues_when_enter_is_pressed_at_once(
    qtbot, make_main_window, request, film, left_at
):
    path = request.getfixturevalue(film)
    window = video_window(make_main_window)
    window.history.remember_position(path, left_at, 79.5)
    window.activateWindow()
    player = window.player
    positions = Positions(player)
    open_and_wait_opened(qtbot, window, path)
    bar = window.resume_bar
    qtbot.waitUntil(bar.resume_button.hasFocus, timeout=3000)
    mark = len(positions.seen)
    qtbot.keyClick(bar.resume_button, Qt.Key.Key_Return)
    asked_at = time.monotonic()
    assert not bar.isVisible() and player.position == pytest.approx(left_at)
    osd, elapsed = player.osd_text, window.transport.elapsed.text()
    assert_plays_from(qtbot, player, left_at, asked_at)
    assert min(positions.since(mark)) >= left_at - 0.5, positions.since(mark)
    stamp = format_time(left_at)
    assert elapsed == stamp and osd.startswith(f"{stamp} / ")  # over the picture, as VLC does


def test_always_continue_starts_where_the_film_was_left(qtbot, make_main_window, vtest_avi):
    from ui_fixtures import test_settings as fixture_settings

    settings = fixture_settings()
    settings.player.always_resume = True
    window = video_window(make_main_window, settings=settings)
    window.history.remember_position(vtest_avi, 42.0, 79.5)
    player = window.player
    positions = Positions(player)
    open_and_wait_opened(qtbot, window, vtest_avi)
    asked_at = time.monotonic()
    assert not window.resume_bar.isVisible()
    assert player.position == 42.0 and window.transport.elapsed.text() == "00:42"
    assert_plays_from(qtbot, player, 42.0, asked_at)
    assert min(positions.seen) >= 41.5, positions.seen


def test_a_timeline_click_as_soon_as_the_length_is_known(qtbot, make_main_window, vtest_avi):
    window = video_window(make_main_window)
    player, slider = window.player, window.transport.slider
    open_and_wait_opened(qtbot, window, vtest_avi)
    qtbot.waitUntil(lambda: player.duration > 0, timeout=10000)
    x = slider.x_of(50.0)
    qtbot.mouseClick(slider, Qt.MouseButton.LeftButton, pos=QPoint(x, slider.height() // 2))
    asked_at = time.monotonic()
    target = player.position
    assert target == pytest.approx(50.0, abs=0.5)
    osd = player.osd_text
    assert_plays_from(qtbot, player, target, asked_at)
    assert osd == f"{format_time(target)} / {format_time(player.duration)}"
    assert osd.endswith(" / 01:19")  # "00:50 / 01:19"
