"""Speech recognition end to end with a tiny random-weight Whisper (CTranslate2, built offline
by tests/tiny_whisper.py) on real speech (espeak-ng) in a real film: chunks on the engine's
schedule, the per-film cache and its resume after a SIGKILL, the weights part, bad audio."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.dialogue.speech import SpeechModel, resolve_speech_model
from moviechat_desktop.engine.dialogue.speech_cache import dialogue_cache_dir
from moviechat_desktop.engine.errors import DialogueError, WeightsMissing
from moviechat_desktop.engine.settings import AppSettings
from tests.cache_helpers import run_and_kill
from tests.tiny_whisper import speech_film, tiny_whisper_dir

ROOT = Path(__file__).resolve().parent.parent
BUNNY = ROOT / ".cache" / "test-videos" / "bigbuckbunny.mp4"
REFERENCE = ROOT / "tests" / "data" / "reference"

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


@pytest.fixture(scope="module")
def whisper_dir() -> Path:
    return tiny_whisper_dir()


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> Path:
    """70 s: speech in the first seconds, then silence; three 30 s chunks (30, 30, 10)."""
    return speech_film(tmp_path_factory.mktemp("speech") / "talk.mp4", 70.0)


def speech_assistant(model: str | Path, **kw) -> Assistant:
    settings = AppSettings()
    settings.dialogue.source = "speech"
    settings.dialogue.speech_model = str(model)
    return Assistant(settings, model_dir=kw.pop("model_dir", REFERENCE), **kw)


def count_transcribe(monkeypatch) -> list[float]:
    """Record the length (s) of every audio stretch given to the model."""
    calls: list[float] = []
    original = SpeechModel.transcribe

    def counting(self, audio, language, cancel=None, max_new_tokens=None):
        calls.append(len(audio) / 16000)
        return original(self, audio, language, cancel, max_new_tokens=24)

    monkeypatch.setattr(SpeechModel, "transcribe", counting)
    return calls


def test_speech_is_recognised_chunk_by_chunk_and_cached(whisper_dir, film, monkeypatch):
    calls = count_transcribe(monkeypatch)
    a = speech_assistant(whisper_dir, keep_history=False)
    a.open(film)
    first = a.dialogue
    assert (first.source, first.label, first.lines) == ("speech", "Speech: 0% recognised", ())
    status = a.status()
    assert status.speech_pending and status.speech_total_s == pytest.approx(70.0, abs=0.2)
    done = []
    while a.dialogue_step():
        done.append(a.status().speech_done_s)
        assert a.dialogue.complete_until_s == pytest.approx(done[-1], abs=0.2)
    assert done == pytest.approx([30.0, 60.0, 70.0], abs=0.2)
    assert [round(c) for c in calls] == [30, 30, 10]
    final = a.dialogue
    assert final.label == "Speech: recognised" and not a.status().speech_pending
    assert a.status().speech_covered == ((0.0, pytest.approx(70.0, abs=0.2)),)
    for line in final.lines:  # a random model says noise: check the structure only
        assert 0.0 <= line.start_s <= line.end_s <= 70.2 and line.text.strip() == line.text
    assert [line.start_s for line in final.lines] == sorted(line.start_s for line in final.lines)
    [saved] = list(dialogue_cache_dir().glob("speech-*.json"))
    data = json.loads(saved.read_text("utf-8"))
    assert sorted(data["chunks"]) == ["0", "1", "2"] and data["key"]["film"] == a.film_id
    assert a.dialogue_step() is False

    again = speech_assistant(whisper_dir, keep_history=False)
    again.open(film)  # the transcript comes back without recognising anything
    assert again.dialogue.lines == final.lines and again.dialogue.label == "Speech: recognised"
    assert len(calls) == 3


def test_recognition_resumes_after_a_kill(whisper_dir, film, tmp_path, monkeypatch):
    script = tmp_path / "recognise.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            sys.path.insert(0, {str(ROOT)!r})
            from tests.test_dialogue_speech import speech_assistant
            a = speech_assistant({str(whisper_dir)!r}, keep_history=False)
            a.open({str(film)!r})
            while a.dialogue_step():
                print("chunk", a.status().speech_done_s, flush=True)
                time.sleep(30)  # killed here, after the first chunk was saved
            """
        ),
        "utf-8",
    )
    seen = []

    def on_line(word, rest):
        seen.append((word, rest))
        return word == "chunk"

    killed, _ = run_and_kill(script, dict(os.environ), on_line, stderr=tmp_path / "err.txt")
    assert killed and seen == [("chunk", "30.0")]
    calls = count_transcribe(monkeypatch)
    a = speech_assistant(whisper_dir, keep_history=False)
    a.open(film)
    assert a.status().speech_done_s == pytest.approx(30.0)
    assert a.dialogue.label == "Speech: 43% recognised"
    while a.dialogue_step():
        pass
    assert [round(c) for c in calls] == [30, 10]  # only the two chunks the kill lost
    assert a.dialogue.label == "Speech: recognised"


