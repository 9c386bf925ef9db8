"""Chat history per film: appended as each message completes, restored on reopen so follow-ups
continue, crash-safe (a real process killed mid-append), listed, exported to Markdown."""

import logging
import os
import random
import signal
import time

import pytest
from cache_helpers import GREEDY, run_and_kill, small_settings

from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.errors import Cancelled
from moviechat_desktop.engine.model.llm import GenerationSettings
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.store.chat_history import (
    ChatHistory,
    ChatRecord,
    export_markdown,
    to_conversation,
)


def _record(i, conversation="c1", **kw):
    fields = {
        "conversation": conversation,
        "role": "user" if i % 2 == 0 else "assistant",
        "text": f"message {i} é ✓",
        "mode": "breakpoint" if i % 4 < 2 else "global",
        "at_s": 60.0 * i if i % 4 < 2 else None,
        "timestamp": 1_700_000_000.0 + i,
        "film": "Film.mkv",
    }
    return ChatRecord(**{**fields, **kw})


@pytest.fixture
def history(tmp_path):
    return ChatHistory(tmp_path / "chats" / "film.jsonl")


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# --------------------------------------------------------------------------- the file
def test_messages_round_trip_and_conversations_are_listed(history):
    assert history.records() == [] and history.latest_conversation() == (None, [])
    records = [_record(i) for i in range(4)] + [_record(i, "c2") for i in range(4, 6)]
    records[1] = _record(1, settings={"greedy": True, "max_new_tokens": 8})
    for record in records:
        history.append(record)
    assert history.records() == records
    assert history.latest_conversation() == ("c2", records[4:])
    c1, c2 = history.conversations()
    assert (c1.id, c1.messages, c1.title) == ("c1", 4, "message 0 é ✓")
    assert (c2.id, c2.messages, c2.started) == ("c2", 2, records[4].timestamp)
    assert history.conversation("c1") == records[:4]
    conversation = to_conversation(history.conversation("c1"))
    assert [(t.question, t.answer) for t in conversation.turns] == [
        ("message 0 é ✓", "message 1 é ✓"),
        ("message 2 é ✓", "message 3 é ✓"),
    ]


def test_an_unfinished_last_line_is_dropped_then_cut_off(history, caplog):
    for i in range(3):
        history.append(_record(i))
    whole = history.path.read_bytes()
    line = b'{"v": 1, "conversation": "c1", "role": "user", "text": "half a mess'
    history.path.write_bytes(whole + line)
    with caplog.at_level(logging.WARNING):
        assert history.records() == [_record(i) for i in range(3)]
    assert any("unfinished last message" in w for w in _warnings(caplog))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        history.append(_record(3))
    assert any("unfinished last line" in w for w in _warnings(caplog))
    assert history.path.read_bytes().startswith(whole) and line not in history.path.read_bytes()
    assert history.records() == [_record(i) for i in range(4)]


def test_a_damaged_line_is_skipped_and_the_rest_kept(history, caplog):
    for i in range(2):
        history.append(_record(i))
    with open(history.path, "ab") as fh:
        fh.write(b"\x00\xff garbage\n")
        fh.write(b'{"v": 1, "role": "user"}\n')  # valid JSON, not a message
        fh.write(b'{"v": 99, "conversation": "c1"}\n')  # another version
    history.append(_record(2))
    with caplog.at_level(logging.WARNING):
        assert history.records() == [_record(i) for i in range(3)]
    assert sum("skipped" in w for w in _warnings(caplog)) == 3


def test_export_markdown_shows_each_message_with_its_mode_and_time():
    records = [
        _record(0, text="What is he holding?", at_s=4350.0),
        _record(1, text="A sword.\n# not a heading", at_s=4350.0),
        _record(2, text="How does it end?", mode="global", at_s=None),
    ]
    text = export_markdown(records, "Film à voir.mkv")
    assert text.startswith("# Conversation about Film à voir.mkv\n")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert len(headings) == 3
    assert headings[0].startswith("## Question · breakpoint at 01:12:30 · ")
    assert headings[1].startswith("## Answer · breakpoint at 01:12:30 · ")
    assert headings[2].startswith("## Question · whole film (global) · ")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(records[1].timestamp))
    assert headings[1].endswith(when)
    assert "What is he holding?" in text and "A sword." in text
    assert "\\# not a heading" in text, "a '#' line of a message is not a heading"
    assert text.rstrip().endswith("_(no answer)_"), "the last question has no answer"


