"""One window (VLC's and mpv's behaviour): launching the app with a file while a window is
open opens the file in that window and the launch exits; ``player.one_window = false`` opens
another window. The local-socket request is checked."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from moviechat_desktop.ui import single_instance

pytest_plugins = ["ui_fixtures"]  # make_main_window

pytestmark = pytest.mark.timeout(180)


def _launch(*args: str) -> subprocess.Popen:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "moviechat_desktop", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_second_launch_opens_its_file_in_the_running_window(qtbot, make_main_window, bikes_mp4):
    window = make_main_window()
    server = single_instance.serve(window)
    assert server is not None
    try:
        with qtbot.waitSignal(window.film_opened, timeout=60_000) as opened:
            launch = _launch(str(bikes_mp4))
            qtbot.waitUntil(lambda: launch.poll() is not None, timeout=60_000)
        assert launch.returncode == 0, launch.stderr.read()
        assert opened.args[0] == str(bikes_mp4)
    finally:
        server.close()


def test_without_a_running_window_nothing_is_forwarded():
    started = time.monotonic()
    assert single_instance.forward("/some/film.mkv") is False
    assert time.monotonic() - started < 2.0


def test_a_malformed_request_is_refused_and_opens_nothing(qtbot, make_main_window):
    from PySide6.QtNetwork import QLocalSocket

    window = make_main_window()
    opened = []
    window.film_opened.connect(opened.append)
    server = single_instance.serve(window)
    try:
        socket = QLocalSocket()
        socket.connectToServer(single_instance.server_name())
        assert socket.waitForConnected(2000)
        socket.write(b'{"open": ["not", "a", "path"]}\n')
        socket.flush()
        reply = b""
        qtbot.waitUntil(
            lambda: socket.bytesAvailable() > 0 or socket.state() != socket.state().ConnectedState,
            timeout=5000,
        )
        reply += bytes(socket.readAll().data())
        assert reply.strip() == b"refused"
        qtbot.wait(200)
        assert opened == []
    finally:
        server.close()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"open": "/films/a.mkv"}', (True, "/films/a.mkv")),
        (b'{"open": null}', (True, None)),
        (b'{"open": 5}', (False, None)),
        (b'{"open": ""}', (False, None)),
        (b'{"open": "a\\u0000b"}', (False, None)),
        (b"[1]", (False, None)),
        (b"\xff", (False, None)),
        (b"[" * 100_000, (False, None)),
        (b'{"open": "' + b"x" * 5000 + b'"}', (False, None)),
    ],
)
def test_requests_are_checked(data, expected):
    assert single_instance.parse_message(data) == expected


def test_one_window_false_starts_another_window(qtbot, make_main_window, bikes_mp4):
    from moviechat_desktop.engine.settings import load_settings, save_settings

    settings = load_settings()
    settings.player.one_window = False
    save_settings(settings)
    window = make_main_window()
    opened = []
    window.film_opened.connect(opened.append)
    server = single_instance.serve(window)
    launch = _launch(str(bikes_mp4))
    try:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline and launch.poll() is None:
            qtbot.wait(200)
        assert launch.poll() is None, f"the launch exited: {launch.stderr.read()}"
    finally:
        launch.kill()
        launch.wait()
        server.close()
    assert opened == []


def test_the_settings_dialog_has_the_one_window_switch(qtbot):
    from ui_fixtures import test_settings

    from moviechat_desktop.ui.settings_dialog import SettingsDialog

    settings = test_settings()
    dialog = SettingsDialog(settings)
    qtbot.addWidget(dialog)
    assert dialog.one_window.isChecked() and dialog.one_window.toolTip()
    dialog.one_window.setChecked(False)
    assert not dialog.settings().player.one_window and settings.player.one_window
