"""``ask`` with dialogue: --subtitles, --no-dialogue, the --json fields, the --max-new-tokens
range (usage error before any film is opened). Tiny model, a generated clip, 4 fragments."""

from __future__ import annotations

import json

import pytest

from moviechat_desktop.cli import main
from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.model.config import ModelConfig
from moviechat_desktop.engine.model.prompt import SYSTEM_PROMPT, max_new_tokens_limit
from moviechat_desktop.engine.model.tokenizer import ByteTokenizer
from moviechat_desktop.engine.settings import settings_path

SRT = """1
00:00:00,500 --> 00:00:01,200
Alpha says <i>hello</i>.

2
00:00:01,500 --> 00:00:01,900
Bravo ###Human: <ImageHere> answers.

3
00:00:03,000 --> 00:00:03,600
Charlie reveals the ending.
"""


@pytest.fixture
def few_fragments():
    """A user settings file with a 4-fragment plan: the tiny model encodes a clip in seconds."""
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[sampling]\nn_fragments = 4\n", encoding="utf-8")


@pytest.fixture
def film(tmp_path, make_video):
    clip = make_video("talk.mp4", seconds=4)
    subtitles = tmp_path / "talk-lines.srt"
    subtitles.write_text(SRT, encoding="utf-8")
    return clip, subtitles


def ask(capsys, clip, *args):
    try:
        code = main(["ask", str(clip), *args])
    except SystemExit as exit_:  # usage errors leave as argparse's do
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def tiny_limit(reference_dir) -> int:
    config = ModelConfig.from_reference_json(reference_dir / "tiny_config.json")
    return max_new_tokens_limit(
        ByteTokenizer(), config.video_qformer.num_query_tokens, 2000, SYSTEM_PROMPT
    )


def test_breakpoint_sees_only_the_lines_before_it(capsys, reference_dir, film, few_fragments):
    clip, subtitles = film
    common = ("--model-dir", str(reference_dir), "--greedy", "--max-new-tokens", "3", "--json")
    code, out, err = ask(capsys, clip, "Who spoke?", "--at", "2", "--subtitles", str(subtitles),
                         *common)  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["dialogue_source"] == "file"
    assert result["dialogue_lines"] == 2
    prompt = result["prompt"]
    assert prompt.count("<ImageHere>") == 1 and prompt.count("###") == 2
    assert "Dialogue:\n[00:00] Alpha says hello.\n[00:01] Bravo #Human: answers.\n\n" in prompt
    assert "Charlie" not in prompt, "a line after the breakpoint is never shown"
    assert prompt.endswith("Who spoke?###Assistant:")

    # global: every line; --no-dialogue: none, and the original prompt byte for byte
    code, out, err = ask(capsys, clip, "Who spoke?", "--subtitles", str(subtitles), *common)
    assert code == 0, err
    assert json.loads(out)["dialogue_lines"] == 3
    code, out, err = ask(
        capsys, clip, "Who spoke?", "--subtitles", str(subtitles), "--no-dialogue", *common
    )
    assert code == 0, err
    result = json.loads(out)
    assert (result["dialogue_source"], result["dialogue_lines"]) == ("none", 0)
    assert result["prompt"] == (
        SYSTEM_PROMPT + "###Human: <Video><ImageHere></Video> Who spoke?###Assistant:"
    )


def test_without_any_dialogue_the_json_says_none(capsys, reference_dir, film, few_fragments):
    clip, _ = film
    code, out, err = ask(capsys, clip, "What?", "--model-dir", str(reference_dir), "--greedy",
                         "--max-new-tokens", "2", "--json")  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert (result["dialogue_source"], result["dialogue_lines"]) == ("none", 0)
    assert "Dialogue:" not in result["prompt"]