# --------------------------------------------------------------------------- the assistant
@pytest.fixture(scope="module")
def clip(make_video):
    return make_video("chat.mp4", seconds=3)


def _opened(reference_dir, clip, **kw):
    assistant = Assistant(settings=small_settings(), model_dir=reference_dir, **kw)
    assistant.open(clip)
    assistant.encode()
    return assistant


def test_reopen_restores_the_conversation_and_follow_ups_continue_it(reference_dir, clip, tmp_path):
    unbroken = _opened(reference_dir, clip, keep_history=False)
    first = "".join(unbroken.ask("Who is there?", settings=GREEDY))
    follow_up = "".join(unbroken.ask("What is he holding?", "breakpoint", 1.5, settings=GREEDY))
    unbroken.close()

    session = _opened(reference_dir, clip)
    assert "".join(session.ask("Who is there?", settings=GREEDY)) == first
    conversation_id = session.conversation_id
    session.close()

    renamed = tmp_path / "the same film.mp4"
    renamed.write_bytes(clip.read_bytes())
    reopened = _opened(reference_dir, renamed)
    assert reopened.conversation_id == conversation_id
    assert [(t.question, t.answer) for t in reopened.conversation.turns] == [
        ("Who is there?", first)
    ]
    again = "".join(reopened.ask("What is he holding?", "breakpoint", 1.5, settings=GREEDY))
    assert again == follow_up, "the restored conversation gives the unbroken session's answer"
    records = reopened.conversation_records()
    assert [(r.role, r.mode, r.at_s) for r in records] == [
        ("user", "global", None),
        ("assistant", "global", None),
        ("user", "breakpoint", 1.5),
        ("assistant", "breakpoint", 1.5),
    ]
    assert records[3].text == follow_up and records[3].settings["greedy"] is True
    assert {r.film for r in records} == {clip.name, renamed.name}

    reopened.new_conversation()
    assert reopened.conversation.turns == [] and reopened.conversation_id != conversation_id
    "".join(reopened.ask("And the end?", settings=GREEDY))
    listed = reopened.conversations()
    assert [(c.id, c.messages) for c in listed] == [
        (conversation_id, 4),
        (reopened.conversation_id, 2),
    ]
    markdown = reopened.export_markdown(conversation_id)
    assert markdown.count("\n## ") == 4 and "breakpoint at 00:01" in markdown
    reopened.open_conversation(conversation_id)
    assert len(reopened.conversation.turns) == 2
    reopened.close()
    latest = _opened(reference_dir, clip)
    assert [t.question for t in latest.conversation.turns] == ["And the end?"]


def test_a_stopped_answer_keeps_its_question_but_not_in_the_prompt(reference_dir, clip):
    assistant = _opened(reference_dir, clip)
    token = CancelToken()
    stream = assistant.ask(
        "Describe it.", settings=GenerationSettings(max_new_tokens=50), cancel=token
    )
    token.cancel()  # stopped before its first word: the question was asked all the same
    with pytest.raises(Cancelled):
        list(stream)
    "".join(assistant.ask("Who is there?", settings=GREEDY))
    assistant.close()
    reopened = _opened(reference_dir, clip)
    assert [t.question for t in reopened.conversation.turns] == ["Who is there?"]
    records = reopened.conversation_records()
    assert [(r.role, r.stopped) for r in records] == [
        ("user", False), ("assistant", True), ("user", False), ("assistant", False),
    ]  # fmt: skip
    assert records[1].text == "", "stopped before its first word: saved empty, marked stopped"
    assert "_(stopped)_" in reopened.export_markdown()


def test_keep_history_false_records_nothing(reference_dir, clip):
    assistant = _opened(reference_dir, clip, keep_history=False)
    "".join(assistant.ask("Who is there?", settings=GREEDY))
    assert assistant.conversations() == []
    assert not ChatHistory.for_film(assistant.film_id).path.exists()