def test_a_damaged_transcript_file_is_set_aside(whisper_dir, film, monkeypatch):
    count_transcribe(monkeypatch)
    a = speech_assistant(whisper_dir, keep_history=False)
    a.open(film)
    a.dialogue_step()
    [saved] = list(dialogue_cache_dir().glob("speech-*.json"))
    saved.write_bytes(b'{"format": 1, "key": ')
    b = speech_assistant(whisper_dir, keep_history=False)
    b.open(film)
    assert b.status().speech_done_s == 0.0 and b.dialogue.label == "Speech: 0% recognised"
    assert saved.with_name(saved.name + ".corrupt").is_file()


def test_background_steps_alternate_memory_and_speech(whisper_dir, film, monkeypatch):
    calls = count_transcribe(monkeypatch)
    a = speech_assistant(whisper_dir, use_cache=False, keep_history=False)
    a.open(film)
    a.load_model()
    fragments = []
    for _ in range(4):
        status = a.background_step()
        fragments.append(status.fragments_done)
    assert fragments == [1, 1, 2, 2] and len(calls) == 2


def test_undecodable_audio_stops_speech_but_not_the_memory_or_the_chat(
    whisper_dir, tmp_path, monkeypatch
):
    pcm = tmp_path / "pcm.mkv"
    cmd = ["ffmpeg", "-v", "error", "-y", "-i", str(BUNNY), "-c:v", "copy", "-c:a", "pcm_s16le"]
    subprocess.run([*cmd, str(pcm)], check=True)
    data = pcm.read_bytes()
    bad = tmp_path / "badaudio.mkv"
    bad.write_bytes(data.replace(b"A_PCM/INT/LIT", b"A_QQQ/INT/LIT"))  # an unknown codec
    a = speech_assistant(whisper_dir, use_cache=True)
    a.open(bad)
    a.load_model()
    a.encode_step()
    answer = "".join(a.ask("What happens?", settings=a.generation_settings()))
    records = a.conversation_records()
    with pytest.raises(DialogueError, match=r"audio track of badaudio.mkv cannot be decoded"):
        a.dialogue_step()
    assert a.dialogue_step() is False
    status = a.status()
    assert "cannot be decoded" in status.speech_error and not status.speech_pending
    assert a.dialogue.label.startswith("Speech: stopped at 0% — the audio track")
    while not a.status().finished:  # the memory carries on
        a.background_step()
    assert a.status().fragments_done == a.status().fragments_total
    assert a.conversation_records() == records and answer


def test_film_without_audio_and_missing_model(whisper_dir, tmp_path):
    a = speech_assistant(whisper_dir)
    a.open(ROOT / ".cache" / "test-videos" / "bikes.mp4")
    assert a.dialogue.source == "none" and "has no audio track" in a.dialogue.label
    assert a.dialogue_step() is False
    with pytest.raises(WeightsMissing, match=r"not a CTranslate2 Whisper model folder"):
        b = speech_assistant(tmp_path)
        b.open(BUNNY)
        b.set_dialogue_source("speech")


