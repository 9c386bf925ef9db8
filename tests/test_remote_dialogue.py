"""Dialogue when the engine runs on a server (issues #11 and #13): the client resolves the
subtitles and sends their lines once, or uploads the audio as Ogg Opus for speech recognition
on the server; the prompt is built on the server. Also: the window's generation settings reach
the server. The FastAPI app over Starlette's TestClient (no Ray), the tiny reference model and
a tiny random-weight Whisper (tests/tiny_whisper.py)."""

import dataclasses
import json
import shutil
import subprocess

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from moviechat_desktop.cli import main
from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.dialogue.audio_opus import encode_opus
from moviechat_desktop.engine.dialogue.speech import SpeechModel
from moviechat_desktop.engine.dialogue.speech_cache import dialogue_cache_dir
from moviechat_desktop.engine.errors import DialogueError
from moviechat_desktop.engine.model.llm import GenerationSettings
from moviechat_desktop.engine.settings import AppSettings, SamplingSettings
from moviechat_desktop.service import dialogue_wire as dwire
from moviechat_desktop.service import remote_films
from moviechat_desktop.service.remote_client import RemoteEngine, ServerError
from moviechat_desktop.service.remote_films import FilmService
from moviechat_desktop.service.serve_app import build_app
from tests.tiny_whisper import speech_film, tiny_whisper_dir

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

TOKEN = "dialogue-token"
GREEDY = GenerationSettings(greedy=True, max_new_tokens=8)
SRT = """1
00:00:00,500 --> 00:00:01,500
<i>Alpha</i> rides first.

2
00:00:02,000 --> 00:00:03,000
Bravo &amp; Charlie follow.

3
00:00:08,000 --> 00:00:09,000
Zulu wins the race.
"""


def small_settings() -> AppSettings:
    return AppSettings(sampling=SamplingSettings(n_fragments=4, frames_per_fragment=4))


@pytest.fixture(scope="module")
def whisper_dir():
    return tiny_whisper_dir()


@pytest.fixture(scope="module")
def service(reference_dir, whisper_dir):
    settings = small_settings()
    settings.dialogue.speech_model = str(whisper_dir)  # the server's speech model
    svc = FilmService(model_dir=reference_dir, settings=settings)
    svc.load()
    yield svc
    svc.shutdown()


@pytest.fixture
def requests_seen():
    return []


@pytest.fixture
def http(service, requests_seen):
    hooks = {"request": [lambda r: requests_seen.append(f"{r.method} {r.url.path}")]}
    with TestClient(build_app(service, TOKEN), base_url="http://testserver") as client:
        client.event_hooks = hooks
        yield client
    service._executor.submit(service.close_all).result()


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN)
    return path


def client(http, token_file, **dialogue) -> RemoteEngine:
    settings = small_settings()
    settings.dialogue = dataclasses.replace(settings.dialogue, **dialogue)
    return RemoteEngine("http://testserver", token_file, settings=settings, http=http)


@pytest.fixture
def subtitles(tmp_path):
    path = tmp_path / "race.srt"
    path.write_text(SRT, encoding="utf-8")
    return path


@pytest.fixture
def short_answers(monkeypatch):
    """The random Whisper says noise: 24 tokens per stretch keep it quick."""
    original = SpeechModel.transcribe
    seconds = []

    def short(self, audio, language, cancel=None, max_new_tokens=None):
        seconds.append(len(audio) / 16000)
        return original(self, audio, language, cancel, max_new_tokens=24)

    monkeypatch.setattr(SpeechModel, "transcribe", short)
    return seconds


def auth():
    return {"Authorization": f"Bearer {TOKEN}"}


