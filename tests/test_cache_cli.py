"""The CLI honours the cache: ``encode`` once, then ``ask`` hits it; ``--no-cache``;
``cache status|clear``; ``ask`` starts a new conversation unless ``--continue``."""

import json

import pytest
from cache_helpers import EncoderCounter

from moviechat_desktop.cli import main
from moviechat_desktop.engine.store.chat_history import ChatHistory
from moviechat_desktop.engine.store.fingerprint import file_fingerprint


@pytest.fixture(scope="module")
def clip(make_video):
    return make_video("cli cached.mp4", seconds=3)


@pytest.fixture
def few_fragments():
    """A user settings file with 16 fragments per film (the CLI reads the user's settings)."""
    from moviechat_desktop.engine.settings import settings_path

    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[sampling]\nn_fragments = 16\n")
    return 16


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _ask(capsys, clip, reference_dir, question, *extra):
    code, out, err = run_cli(
        capsys, "ask", clip, question, "--model-dir", reference_dir,
        "--greedy", "--max-new-tokens", "5", "--json", *extra,
    )  # fmt: skip
    assert code == 0, err
    return json.loads(out)


def test_encode_then_ask_hits_the_cache(capsys, reference_dir, clip, monkeypatch):
    counter = EncoderCounter(monkeypatch)
    code, out, err = run_cli(capsys, "encode", clip, "--model-dir", reference_dir, "--json")
    assert code == 0, err
    encoded = json.loads(out)
    assert encoded["cache_hit"] is False and encoded["fragments_from_cache"] == 0
    assert counter.frames == 1024

    counter.calls.clear()
    result = _ask(capsys, clip, reference_dir, "What is happening?")
    assert result["cache_hit"] is True and result["fragments_from_cache"] == 128
    assert result["frames_sampled"] == 1024 and result["memory_frames"] == 256
    assert counter.calls == [], "ask re-encoded a cached film"

    uncached = _ask(capsys, clip, reference_dir, "What is happening?", "--no-cache")
    assert uncached["cache_hit"] is False
    assert counter.frames == 1024, "--no-cache encodes from scratch"
    assert uncached["answer"] == result["answer"], "greedy: the cache changes nothing"

    code, out, err = run_cli(capsys, "encode", clip, "--model-dir", reference_dir)
    assert code == 0, err
    assert "128 fragments from the cache" in out
    assert counter.frames == 1024


def test_cache_status_and_clear(capsys, reference_dir, clip, few_fragments):
    code, out, _ = run_cli(capsys, "cache", "status", "--json")
    assert code == 0 and json.loads(out)["entries"] == []
    run_cli(capsys, "encode", clip, "--model-dir", reference_dir)
    code, out, _ = run_cli(capsys, "cache", "status", "--json")
    status = json.loads(out)
    (entry,) = status["entries"]
    assert entry["film"] == clip.name
    assert entry["fragments_done"] == entry["fragments_total"] == few_fragments
    assert status["total_bytes"] == entry["bytes"] > 0
    assert status["limit_bytes"] == 20 * 10**9
    code, out, _ = run_cli(capsys, "cache", "status")
    assert code == 0 and clip.name in out and "16/16 fragments" in out
    code, out, _ = run_cli(capsys, "cache", "clear", "--json")
    cleared = json.loads(out)
    assert code == 0 and cleared["removed"] == 1 and cleared["freed_bytes"] == entry["bytes"]
    code, out, _ = run_cli(capsys, "cache", "status", "--json")
    assert json.loads(out)["entries"] == []
    code, out, _ = run_cli(capsys, "cache", "clear")
    assert code == 0 and out.startswith("removed 0 cached memories")


def test_ask_records_conversations_and_continue_follows_up(
    capsys, reference_dir, clip, few_fragments
):
    first = _ask(capsys, clip, reference_dir, "Who is there?")
    _ask(capsys, clip, reference_dir, "Who is there?")
    history = ChatHistory.for_film(file_fingerprint(clip))
    assert [c.messages for c in history.conversations()] == [2, 2], "a new one each time"
    _ask(capsys, clip, reference_dir, "And then?", "--continue")
    conversations = history.conversations()
    assert [c.messages for c in conversations] == [2, 4]
    latest = history.conversation(conversations[-1].id)
    assert [r.text for r in latest if r.role == "user"] == ["Who is there?", "And then?"]
    assert latest[1].text == first["answer"]
    assert latest[1].settings["greedy"] is True and latest[1].settings["max_new_tokens"] == 5
