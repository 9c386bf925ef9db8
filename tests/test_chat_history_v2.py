"""Chat history version 2 (engine/store/chat_history.py): message ids, stopped answers, the
coverage note and branches (edited questions, regenerated answers), read beside version 1."""

import json
import logging

import pytest

from moviechat_desktop.engine.store.chat_history import (
    ChatHistory,
    ChatRecord,
    current_branch,
    export_markdown,
    find_on_branch,
    summarize,
    to_conversation,
)
from moviechat_desktop.ui.chat_transcript import DONE, STOPPED, entries_from_records

COVERAGE = "Answered from 47% of the film (up to 00:14:02)."


def _v1(role, text, t, conversation="c1"):
    return {
        "v": 1, "conversation": conversation, "role": role, "text": text, "mode": "global",
        "at_s": None, "timestamp": 1_700_000_000.0 + t, "film": "Film.mkv",
    }  # fmt: skip


def _v2(role, text, t, mid, conversation="c1", **extra):
    return {**_v1(role, text, t, conversation), "v": 2, "id": mid, **extra}


def _write(path, objects):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(json.dumps(o).encode() + b"\n" for o in objects))


@pytest.fixture
def history(tmp_path):
    return ChatHistory(tmp_path / "chats" / "film.jsonl")


def test_a_version_1_file_still_opens(history):
    _write(
        history.path,
        [_v1("user", "Who?", 1), _v1("assistant", "A rabbit.", 2), _v1("user", "Then?", 3)],
    )
    records = history.records()
    assert [(r.role, r.text, r.id) for r in records] == [
        ("user", "Who?", "L1"),
        ("assistant", "A rabbit.", "L2"),
        ("user", "Then?", "L3"),
    ]
    assert all(r.replaces is None and not r.stopped and r.coverage == "" for r in records)
    assert [(t.question, t.answer) for t in to_conversation(records).turns] == [
        ("Who?", "A rabbit.")
    ]
    assert not history.rejected_path.exists()


def test_version_2_round_trip(history):
    written = [
        ChatRecord("c1", "user", "Who?", "breakpoint", 72.5, 1.0, "F.mkv", id="m1"),
        ChatRecord(
            "c1", "assistant", "A rab", "breakpoint", 72.5, 2.0, "F.mkv",
            settings={"greedy": True}, id="m2", stopped=True,
        ),
        ChatRecord(
            "c1", "assistant", "A rabbit.", "global", None, 3.0, "F.mkv",
            id="m3", replaces="m2", coverage=COVERAGE,
        ),
    ]  # fmt: skip
    for record in written:
        history.append(record)
    lines = [json.loads(line) for line in history.path.read_bytes().splitlines()]
    assert [line["v"] for line in lines] == [2, 2, 2]
    assert "stopped" not in lines[0] and "replaces" not in lines[0] and "coverage" not in lines[0]
    assert lines[1]["stopped"] is True and lines[2]["replaces"] == "m2"
    read = history.records()
    assert read == written
    assert [(r.id, r.replaces, r.stopped, r.coverage) for r in read] == [
        ("m1", None, False, ""),
        ("m2", None, True, ""),
        ("m3", "m2", False, COVERAGE),
    ]
    assert not history.rejected_path.exists()


def test_a_mixed_file_follows_the_branch_across_versions(history):
    _write(
        history.path,
        [
            _v1("user", "Who?", 1),  # L1
            _v1("assistant", "A rabbit.", 2),  # L2
            _v1("user", "Where?", 3),  # L3
            _v1("assistant", "A meadow.", 4),  # L4
            _v2("assistant", "A wide meadow.", 5, "m5", replaces="L4"),  # regenerated
            _v2("user", "Who is he?", 6, "m6", replaces="L1"),  # the first question edited
            _v2("assistant", "Big Buck Bunny.", 7, "m7", coverage=COVERAGE),
        ],
    )
    records = history.records()
    assert len(records) == 7, "the history keeps every message"
    branch = current_branch(records)
    assert [r.text for r in branch] == ["Who is he?", "Big Buck Bunny."]
    assert [(t.question, t.answer) for t in to_conversation(records).turns] == [
        ("Who is he?", "Big Buck Bunny.")
    ]
    # before the edit, the regenerated answer was on the branch
    assert [r.text for r in current_branch(records[:5])] == [
        "Who?", "A rabbit.", "Where?", "A wide meadow.",
    ]  # fmt: skip
    (summary,) = summarize(records)
    assert (summary.title, summary.messages) == ("Who is he?", 2)
    (entry,) = entries_from_records(records)
    assert (entry.question, entry.answer, entry.state) == ("Who is he?", "Big Buck Bunny.", DONE)
    assert (entry.question_id, entry.revised, entry.coverage) == ("m6", "edited", COVERAGE)
    assert entry.partial, "a partial answer offers 'Ask again with the whole film' once watched"