# --------------------------------------------------------------------------- subtitles
def test_subtitle_lines_are_sent_once_and_the_server_builds_the_prompt(
    http, token_file, subtitles, bikes_mp4, reference_dir, requests_seen
):
    remote = client(http, token_file)
    remote.open(bikes_mp4, subtitles=subtitles)
    dialogue = remote.dialogue
    assert (dialogue.source, dialogue.label) == ("file", "Subtitles: race.srt")
    assert [line.text for line in dialogue.lines] == [
        "Alpha rides first.",
        "Bravo & Charlie follow.",
        "Zulu wins the race.",
    ]
    remote.encode()
    remote.new_conversation()
    requests_seen.clear()
    "".join(remote.ask("Who wins the race?", settings=GREEDY))
    info = remote.last_answer
    first_prompt = info.prompt
    assert (info.dialogue_source, info.dialogue_lines) == ("file", 3)
    assert "Zulu wins the race." in info.prompt and "Alpha rides first." in info.prompt
    puts = [r for r in requests_seen if r.endswith("/dialogue")]
    assert puts == [f"PUT /v1/films/{remote.film_id}/dialogue"]

    # a breakpoint never sees a line that starts after it (the cut runs on the server)
    "".join(remote.ask("Who is riding?", "breakpoint", at_s=5.0, settings=GREEDY))
    info = remote.last_answer
    assert info.dialogue_lines == 2 and "Bravo & Charlie follow." in info.prompt
    assert "Zulu" not in info.prompt
    assert [r for r in requests_seen if r.endswith("/dialogue")] == puts, "sent once"

    # the prompt is the desktop's own, byte for byte
    local = Assistant(small_settings(), model_dir=reference_dir, use_cache=False,
                      keep_history=False)  # fmt: skip
    local.open(bikes_mp4, subtitles=subtitles)
    local.encode()
    local.new_conversation()
    "".join(local.ask("Who wins the race?", settings=GREEDY))
    assert local.last_answer.prompt == first_prompt
    local.close()

    # the server forgot the film: the client reopens it and sends the lines again
    assert http.delete(f"/v1/films/{remote.film_id}", headers=auth()).status_code == 200
    "".join(remote.ask("Who wins the race?", settings=GREEDY))
    assert (remote.last_answer.dialogue_source, remote.last_answer.dialogue_lines) == ("file", 3)
    assert len([r for r in requests_seen if r.endswith("/dialogue")]) == 2

    # a new choice is sent with the next question; dialogue switched off in Settings too
    assert remote.set_dialogue_source("none").source == "none"
    "".join(remote.ask("Who wins the race?", settings=GREEDY))
    assert (remote.last_answer.dialogue_source, remote.last_answer.dialogue_lines) == ("none", 0)
    remote.set_dialogue_source("file")
    off = dataclasses.replace(remote.settings, dialogue=dataclasses.replace(
        remote.settings.dialogue, enabled=False))  # fmt: skip
    remote.settings = off
    assert remote.dialogue.source == "none"
    "".join(remote.ask("Who wins the race?", settings=GREEDY))
    assert "Zulu" not in remote.last_answer.prompt
    with pytest.raises(DialogueError):
        remote.set_dialogue_source("file", file=subtitles.with_name("missing.srt"))
    remote.close()


def test_cli_ask_server_subtitles_and_no_dialogue(
    http, token_file, subtitles, bikes_mp4, monkeypatch, capsys
):
    from moviechat_desktop import cli_serve

    monkeypatch.setattr(
        cli_serve, "make_engine", lambda args: client(http, token_file) if args.server else None
    )

    def ask(*extra):
        code = main(["ask", str(bikes_mp4), "Who wins?", "--server", "http://testserver",
                     "--json", "--greedy", "--max-new-tokens", "6", *extra])  # fmt: skip
        out = capsys.readouterr().out
        return code, json.loads(out) if code == 0 else None

    code, data = ask("--subtitles", str(subtitles))
    assert code == 0 and data["engine"] == "server"
    assert (data["dialogue_source"], data["dialogue_lines"]) == ("file", 3)
    assert "Alpha rides first." in data["prompt"]
    code, data = ask("--subtitles", str(subtitles), "--no-dialogue")
    assert code == 0 and (data["dialogue_source"], data["dialogue_lines"]) == ("none", 0)

    def refused(tokens):
        try:
            code = main(["ask", str(bikes_mp4), "Who?", "--server", "http://testserver",
                         "--max-new-tokens", tokens])  # fmt: skip
        except SystemExit as exit_:
            code = exit_.code
        return code, capsys.readouterr().err

    code, err = refused("99999")  # beyond any model's context: a usage error, at once
    assert code == 2 and "--max-new-tokens 99999 is out of range" in err
    code, err = refused("1990")  # beyond this model's room beside the video: the server says
    assert code == 1 and err.count("\n") == 1
    assert "max_new_tokens 1990 is out of range: this model" in err