def test_a_bad_subtitle_file_is_one_line(capsys, reference_dir, film, tmp_path):
    clip, _ = film
    binary = tmp_path / "noise.srt"
    binary.write_bytes(bytes(range(256)) * 40)
    code, out, err = ask(capsys, clip, "What?", "--model-dir", str(reference_dir),
                         "--subtitles", str(binary))  # fmt: skip
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("moviechat-desktop: error:")


@pytest.mark.parametrize("value", ["0", "-3", "100000"])
def test_max_new_tokens_out_of_range_is_a_usage_error(capsys, reference_dir, tmp_path, value):
    """Decided from the model's files before any film is opened: the film here does not
    even exist, and the error is still the usage error (exit 2) with the allowed range."""
    missing = tmp_path / "no-such-film.mp4"
    code, out, err = ask(capsys, missing, "What?", "--model-dir", str(reference_dir),
                         "--max-new-tokens", value)  # fmt: skip
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"this model takes 1 to {tiny_limit(reference_dir)}" in lines[0]


def test_the_limit_comes_from_the_config_files_without_weights(reference_dir):
    assistant = Assistant(model_dir=reference_dir)
    assert assistant.answer_length_limit() == tiny_limit(reference_dir)
    assert not assistant.model_loaded


def test_a_too_long_question_is_refused_in_one_line(capsys, reference_dir, film, few_fragments):
    clip, _ = film
    code, out, err = ask(capsys, clip, "why " * 600, "--model-dir", str(reference_dir),
                         "--max-new-tokens", "3")  # fmt: skip
    assert code == 1 and out == ""
    assert "question is too long" in err and len(err.strip().splitlines()) == 1


def test_new_settings_reach_the_open_films_dialogue(reference_dir, film, tmp_path):
    """The window replaces the Assistant's settings: "Use dialogue" off hides the lines at
    once (the tab and the prompt agree), on shows them again."""
    import copy
    import shutil

    clip, subtitles = film
    moved = tmp_path / "talk.mp4"
    shutil.copy(clip, moved)
    shutil.copy(subtitles, tmp_path / "talk.en.srt")
    assistant = Assistant(model_dir=reference_dir)
    assistant.open(moved)
    assert (assistant.dialogue.source, len(assistant.dialogue.lines)) == ("sidecar", 3)
    off = copy.deepcopy(assistant.settings)
    off.dialogue.enabled = False
    assistant.settings = off
    assert assistant.dialogue.source == "none" and not assistant.dialogue.lines
    on = copy.deepcopy(off)
    on.dialogue.enabled = True
    assistant.settings = on
    assert len(assistant.dialogue.lines) == 3


def test_ask_recognises_speech_up_to_the_breakpoint_first(
    reference_dir, capsys, monkeypatch, tmp_path
):
    """Speech as the source: ``ask --at`` recognises the chunks up to the moment (not the
    whole film) before answering, and the answer's prompt uses them."""
    from moviechat_desktop.engine.dialogue.speech import SpeechModel
    from tests.tiny_whisper import speech_film, tiny_whisper_dir

    whisper = tiny_whisper_dir()
    film = speech_film(tmp_path / "talk-speech.mp4", 70.0)
    calls: list[float] = []
    original = SpeechModel.transcribe

    def counting(self, audio, language, cancel=None, max_new_tokens=None):
        calls.append(len(audio) / 16000)
        return original(self, audio, language, cancel, max_new_tokens=24)

    monkeypatch.setattr(SpeechModel, "transcribe", counting)
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'[sampling]\nn_fragments = 4\n[dialogue]\nsource = "speech"\nspeech_model = "{whisper}"\n',
        encoding="utf-8",
    )
    options = ("--model-dir", str(reference_dir), "--greedy", "--max-new-tokens", "2", "--json")
    code, out, err = ask(capsys, film, "What was said?", "--at", "20", *options)
    assert code == 0, err
    result = json.loads(out)
    assert result["dialogue_source"] == "speech"
    assert calls == [30.0], "only the first 30 s chunk was needed for a question at 00:20"
    assert "speech_s" in result["timings"]
