"""End-of-film glitches with real libVLC under Xvfb (issue #14 item 7): ← at the end shows the
earlier frame paused instead of starting playback, Space right after plays on from there
(never restarts), → to the end while paused shows the last frame (not a stale one).

Run: ``xvfb-run -a -s "-screen 0 1280x720x24" .venv/bin/pytest tests/test_player_vlc_end.py``.
"""

import pytest
from PySide6.QtCore import Qt
from vlc_fixtures import (
    VLC_PAUSED,
    VLC_VIDEO,
    focus_video,
    open_film,
    pause_in_vlc,
    picture_error,
    shown_picture,
    video_window,
)

from moviechat_desktop.ui.player_widget import ENDED, PAUSED, PLAYING

pytest_plugins = ["ui_fixtures", "vlc_fixtures"]

pytestmark = VLC_VIDEO

SHIFT = Qt.KeyboardModifier.ShiftModifier


def open_to_the_end(qtbot, make_main_window, path):
    window = video_window(make_main_window)
    player = window.player
    open_film(qtbot, window, path, playing_past_s=0.3)
    player.seek(player.duration - 1.0)
    qtbot.waitUntil(lambda: player.state == ENDED, timeout=15000)
    focus_video(qtbot, window)
    return window, player


def test_left_at_the_end_shows_that_frame_paused(qtbot, make_main_window, bigbuckbunny):
    _window, player = open_to_the_end(qtbot, make_main_window, bigbuckbunny)
    qtbot.keyClick(player.surface, Qt.Key.Key_Left, SHIFT)  # back 3 s
    target = player.duration - 3.0
    assert player.state == PAUSED
    qtbot.wait(1500)
    assert player.state == PAUSED and player._player.get_state().value == VLC_PAUSED
    assert player.position == pytest.approx(target, abs=0.3)
    vlc_time = player._player.get_time() / 1000
    assert vlc_time == pytest.approx(target, abs=0.3)
    error = picture_error(shown_picture(player), bigbuckbunny, vlc_time)
    assert error < 30, f"the picture is not the frame at {vlc_time:.2f} s ({error:.1f})"
    # Space plays on from there, and Space again pauses
    qtbot.keyClick(player.surface, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: player.position > target + 0.4, timeout=5000)
    assert player.state == PLAYING
    qtbot.keyClick(player.surface, Qt.Key.Key_Space)
    assert player.state == PAUSED
    qtbot.wait(800)
    assert player.state == PAUSED and player._player.get_state().value == VLC_PAUSED


@pytest.mark.parametrize("repeat", range(3))
def test_space_right_after_left_at_the_end_plays_on_never_restarts(
    qtbot, make_main_window, bigbuckbunny, repeat
):
    _window, player = open_to_the_end(qtbot, make_main_window, bigbuckbunny)
    qtbot.keyClick(player.surface, Qt.Key.Key_Left, SHIFT)
    qtbot.keyClick(player.surface, Qt.Key.Key_Space)  # at once, before VLC has settled
    target = player.duration - 3.0
    positions = []
    for _ in range(8):
        qtbot.wait(100)
        positions.append(player.position)
    assert player.state == PLAYING, player.state
    assert min(positions) > target - 0.5, f"restarted: {positions}"
    qtbot.keyClick(player.surface, Qt.Key.Key_Space)
    assert player.state == PAUSED
    qtbot.wait(600)
    assert player.state == PAUSED, "Space did not pause"


def test_right_to_the_end_while_paused_shows_the_last_frame(qtbot, make_main_window, bikes_mp4):
    window = video_window(make_main_window)
    player = window.player
    open_film(qtbot, window, bikes_mp4, playing_past_s=0.8)
    pause_in_vlc(qtbot, player)
    qtbot.wait(500)
    before_time = player._player.get_time() / 1000
    focus_video(qtbot, window)
    qtbot.keyClick(player.surface, Qt.Key.Key_Right)  # 10 s: past the end of a 10 s clip
    qtbot.wait(1500)
    assert player.state in (PAUSED, ENDED)
    vlc_time = player._player.get_time() / 1000
    assert vlc_time > player.duration - 0.5, vlc_time
    picture = shown_picture(player, (640, 272))
    to_last = picture_error(picture, bikes_mp4, player.duration - 0.2)
    to_old = picture_error(picture, bikes_mp4, before_time)
    print(f"\nerror to the last frame {to_last:.1f}, to the frame before {to_old:.1f}")
    assert to_last < 30 and to_last < to_old, "the old picture stayed on screen"


def test_a_question_sent_while_playing_offers_the_moment_enter_was_pressed(
    qtbot, make_main_window, bigbuckbunny
):
    from PySide6.QtCore import QUrl

    from moviechat_desktop.ui.chat_transcript import BREAKPOINT, GLOBAL

    window = video_window(make_main_window, size=None)
    player, chat = window.player, window.chat
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(bigbuckbunny)
    qtbot.waitUntil(lambda: window.transport.slider.covered_fraction() > 0.99, timeout=15000)
    qtbot.waitUntil(lambda: player.state == PLAYING and player.position > 1.0, timeout=15000)
    window.activateWindow()
    chat.question.setFocus()
    qtbot.waitUntil(chat.question.hasFocus, timeout=3000)
    qtbot.keyClicks(chat.question, "What is happening here?")
    assert chat.mode() == GLOBAL and player.state == PLAYING
    at_enter = player.position
    qtbot.keyClick(chat.question, Qt.Key.Key_Return)
    entry = chat.transcript.entries[-1]
    assert entry.mode == GLOBAL and entry.at_s is None  # what the switch said, not silently
    assert entry.moment_s == pytest.approx(at_enter, abs=0.25)
    html = chat.browser.toHtml()
    assert f'href="moment:{entry.id}"' in html and "ask about this moment (00:0" in html
    qtbot.waitUntil(lambda: entry.state == "done", timeout=10000)
    qtbot.wait(1000)  # the film plays on: the moment offered stays the one of Enter
    chat.browser.anchorClicked.emit(QUrl(f"moment:{entry.id}"))
    again = chat.transcript.entries[-1]
    assert again is not entry and again.question == "What is happening here?"
    assert again.mode == BREAKPOINT and again.at_s == pytest.approx(at_enter, abs=0.25)
    assert f'href="moment:{entry.id}"' not in chat.browser.toHtml()  # offered once
    qtbot.waitUntil(lambda: again.state == "done", timeout=10000)
    fake = window._make_assistant.instance
    assert fake.asked[-1][1:] == ("breakpoint", pytest.approx(at_enter, abs=0.25))
    # paused, the switch already says "This moment": nothing is offered
    player.pause()
    qtbot.waitUntil(lambda: chat.mode() == BREAKPOINT, timeout=3000)
    paused = chat.submit("And now?")
    assert paused.moment_s is None