def test_bad_dialogue_uploads_are_refused_with_a_reason(http, token_file, bikes_mp4):
    remote = client(http, token_file)
    remote.open(bikes_mp4)
    url = f"/v1/films/{remote.film_id}/dialogue"

    def put(body, raw=None):
        response = http.put(url, content=raw or json.dumps(body), headers=auth())
        return response.status_code, response.json().get("error", {}).get("message", "")

    good = {"id": "file-abc", "source": "file", "label": "Subtitles: x.srt",
            "lines": [[0.5, 1.0, "Hi", ""], [2.0, 3.0, "There", "Ann"]]}  # fmt: skip
    assert put(good)[0] == 200
    cases = [
        ({**good, "lines": [[0.5, 1.0, "Hi"]] * (dwire.MAX_LINES + 1)}, "at most 20000"),
        ({**good, "lines": [[2.0, 3.0, "B"], [0.5, 1.0, "A"]]}, "starts before the line above"),
        ({**good, "lines": [[3.0, 2.0, "Back"]]}, "end before they start"),
        ({**good, "lines": [[0.0, 99.0, "Long"]]}, "not inside the film"),
        ({**good, "lines": [[-1.0, 1.0, "Early"]]}, "not inside the film"),
        ({**good, "lines": [[0.0, 1.0, " "]]}, "text of 1..2000"),
        ({**good, "lines": [[0.0, 1.0, "x" * 2001]]}, "text of 1..2000"),
        ({**good, "lines": [[0.0, True, "x"]]}, "finite number"),
        ({**good, "lines": "Hi"}, "lines must be a list"),
        ({**good, "source": "speech", "language": "klingon!", "chunk_s": 30.0}, "language"),
        ({**good, "source": "dvd"}, "source must be one of"),
        ({**good, "id": "../x"}, "short lowercase name"),
        ({**good, "source": "none"}, "no lines"),
    ]
    for body, message in cases:
        status, text = put(body)
        assert status == 400 and message in text, (body["source"], text)
    raw = json.dumps(good).replace("0.5", "NaN").encode()
    assert put(None, raw) == (400, "dialogue line 1's start must be a finite number")
    # a question naming dialogue the server does not hold is told to send it again
    ask = f"/v1/films/{remote.film_id}/ask"
    response = http.post(ask, json={"question": "x", "dialogue": "file-other"}, headers=auth())
    assert response.status_code == 409 and response.json()["error"]["type"] == "DialogueMissing"
    remote.close()


def test_a_pathological_subtitle_file_is_fitted_to_the_servers_limits():
    from moviechat_desktop.engine.dialogue.lines import Dialogue, DialogueLine

    many = tuple(DialogueLine(i * 0.1, i * 0.1 + 0.05, f"line {i}") for i in range(30_000))
    body = dwire.text_body(Dialogue("file", "Subtitles: karaoke.ass", many, 3000.0))
    kept = dwire.lines_from_wire(body["lines"], 3000.0)  # what the server checks
    assert len(kept) == dwire.MAX_LINES
    assert kept[0].start_s < 60 and kept[-1].start_s > 2940  # spread over the whole film
    long = tuple(DialogueLine(i * 1.0, i + 0.5, "é" * 5000, "Ann") for i in range(2_000))
    body = dwire.text_body(Dialogue("file", "Subtitles: long.srt", long, 3000.0))
    assert len(json.dumps(body)) < 8 * 1024 * 1024  # remote_wire.MAX_JSON_BODY
    assert all(len(row[2]) == dwire.MAX_LINE_CHARS for row in body["lines"])
    assert 0 < len(body["lines"]) < 2_000


