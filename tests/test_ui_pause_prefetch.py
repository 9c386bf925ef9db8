"""Pausing the player has the engine prepare the picture on screen (issue 16 item 3): once per
paused position, again after a seek while paused, never while playing; the question asked
then names the same moment."""

from __future__ import annotations

import pytest

from moviechat_desktop.ui.chat_transcript import BREAKPOINT
from moviechat_desktop.ui.player_widget import PAUSED, PLAYING

pytest_plugins = ["ui_fixtures"]

pytestmark = pytest.mark.timeout(120)


def test_a_pause_prepares_the_moment_the_question_will_name(
    qtbot, make_main_window, fake_maker, vtest_avi
):
    maker = fake_maker()
    window = make_main_window(make_assistant=maker)
    player, chat = window.player, window.chat
    with qtbot.waitSignal(window.film_opened, timeout=10000):
        window.open_file(vtest_avi)
    qtbot.waitUntil(lambda: player.state == PLAYING and player.position >= 0.3, timeout=10000)
    fake = maker.instance
    qtbot.wait(400)
    assert fake.prepared == [], "nothing is prepared while the film plays"

    player.pause()
    qtbot.waitUntil(lambda: player.state == PAUSED and len(fake.prepared) == 1, timeout=5000)
    assert fake.prepared[0] == pytest.approx(player.position)
    qtbot.wait(500)
    assert len(fake.prepared) == 1, "once per paused position"

    player.seek(72.5)  # moving while paused: that moment is prepared instead
    qtbot.waitUntil(lambda: len(fake.prepared) == 2, timeout=5000)
    assert fake.prepared[1] == pytest.approx(72.5, abs=0.05)
    qtbot.waitUntil(lambda: chat.mode() == BREAKPOINT, timeout=3000)
    entry = chat.submit("What is he holding?")
    assert entry.at_s == fake.prepared[-1], "the question names the prepared moment"

    player.play()
    qtbot.waitUntil(lambda: player.state == PLAYING, timeout=5000)
    qtbot.wait(500)
    assert len(fake.prepared) == 2
