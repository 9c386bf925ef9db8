"""A poisoned chat history (a line nested 100 000 deep, a timestamp of 1e300, a wrong type in
any field) costs only its bad lines: each is copied to a side file with one warning, the
history file is never rewritten, and the rest — listing, export, the window's transcript, new
questions — keeps working."""

from __future__ import annotations

import json
import logging

import pytest
from cache_helpers import GREEDY, small_settings

from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.store.chat_history import (
    MAX_FILM_SECONDS,
    MAX_TIMESTAMP,
    ChatHistory,
    ChatRecord,
    export_markdown,
)
from moviechat_desktop.ui.chat_render import render_transcript
from moviechat_desktop.ui.chat_transcript import ChatTranscript, entries_from_records

GOOD = {
    "v": 1,
    "conversation": "c1",
    "role": "user",
    "text": "Who is there?",
    "mode": "breakpoint",
    "at_s": 12.5,
    "timestamp": 1_700_000_000.0,
    "film": "Film.mkv",
}


def _bad(**change):
    data = {**GOOD, **change}
    return json.dumps({k: v for k, v in data.items() if v is not _DROP}).encode()


_DROP = object()

POISON = {
    "deep": b'{"v": 1, "text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "deep_settings": _bad(settings={"a": json.loads("[" * 500 + "]" * 500)}),
    "timestamp_1e300": _bad(timestamp=1e300),
    "timestamp_huge_int": _bad(timestamp=10**400),
    "timestamp_negative": _bad(timestamp=-5),
    "timestamp_text": _bad(timestamp="yesterday"),
    "timestamp_bool": _bad(timestamp=True),
    "timestamp_missing": _bad(timestamp=_DROP),
    "at_s_1e300": _bad(at_s=1e300),
    "at_s_text": _bad(at_s="12"),
    "conversation_number": _bad(conversation=7),
    "conversation_empty": _bad(conversation=""),
    "role_list": _bad(role=["user"]),
    "role_other": _bad(role="system"),
    "mode_other": _bad(mode="sideways"),
    "text_number": _bad(text=42),
    "text_huge": _bad(text="x" * 1_000_001),
    "film_object": _bad(film={"name": "x"}),
    "settings_list": _bad(settings=[1, 2]),
    "settings_nan": b'{"v": 1, "conversation": "c1", "role": "assistant", "text": "a", '
    b'"mode": "global", "at_s": null, "timestamp": 1.0, "settings": {"top_p": NaN}}',
    "not_an_object": b"[1, 2, 3]",
    "nan_timestamp": _bad(timestamp=_DROP)[:-1] + b', "timestamp": NaN}',
    "binary": b"\x00\xff\xfe garbage",
}


def _good(i: int, conversation: str = "c1") -> ChatRecord:
    return ChatRecord(
        conversation,
        "user" if i % 2 == 0 else "assistant",
        f"message {i}",
        "global",
        None,
        1_700_000_000.0 + i,
        "Film.mkv",
    )


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def _poisoned(path, lines):
    history = ChatHistory(path)
    history.append(_good(0))
    with open(path, "ab") as fh:
        for line in lines:
            fh.write(line + b"\n")
    history.append(_good(1))
    return history


@pytest.mark.parametrize("name", sorted(POISON))
def test_each_bad_line_is_set_aside_once_and_the_rest_is_kept(tmp_path, caplog, name):
    history = _poisoned(tmp_path / "film.jsonl", [POISON[name]])
    before = history.path.read_bytes()
    with caplog.at_level(logging.WARNING):
        assert history.records() == [_good(0), _good(1)]
    [warning] = _warnings(caplog)
    assert "line 2 skipped" in warning and "film.jsonl.rejected" in warning
    assert len(warning) < 400  # one line, not the poisoned record
    assert history.rejected_path.read_bytes() == POISON[name] + b"\n"
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # later reads skip it quietly, copy it no more
        assert history.latest_conversation() == ("c1", [_good(0), _good(1)])
    assert _warnings(caplog) == []
    assert history.rejected_path.read_bytes() == POISON[name] + b"\n"
    assert history.path.read_bytes() == before  # the history itself is never rewritten


def test_export_and_the_windows_transcript_survive_every_poison_at_once(tmp_path):
    history = _poisoned(tmp_path / "film.jsonl", list(POISON.values()))
    records = history.records()
    assert records == [_good(0), _good(1)]
    assert len(history.rejected_path.read_bytes().splitlines()) == len(POISON)
    assert "message 1" in export_markdown(records, "Film.mkv")
    transcript = ChatTranscript()
    transcript.restore(entries_from_records(records))
    assert "message 0" in render_transcript(transcript.entries)
    assert "message 1" in transcript.to_markdown("Film.mkv")


def test_the_largest_accepted_values_still_render_and_export():
    edge = ChatRecord("c" * 200, "user", "q", "breakpoint", MAX_FILM_SECONDS, MAX_TIMESTAMP)
    again = ChatRecord.from_json(json.loads(json.dumps(edge.to_json())))
    assert again == edge
    assert "breakpoint at" in export_markdown([edge], "Film.mkv")
    transcript = ChatTranscript()
    transcript.restore(entries_from_records([edge]))
    assert "q" in render_transcript(transcript.entries)
    assert transcript.to_markdown("Film.mkv")


def test_a_poisoned_film_still_answers_lists_and_exports(reference_dir, make_video):
    clip = make_video("poisoned.mp4", seconds=3)
    assistant = Assistant(settings=small_settings(), model_dir=reference_dir)
    assistant.open(clip)
    history = ChatHistory.for_film(assistant.film_id)
    assistant.close()
    _poisoned(history.path, list(POISON.values()))
    assistant.open(clip)  # the history is read when the film opens
    assistant.encode()
    assert "".join(assistant.ask("Who is there?", settings=GREEDY))
    assistant.new_conversation()
    assert "".join(assistant.ask("And now?", settings=GREEDY))
    old, new = assistant.conversations()  # the first question continued the saved one
    assert (old.id, old.messages, new.messages) == ("c1", 4, 2)
    assert "And now?" in assistant.export_markdown()
    assistant.close()
