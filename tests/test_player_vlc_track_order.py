"""The player's subtitle track and the dialogue's embedded track are the same stream.

The window tells the engine which subtitle track VLC shows as its index among VLC's tracks
("Disable" left out); the engine reads the container's subtitle streams in ffprobe's order
(``engine/dialogue/embedded.py``). This checks with real libVLC that the two orders agree, and
that VLC lists a sidecar file it found by itself after the container's streams (the engine
then falls back to the files: tests/test_dialogue_sources.py).

Run under ``xvfb-run -a -s "-screen 0 1280x720x24"``.
"""

import shutil
import subprocess

import pytest
from vlc_fixtures import VLC_VIDEO, open_film, video_window

from moviechat_desktop.engine.dialogue.embedded import list_subtitle_tracks
from moviechat_desktop.ui import player_extras

pytest_plugins = ["ui_fixtures", "vlc_fixtures"]

pytestmark = VLC_VIDEO

LANGUAGES = {"eng": "English", "fre": "French", "ger": "German"}


@pytest.fixture
def three_track_film(tmp_path, bikes_mp4):
    """bikes.mp4 with German, English and French SubRip streams (not alphabetical, so a
    sorted listing would not pass by chance) and a sidecar ``film.srt``."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    inputs = []
    for code in LANGUAGES:
        srt = tmp_path / f"{code}.srt"
        srt.write_text(f"1\n00:00:00,200 --> 00:00:04,000\nLine in {code}\n", "utf-8")
        inputs.append(srt)
    order = ["ger", "eng", "fre"]
    film = tmp_path / "film.mkv"
    command = ["ffmpeg", "-loglevel", "error", "-y", "-i", str(bikes_mp4)]
    for code in order:
        command += ["-i", str(tmp_path / f"{code}.srt")]
    command += ["-map", "0:v"] + [arg for i in range(len(order)) for arg in ("-map", str(i + 1))]
    for i, code in enumerate(order):
        command += [f"-metadata:s:s:{i}", f"language={code}"]
    command += ["-c:v", "copy", "-c:s", "srt", "-t", "5", str(film)]
    subprocess.run(command, check=True, timeout=60)
    (tmp_path / "film.srt").write_text("1\n00:00:00,200 --> 00:00:04,000\nSidecar\n", "utf-8")
    return film, order


def test_vlc_lists_the_containers_subtitles_in_ffprobes_order_then_the_sidecar(
    qtbot, make_main_window, three_track_film
):
    film, order = three_track_film
    assert [t.language for t in list_subtitle_tracks(film)] == order
    window = video_window(make_main_window)
    open_film(qtbot, window, film)
    player = window.player
    player.pause()  # the 5-s film must not end while its tracks are read
    qtbot.waitUntil(lambda: len(player_extras.subtitle_tracks(player)) >= 5, timeout=10000)
    tracks = [(i, name) for i, name in player_extras.subtitle_tracks(player) if i >= 0]
    assert len(tracks) == 4, tracks  # three streams and the sidecar

    shown = []
    player.subtitle_track_changed.connect(shown.append)
    for track_id, _name in tracks:
        player_extras.set_subtitle_track(player, track_id)
    assert shown == [0, 1, 2, 3]
    for index, code in enumerate(order):  # the index the engine gets names the same stream
        assert LANGUAGES[code] in tracks[index][1], (index, code, tracks)
    assert not any(word in tracks[3][1] for word in LANGUAGES.values()), tracks
