"""Where a film's dialogue comes from: embedded tracks muxed with ffmpeg at test time, sidecars,
added files, the player's track, the user's pick, and the Assistant's dialogue API."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.dialogue import embedded
from moviechat_desktop.engine.dialogue.embedded import SubtitleTrack, default_track
from moviechat_desktop.engine.errors import DialogueError, NotReady, WeightsMissing
from moviechat_desktop.engine.settings import AppSettings

VIDEOS = Path(__file__).resolve().parent.parent / ".cache" / "test-videos"
BUNNY = VIDEOS / "bigbuckbunny.mp4"
BIKES = VIDEOS / "bikes.mp4"

pytestmark = pytest.mark.skipif(
    not BUNNY.is_file() or shutil.which("ffmpeg") is None, reason="needs ffmpeg and test videos"
)

ENGLISH_SRT = """1
00:00:00,500 --> 00:00:02,000
<i>Good morning</i>, bird.

2
00:00:03,000 --> 00:00:04,500
Where is my apple?
"""

FRENCH_ASS = r"""[Script Info]
ScriptType: v4.00+

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,2,2,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:01.00,0:00:02.00,Default,Lapin,0,0,0,,{\i1}Bonjour{\i0}\Nl'oiseau.
Dialogue: 0,0:00:02.50,0:00:04.00,Default,Rongeur,0,0,0,,{\pos(10,10)}Attrapez-le !
"""  # noqa: E501


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def films(tmp_path_factory) -> dict[str, Path]:
    """mkv (SRT eng + ASS fre, the French one flagged default), mp4 (mov_text), webm (WebVTT)."""
    folder = tmp_path_factory.mktemp("films")
    srt, ass = folder / "en.srt", folder / "fr.ass"
    srt.write_text(ENGLISH_SRT, "utf-8")
    ass.write_text(FRENCH_ASS, "utf-8")
    mkv, mp4, webm = folder / "muxed.mkv", folder / "movtext.mp4", folder / "vtt.webm"
    ffmpeg(
        "-i", str(BUNNY), "-i", str(srt), "-i", str(ass),
        "-map", "0:v", "-map", "0:a", "-map", "1", "-map", "2", "-c:v", "copy", "-c:a", "copy",
        "-c:s:0", "srt", "-c:s:1", "ass",
        "-metadata:s:s:0", "language=eng", "-metadata:s:s:1", "language=fre",
        "-metadata:s:s:1", "title=Français", "-disposition:s:0", "0", "-disposition:s:1", "default",
        str(mkv),
    )  # fmt: skip
    ffmpeg("-i", str(BUNNY), "-i", str(srt), "-map", "0", "-map", "1", "-c:v", "copy",
           "-c:a", "copy", "-c:s", "mov_text", "-metadata:s:s:0", "language=eng",
           str(mp4))  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=64x48:r=5", "-i", str(srt), "-t", "5",
           "-map", "0:v", "-map", "1", "-c:v", "libvpx", "-b:v", "50k", "-c:s", "webvtt",
           str(webm))  # fmt: skip
    # an audio track ffmpeg cannot decode: a PCM track whose codec id is unknown
    pcm = folder / "pcm.mkv"
    ffmpeg("-i", str(BUNNY), "-c:v", "copy", "-c:a", "pcm_s16le", str(pcm))
    data = pcm.read_bytes()
    assert data.count(b"A_PCM/INT/LIT") == 1
    (folder / "badaudio.mkv").write_bytes(data.replace(b"A_PCM/INT/LIT", b"A_QQQ/INT/LIT"))
    return {"mkv": mkv, "mp4": mp4, "webm": webm, "badaudio": folder / "badaudio.mkv",
            "srt": srt, "ass": ass}  # fmt: skip


def assistant(**dialogue) -> Assistant:
    settings = AppSettings()
    for key, value in dialogue.items():
        setattr(settings.dialogue, key, value)
    return Assistant(settings, use_cache=False, keep_history=False)


def copy_film(films, tmp_path, name="film.mkv") -> Path:
    film = tmp_path / name
    shutil.copy(films["mkv"], film)
    return film


# --------------------------------------------------------------------------- embedded tracks
def test_tracks_are_listed_in_ffprobe_order_and_extracted(films):
    tracks = embedded.list_subtitle_tracks(films["mkv"])
    assert [(t.number, t.codec, t.language, t.default) for t in tracks] == [
        (0, "subrip", "eng", False),
        (1, "ass", "fre", True),
    ]
    assert tracks[1].label == "Embedded track 2 (fre, Français)"
    english = embedded.extract_track(films["mkv"], tracks[0], duration_s=5.3)
    assert [(line.start_s, line.text) for line in english.lines] == [
        (0.5, "Good morning, bird."),
        (3.0, "Where is my apple?"),
    ]
    french = embedded.extract_track(films["mkv"], tracks[1]).lines
    assert [(line.speaker, line.text) for line in french] == [
        ("Lapin", "Bonjour\nl'oiseau."),
        ("Rongeur", "Attrapez-le !"),
    ]


@pytest.mark.parametrize("kind", ["mp4", "webm"])
def test_mov_text_in_mp4_and_webvtt_in_webm(films, kind):
    [track] = embedded.list_subtitle_tracks(films[kind])
    assert track.codec == {"mp4": "mov_text", "webm": "webvtt"}[kind] and track.text
    lines = embedded.extract_track(films[kind], track).lines
    assert [line.text for line in lines] == ["Good morning, bird.", "Where is my apple?"]


def test_default_track_choice_and_bitmap_tracks():
    def track(n, codec, lang="", default=False, forced=False):
        return SubtitleTrack(n, codec, lang, "", default, forced)

    pgs, vob = track(0, "hdmv_pgs_subtitle", "eng"), track(1, "dvd_subtitle")
    assert default_track([pgs, vob]) is None
    with pytest.raises(DialogueError, match=r"Embedded track 1 \(eng\) is a PGS bitmap subtitle"):
        embedded.extract_track("/nonexistent.mkv", pgs)
    forced = track(0, "subrip", "eng", default=True, forced=True)
    german, english = track(1, "ass", "ger"), track(2, "subrip", "eng")
    assert default_track([forced, german, english], "en") is english
    assert default_track([forced, german, english], "de") is german
    flagged = track(3, "mov_text", "spa", default=True)
    assert default_track([german, english, flagged], "en") is flagged


# --------------------------------------------------------------------------- the order
def test_auto_order_player_track_then_added_file_then_sidecar_then_default_track(
    films, tmp_path, monkeypatch
):
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    film = copy_film(films, tmp_path)
    a = assistant()
    a.open(film)
    default = a.dialogue
    assert (default.source, default.label) == ("embedded", "Embedded track 2 (fre, Français)")
    assert default.complete_until_s == pytest.approx(a.video.duration_s)

    sidecar = tmp_path / "film.en.srt"
    sidecar.write_text("1\n00:00:01,000 --> 00:00:02,000\nFrom the sidecar\n", "utf-8")
    a.open(film)
    assert (a.dialogue.source, a.dialogue.label) == ("sidecar", "Subtitles: film.en.srt")

    added = a.set_dialogue_source(file=films["srt"])
    assert (added.source, added.label) == ("file", "Subtitles: en.srt")

    shown = a.set_dialogue_source(track=0)  # the player shows the first subtitle track
    assert (shown.source, shown.label) == ("embedded", "Embedded track 1 (eng)")
    assert a.set_dialogue_source(track=-1).source == "file"  # the player shows none
    # VLC lists external files after the container's two tracks: the added file, the sidecar
    assert a.set_dialogue_source(track=3).label == "Subtitles: en.srt"
    b = assistant()
    b.open(film)
    assert b.set_dialogue_source(track=2).label == "Subtitles: film.en.srt"
    assert b.set_dialogue_source(track=1).label == "Embedded track 2 (fre, Français)"

    picked = a.set_dialogue_source("sidecar")  # the user's pick beats everything
    assert picked.label == "Subtitles: film.en.srt"
    assert a.set_dialogue_source("none").source == "none" and not a.dialogue


def test_open_with_subtitles_and_a_pick_from_settings(films, tmp_path):
    a = assistant(source="embedded")
    a.open(films["mkv"], subtitles=films["srt"])
    assert a.dialogue.label == "Embedded track 2 (fre, Français)"  # settings pick first
    b = assistant()
    b.open(films["mkv"], subtitles=films["srt"])
    assert b.dialogue.source == "file"
    off = assistant(enabled=False)
    off.open(films["mkv"])
    assert off.dialogue.source == "none" and "switched off" in off.dialogue.label
    assert off.dialogue_step() is False


def test_bad_choices_raise_and_keep_the_previous_dialogue(films, tmp_path):
    a = assistant()
    with pytest.raises(NotReady):
        a.set_dialogue_source("embedded")
    a.open(films["mkv"])
    before = a.dialogue
    junk = tmp_path / "junk.srt"
    junk.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(DialogueError, match=r"junk.srt"):
        a.set_dialogue_source(file=junk)
    with pytest.raises(DialogueError, match=r"no subtitle track 5"):
        a.set_dialogue_source("embedded", track=4)
    with pytest.raises(DialogueError, match=r"no subtitle file next to"):
        a.set_dialogue_source("sidecar")
    with pytest.raises(DialogueError, match=r"unknown dialogue source"):
        a.set_dialogue_source("telepathy")
    assert a.dialogue == before
    # the refused track 5 was not remembered as the player's track
    assert a.set_dialogue_source("embedded").label == "Embedded track 2 (fre, Français)"


def test_a_bad_subtitles_file_on_open_leaves_the_open_film_alone(films, tmp_path):
    a = assistant()
    a.open(films["mkv"])
    empty = tmp_path / "empty.srt"
    empty.write_bytes(b"")
    with pytest.raises(DialogueError, match=r"empty.srt is empty"):
        a.open(BUNNY, subtitles=empty)
    assert a.video.path == films["mkv"] and a.dialogue.source == "embedded"


def test_a_broken_sidecar_is_skipped_and_named_when_nothing_else_is_found(tmp_path):
    film = tmp_path / "bikes.mp4"
    shutil.copy(BIKES, film)
    (tmp_path / "bikes.srt").write_bytes(b"\x00\x01binary" * 100)
    a = assistant()
    a.open(film)
    none = a.dialogue
    assert none.source == "none" and "bikes.srt" in none.label
    assert "no audio track" in none.label  # and speech cannot help either
    (tmp_path / "bikes.en.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nBikes\n", "utf-8")
    a.open(film)
    assert a.dialogue.label == "Subtitles: bikes.en.srt"


def test_speech_without_its_model_says_how_to_get_it(films):
    a = assistant(speech_model="small")
    a.open(films["mkv"])
    assert a.dialogue.source == "embedded"  # auto never starts a download
    with pytest.raises(WeightsMissing, match=r"weights download --part whisper-small"):
        a.set_dialogue_source("speech")
    picked = assistant(source="speech", speech_model="small")
    picked.open(films["mkv"])
    assert picked.dialogue.source == "none" and "Whisper small" in picked.dialogue.label
    assert picked.status().speech_pending is False


def test_speech_on_a_film_without_audio_is_refused(tmp_path):
    a = assistant(speech_model=str(tmp_path))
    a.open(BIKES)
    with pytest.raises(DialogueError, match=r"bikes.mp4 has no audio track"):
        a.set_dialogue_source("speech")


# --------------------------------------------------------------------------- transcript CLI
def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    from moviechat_desktop.cli import main

    code = main(["transcript", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_transcript_prints_lines_with_times_and_escapes_the_terminal(films, tmp_path, capsys):
    code, out, _ = run_cli(capsys, films["mkv"])
    assert code == 0
    assert out.splitlines() == [
        "Embedded track 2 (fre, Français)",
        "[00:01] Lapin: Bonjour",
        "        l'oiseau.",
        "[00:02] Rongeur: Attrapez-le !",
    ]
    code, out, _ = run_cli(capsys, films["mkv"], "--track", "1", "--json")
    data = json.loads(out)
    assert data == {
        "source": "embedded",
        "label": "Embedded track 1 (eng)",
        "lines": [
            {"start_s": 0.5, "end_s": 2.0, "text": "Good morning, bird."},
            {"start_s": 3.0, "end_s": 4.5, "text": "Where is my apple?"},
        ],
    }
    nasty = tmp_path / "nasty.srt"
    nasty.write_text("1\n00:00:01,000 --> 00:00:02,000\nHi \u202eevil\u202c there\n", "utf-8")
    code, out, _ = run_cli(capsys, films["mkv"], "--subtitles", nasty)
    assert code == 0 and "\u202e" not in out and "\\u202e" in out  # bidi control shown escaped


def test_transcript_bad_input_is_one_line(films, tmp_path, capsys):
    code, out, err = run_cli(capsys, films["mkv"], "--track", "0")
    assert code == 2 and "counts from 1" in err
    bad = tmp_path / "bad.srt"
    bad.write_bytes(b"\x00" * 300)
    for args in ((films["mkv"], "--subtitles", bad), (films["mkv"], "--track", "9"), (BIKES,)):
        code, out, err = run_cli(capsys, *args)
        lines = err.strip().splitlines()
        assert code == 1 and out == "" and len(lines) == 1, (args, err)
        assert lines[0].startswith("moviechat-desktop: error: ")
    code, out, _ = run_cli(capsys, BIKES, "--json")  # no dialogue is an answer in JSON
    assert code == 0 and json.loads(out)["source"] == "none"