# --------------------------------------------------------------------------- speech
def test_speech_is_uploaded_as_opus_and_recognised_on_the_server(
    http, token_file, tmp_path, requests_seen, short_answers
):
    film = speech_film(tmp_path / "talk.mp4", 70.0)
    remote = client(http, token_file)  # "auto": no subtitles here, the server has the model
    remote.open(film)
    first = remote.dialogue
    assert (first.source, first.label, first.lines) == ("speech", "Speech: 0% recognised", ())
    status = remote.status()
    assert status.speech_pending and status.speech_total_s == pytest.approx(70.0, abs=0.2)
    done, sizes = [], []
    speech = remote._dialogue.film.speech
    while remote.dialogue_step():
        sizes.append(speech.bytes_uploaded - sum(sizes))
        done.append(remote.status().speech_done_s)
        assert remote.dialogue.complete_until_s == pytest.approx(done[-1], abs=0.2)
    assert done == pytest.approx([30.0, 60.0, 70.0], abs=0.2)
    assert [round(s) for s in short_answers] == [30, 30, 10], "decoded back to 16 kHz"
    assert all(500 < size < 200_000 for size in sizes), sizes  # Opus, not raw samples
    final = remote.dialogue
    assert final.label == "Speech: recognised" and not remote.status().speech_pending
    assert remote.status().speech_covered == ((0.0, pytest.approx(70.0, abs=0.2)),)
    for line in final.lines:  # a random model says noise: the structure only
        assert 0.0 <= line.start_s <= line.end_s <= 70.2
    # the server saved the transcript under the film's fingerprint
    [saved] = list(dialogue_cache_dir().glob("speech-*.json"))
    assert json.loads(saved.read_text("utf-8"))["key"]["film"] == remote.film_id

    # a second client after the server closed the film (a restart, a reconnect) gets the
    # lines back from the server's cache without uploading anything
    assert http.delete(f"/v1/films/{remote.film_id}", headers=auth()).status_code == 200
    requests_seen.clear()
    again = client(http, token_file, source="speech")
    again.open(film)
    assert again.dialogue.lines == final.lines and again.dialogue.label == "Speech: recognised"
    assert not again.status().speech_pending and again.dialogue_step() is False
    assert not [r for r in requests_seen if "/speech/" in r]
    again.encode()
    again.new_conversation()
    "".join(again.ask("What is said?", settings=GREEDY))
    assert again.last_answer.dialogue_source == "speech"
    assert len(short_answers) == 3
    remote.close()
    again.close()


def test_real_film_audio_recognised_and_clear_speech_failures(
    http, service, token_file, bigbuckbunny, bikes_mp4, tmp_path, short_answers, monkeypatch
):
    remote = client(http, token_file, source="speech")
    remote.open(bigbuckbunny)
    while remote.dialogue_step():
        pass
    status = remote.status()
    assert status.speech_error is None and status.speech_done_s == pytest.approx(5.3, abs=0.1)
    assert remote.dialogue.label == "Speech: recognised" and len(short_answers) == 1

    # a film without audio: said before anything is uploaded
    remote.open(bikes_mp4)
    assert "has no audio track" in remote.dialogue.label
    with pytest.raises(DialogueError, match="has no audio track"):
        remote.set_dialogue_source("speech")
    remote.close()

    # uploads that are not Ogg Opus, or too big, or outside the film
    remote.open(bigbuckbunny)
    film_id = remote.film_id
    speech = f"/v1/films/{film_id}/speech"
    response = http.put(f"{speech}/0", content=b"RIFF....WAVEfmt ", headers=auth())
    assert response.status_code == 400 and "not an Ogg stream" in response.text
    response = http.put(f"{speech}/0", content=b"OggS" + b"\x00" * 500, headers=auth())
    assert response.status_code == 400 and "not decodable Ogg Opus" in response.text
    big = b"OggS" + b"\x00" * dwire.MAX_AUDIO_BODY
    assert http.put(f"{speech}/0", content=big, headers=auth()).status_code == 413
    chunk = encode_opus(bigbuckbunny, 0.0, 5.0)
    assert chunk.startswith(b"OggS") and b"OpusHead" in chunk[:100]
    response = http.put(f"{speech}/7", content=chunk, headers=auth())
    assert response.status_code == 400 and "outside 0..0" in response.text
    response = http.put(f"{speech}/0?language=../../x", content=chunk, headers=auth())
    assert response.status_code == 400
    remote.close()

    # the server has no speech model: the client is told the server's reason
    monkeypatch.setattr(service.settings.dialogue, "speech_model", str(tmp_path))
    assert http.delete(f"/v1/films/{film_id}", headers=auth()).status_code == 200
    plain = client(http, token_file)
    plain.open(bigbuckbunny)
    assert plain.dialogue.source == "none"
    assert "the server cannot recognise speech" in plain.dialogue.label
    with pytest.raises(DialogueError, match="not a CTranslate2 Whisper model folder"):
        plain.set_dialogue_source("speech")
    response = http.put(f"/v1/films/{plain.film_id}/speech/0", content=chunk, headers=auth())
    assert response.status_code == 422 and "cannot recognise speech" in response.text
    plain.close()