def test_an_edit_sent_again_after_a_crash_replaces_the_first_copy():
    def rec(role, text, mid, replaces=None):
        return ChatRecord("c", role, text, "global", None, 1.0, id=mid, replaces=replaces)

    records = [
        rec("user", "q1", "a"),
        rec("assistant", "a1", "b"),
        rec("user", "q1 edited", "c", replaces="a"),  # the engine died before answering
        rec("user", "q1 edited", "d", replaces="a"),  # sent again: "a" is off the branch
        rec("assistant", "a1'", "e"),
    ]
    assert [r.id for r in current_branch(records)] == ["d", "e"]
    assert find_on_branch(current_branch(records), "a", records) == 0, "a → c → d"
    assert find_on_branch(current_branch(records), "zzz", records) == -1
    # a loop of replacements (a hand-edited file) ends instead of hanging
    looped = [rec("user", "x", "p", replaces="q"), rec("user", "y", "q", replaces="p")]
    assert [r.id for r in current_branch(looped)] == ["q"]


@pytest.mark.parametrize(
    "bad, why",
    [
        ({"id": None}, "id is not text"),
        ({"id": ""}, "id is empty"),
        ({"id": 7}, "id is not text"),
        ({"id": "x" * 201}, "id is too long"),
        ({"replaces": 3}, "replaces is not text"),
        ({"replaces": ""}, "replaces is empty"),
        ({"stopped": "yes"}, "stopped is not true or false"),
        ({"stopped": 1}, "stopped is not true or false"),
        ({"role": "user", "stopped": True}, "stopped is only for answers"),
        ({"coverage": 47}, "coverage is not text"),
        ({"coverage": "x" * 501}, "coverage is too long"),
        ({"role": "user", "coverage": COVERAGE}, "coverage is only for answers"),
        ({"v": 3}, "not a version-1 or version-2"),
        ({"v": True}, "not a version-1 or version-2"),
    ],
)
def test_bad_version_2_fields_are_set_aside(history, caplog, bad, why):
    line = {**_v2("assistant", "bad", 2, "m2"), **bad}
    if line["id"] is None:
        del line["id"]
    _write(history.path, [_v2("user", "Good?", 1, "m1"), line, _v2("assistant", "Yes.", 3, "m3")])
    with caplog.at_level(logging.WARNING):
        records = history.records()
    assert [r.text for r in records] == ["Good?", "Yes."]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and why in warnings[0] and "line 2" in warnings[0]
    assert history.rejected_path.read_bytes() == json.dumps(line).encode() + b"\n"
    history.records()  # read again: skipped quietly, copied once
    assert history.rejected_path.read_bytes().count(b"\n") == 1


def test_a_record_with_version_2_fields_needs_an_id():
    with pytest.raises(ValueError, match="needs an id"):
        ChatRecord("c", "assistant", "a", "global", None, 1.0, stopped=True).to_json()
    plain = ChatRecord("c", "user", "q", "global", None, 1.0).to_json()
    assert plain["v"] == 1 and "id" not in plain, "a message made without an id stays version 1"


def test_export_follows_the_branch_and_marks_stopped_edited_and_partial_answers():
    def rec(role, text, mid, **kw):
        return ChatRecord("c", role, text, "global", None, 1_700_000_000.0, id=mid, **kw)

    records = [
        rec("user", "Old question?", "a"),
        rec("assistant", "Old answer.", "b"),
        rec("user", "New question?", "c", replaces="a"),
        rec("assistant", "Half an ans", "d", stopped=True, coverage=COVERAGE),
        rec("assistant", "Whole answer.", "e", replaces="d"),
        rec("user", "Then?", "f"),
        rec("assistant", "", "g", stopped=True),
    ]
    markdown = export_markdown(records, "Film.mkv")
    assert "Old question?" not in markdown and "Old answer." not in markdown
    assert "Half an ans" not in markdown, "the regenerated answer replaced the stopped one"
    assert "## Question (edited) · " in markdown and "## Answer (regenerated) · " in markdown
    assert "Whole answer." in markdown and "; 4 messages._" in markdown
    assert markdown.rstrip().endswith("_(stopped)_")
    entries = entries_from_records(records)
    assert [(e.question, e.answer, e.state, e.revised) for e in entries] == [
        ("New question?", "Whole answer.", DONE, "edited · answer regenerated"),
        ("Then?", "", STOPPED, ""),
    ]
    assert entries[1].note == "stopped"
    partial = export_markdown(records[:4], "Film.mkv")
    assert "Half an ans _(stopped)_" in partial and f"_{COVERAGE}_" in partial