def test_whisper_is_a_weights_part_imported_and_verified(whisper_dir, tmp_path):
    from moviechat_desktop.engine.weights import import_weights, load_manifest, verify_weights
    from moviechat_desktop.engine.weights.status import part_status

    manifest = load_manifest()
    sizes = {p.id: p.size for p in manifest.optional}
    assert list(sizes) == [f"whisper-{s}" for s in ("tiny", "base", "small", "medium", "large-v3")]
    assert sizes["whisper-tiny"] < sizes["whisper-small"] < sizes["whisper-large-v3"]
    assert part_status(manifest.part("whisper-tiny")).state == "missing"
    copy = tmp_path / "my-whisper"
    shutil.copytree(whisper_dir, copy)
    result = import_weights(copy, "whisper-tiny")
    assert [s.state for s in result.imported] == ["ready"]
    [checked] = verify_weights(["whisper-tiny"])
    assert checked.ok
    a = speech_assistant("tiny", keep_history=False)
    a.open(BUNNY)
    assert a.set_dialogue_source("speech").source == "speech"
    (copy / "model.bin").unlink()
    assert part_status(manifest.part("whisper-tiny")).state == "partial"
    with pytest.raises(WeightsMissing, match=r"weights download --part whisper-tiny"):
        resolve_speech_model("tiny")


def test_transcript_cli_recognises_speech_and_prints_json(whisper_dir, film, capsys, monkeypatch):
    from moviechat_desktop.cli import main
    from moviechat_desktop.engine.settings import settings_path

    count_transcribe(monkeypatch)
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'[dialogue]\nspeech_model = "{whisper_dir}"\n', "utf-8")
    assert main(["transcript", str(film), "--source", "speech", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["source"] == "speech" and out["label"] == "Speech: recognised"
    assert all(set(line) == {"start_s", "end_s", "text"} for line in out["lines"])
    bikes = ROOT / ".cache" / "test-videos" / "bikes.mp4"
    assert main(["transcript", str(bikes), "--source", "speech"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("moviechat-desktop: error: ") and "no audio track" in err[-1]


def test_weights_cli_lists_the_speech_models_and_whisper_names_the_chosen_one(capsys):
    from moviechat_desktop.cli import main
    from moviechat_desktop.engine.settings import settings_path

    assert main(["weights", "status", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [p["id"] for p in report["optional"]][:3] == [
        "whisper-tiny",
        "whisper-base",
        "whisper-small",
    ]
    assert all(p["state"] == "missing" for p in report["optional"])
    assert main(["weights", "download", "--part", "whisper"]) == 1  # offline in tests
    assert "Whisper small speech recognition" in capsys.readouterr().err
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('[dialogue]\nspeech_model = "base"\n', "utf-8")
    assert main(["weights", "download", "--part", "whisper"]) == 1
    assert "Whisper base speech recognition" in capsys.readouterr().err


def test_encode_also_recognises_the_speech_when_it_is_the_source(
    whisper_dir, film, capsys, monkeypatch
):
    from moviechat_desktop.cli import main
    from moviechat_desktop.engine.settings import settings_path

    calls = count_transcribe(monkeypatch)
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'[dialogue]\nsource = "speech"\nspeech_model = "{whisper_dir}"\n', "utf-8")
    assert main(["encode", str(film), "--model-dir", str(REFERENCE), "--no-cache"]) == 0
    assert "encoded" in capsys.readouterr().out
    [saved] = list(dialogue_cache_dir().glob("speech-*.json"))
    assert sorted(json.loads(saved.read_text("utf-8"))["chunks"]) == ["0", "1", "2"]
    assert len(calls) == 3