def test_an_undecodable_audio_track_stops_speech_but_not_the_memory(
    http, token_file, bigbuckbunny, tmp_path, short_answers
):
    pcm = tmp_path / "pcm.mkv"
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(bigbuckbunny), "-c:v", "copy"]
    subprocess.run([*cmd, "-c:a", "pcm_s16le", str(pcm)], check=True)
    bad = tmp_path / "badaudio.mkv"
    bad.write_bytes(pcm.read_bytes().replace(b"A_PCM/INT/LIT", b"A_QQQ/INT/LIT"))  # unknown codec
    remote = client(http, token_file, source="speech")
    remote.open(bad)
    assert remote.status().speech_pending
    with pytest.raises(DialogueError, match=r"audio track of badaudio\.mkv cannot be decoded"):
        remote.dialogue_step()
    assert remote.dialogue_step() is False and short_answers == []  # nothing was uploaded
    status = remote.status()
    assert "cannot be decoded" in status.speech_error and not status.speech_pending
    assert remote.dialogue.label.startswith("Speech: stopped at 0% — the audio track")
    while not remote.status().finished:  # the memory carries on
        remote.background_step()
    assert remote.status().fragments_done == remote.status().fragments_total
    remote.close()


# --------------------------------------------------------------------------- generation
def test_the_windows_generation_settings_reach_the_server(
    http, token_file, bikes_mp4, reference_dir, monkeypatch
):
    used = []
    original = remote_films.check_generation

    def spy(settings, limit):
        used.append(settings)
        return original(settings, limit)

    monkeypatch.setattr(remote_films, "check_generation", spy)
    remote = client(http, token_file, enabled=False)
    remote.open(bikes_mp4)
    remote.encode()
    # the window changes Settings → Answers (the worker assigns engine.settings), then asks
    # without per-question settings: those are what the server uses
    settings = dataclasses.replace(remote.settings)
    settings.generation = dataclasses.replace(
        settings.generation, greedy=True, max_new_tokens=3, top_p=0.5, temperature=0.7
    )
    remote.settings = settings
    "".join(remote.ask("What happens?"))
    assert (used[-1].greedy, used[-1].max_new_tokens, used[-1].top_p) == (True, 3, 0.5)
    assert used[-1].temperature == 0.7 and remote.last_answer.tokens <= 3
    limit = Assistant(model_dir=reference_dir).answer_length_limit()  # what the CLI checks
    assert remote.answer_length_limit() == limit < 1999
    # the server checks them as the CLI does
    out_of_range = f"max_new_tokens 1999 is out of range: this model takes 1 to {limit}"
    with pytest.raises(ServerError, match=out_of_range):
        "".join(remote.ask("Why?", settings=GenerationSettings(max_new_tokens=1999)))
    ask = f"/v1/films/{remote.film_id}/ask"
    for bad, message in (
        ({"top_p": 0.001}, "top_p must lie in 0.01..1"),
        ({"temperature": 9.0}, "temperature must lie in 0.01..5"),
        ({"max_length": 100000, "max_new_tokens": 5}, "max_length must lie in 1..2000"),
        ({"repetition_penalty": 50.0}, "repetition_penalty"),
        ({"seed": -1}, "seed must be a whole number"),
    ):
        response = http.post(ask, json={"question": "x", "settings": bad}, headers=auth())
        assert response.status_code == 400 and message in response.text, response.text
    remote.close()