# --------------------------------------------------------------------------- kill -9
# Appends numbered messages, printing "APPENDED <i>" after each; with PAUSE_AT it writes only
# half of that append, prints "MIDWRITE" and waits there to be killed.
SCRIPT = r"""
import itertools, os, time
from pathlib import Path
from moviechat_desktop.engine.store import atomic_io
from moviechat_desktop.engine.store.chat_history import ChatHistory, ChatRecord

pause_at, writes = int(os.environ.get("PAUSE_AT", "0")), itertools.count(1)
real_write = atomic_io.write_fully

def write_fully(fd, data):
    if next(writes) == pause_at:
        real_write(fd, data[: len(data) // 2])
        print("MIDWRITE", flush=True)
        time.sleep(600)
    real_write(fd, data)

atomic_io.write_fully = write_fully
history = ChatHistory(Path(os.environ["HISTORY"]))
start = int(os.environ["START"])
for i in range(start, start + 2000):
    text = f"message {i} " + "é" * (i % 37) + "x" * 400
    role = "user" if i % 2 == 0 else "assistant"
    history.append(ChatRecord("c1", role, text, "breakpoint", float(i), 1e9 + i, "film.mp4"))
    print("APPENDED", i, flush=True)
"""


def _text(i):
    return f"message {i} " + "é" * (i % 37) + "x" * 400


def _run_and_kill(script, env, should_kill, delay_s=0.0):
    """Run the append loop, SIGKILL it once ``should_kill(word, last appended)``; the last
    message it reported appended."""
    last = None

    def on_line(word, rest):
        nonlocal last
        if word == "APPENDED":
            last = int(rest)
        return should_kill(word, last)

    errors = script.with_suffix(".stderr")
    killed, returncode = run_and_kill(script, env, on_line, delay_s=delay_s, stderr=errors)
    assert killed and returncode == -signal.SIGKILL, (last, errors.read_text()[-2000:])
    return last


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_sigkill_during_appends_loses_at_most_the_message_in_flight(tmp_path, caplog):
    script = tmp_path / "append_loop.py"
    script.write_text(SCRIPT)
    path = tmp_path / "chats" / "film.jsonl"
    history = ChatHistory(path)
    env = {**os.environ, "HISTORY": str(path)}

    def check(low, high):
        texts = [r.text for r in history.records()]
        assert low <= len(texts) <= high, (low, len(texts), high)
        assert texts == [_text(i) for i in range(len(texts))], "an earlier message changed"
        return len(texts)

    # killed half-way through writing message 5 (index 4)
    last = _run_and_kill(
        script, {**env, "START": "0", "PAUSE_AT": "5"}, lambda w, n: w == "MIDWRITE"
    )
    assert last == 3 and not path.read_bytes().endswith(b"\n"), "a half line was left"
    with caplog.at_level(logging.WARNING):
        done = check(4, 4)
    assert any("unfinished last message" in w for w in _warnings(caplog))

    rng = random.Random(6)
    for _ in range(3):  # killed at seeded random moments
        target = done + rng.randint(2, 40)
        delay = rng.uniform(0.0, 0.01)
        env_run = {**env, "START": str(done)}
        last = _run_and_kill(
            script, env_run, lambda w, n, t=target: n is not None and n >= t, delay
        )
        done = check(last + 1, last + 2)
    history.append(ChatRecord("c1", "user", "after the crashes", "global", None, 2e9))
    texts = [r.text for r in history.records()]
    assert texts == [_text(i) for i in range(done)] + ["after the crashes"]


def test_a_failed_save_is_reported_and_cleared_by_the_next_one(reference_dir, clip, monkeypatch):
    import errno

    from moviechat_desktop.engine.store.chat_history import ChatHistory

    assistant = _opened(reference_dir, clip)
    real_append = ChatHistory.append

    def disk_full(self, record):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ChatHistory, "append", disk_full)
    answer = "".join(assistant.ask("Who is there?", settings=GREEDY))
    assert assistant.history_error == "No space left on device"
    assert assistant.conversation.turns[-1].answer == answer  # the answer itself is not lost
    monkeypatch.setattr(ChatHistory, "append", real_append)
    "".join(assistant.ask("And now?", settings=GREEDY))
    assert assistant.history_error is None
    assert [r.text for r in assistant.conversation_records() if r.role == "user"] == ["And now?"]
