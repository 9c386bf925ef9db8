"""A damaged or incompatible cache is detected, moved aside with a warning and rebuilt: it never
crashes the app and is never used silently."""

import json
import logging
import os

import pytest
import torch
from cache_helpers import (
    EncoderCounter,
    assert_same_memory,
    cache_dirs,
    corrupt_items,
    memory_state,
    reference_memory,
    small_settings,
)

from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.store.cache_entry import FRAGMENT_FILE, HEADER_NAME


@pytest.fixture(scope="module")
def clip(make_video):
    return make_video("corrupt.mp4", seconds=3)


@pytest.fixture(scope="module")
def expected(reference_dir, clip):
    return reference_memory(reference_dir, clip, small_settings())


@pytest.fixture
def entry(reference_dir, clip):
    """The cache entry directory of ``clip``, fully encoded by another (closed) session."""
    assistant = Assistant(settings=small_settings(), model_dir=reference_dir)
    assistant.open(clip)
    assistant.encode()
    assistant.close()
    (directory,) = cache_dirs()
    return directory


def _reopen(reference_dir, clip):
    assistant = Assistant(settings=small_settings(), model_dir=reference_dir)
    assistant.open(clip)
    return assistant


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "deleted"])
def test_a_damaged_fragment_is_moved_aside_and_encoded_again(
    reference_dir, clip, entry, expected, damage, caplog, monkeypatch
):
    victim = entry / FRAGMENT_FILE.format(2)
    data = victim.read_bytes()
    if damage == "truncated":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":  # same size, so only the digest can tell
        victim.write_bytes(bytes(reversed(data)))
    else:
        victim.unlink()
    counter = EncoderCounter(monkeypatch)
    with caplog.at_level(logging.WARNING):
        assistant = _reopen(reference_dir, clip)
    assert assistant.cache_restored == 7
    assert assistant.status().fragments_done == 7 and not assistant.covers(2.9)
    warnings = _warnings(caplog)
    assert any(FRAGMENT_FILE.format(2) in w for w in warnings), warnings
    if damage != "deleted":
        aside = [p for p in entry.iterdir() if p.name.startswith(f"{victim.name}.corrupt-")]
        assert len(aside) == 1 and aside[0].read_bytes() != data
    assistant.encode()
    assert counter.calls == [8], "only the damaged fragment is encoded again"
    assert_same_memory(expected, memory_state(assistant))
    assistant.close()
    assert _reopen(reference_dir, clip).cache_restored == 8, "the repaired entry hits"


@pytest.mark.parametrize(
    "header",
    [
        b"",
        b"\x00\xffnot json at all",
        b'{"format": 1, "fragments": {',  # cut short
        b"[1, 2, 3]",
        "format-99",
        "other-plan",
        "bad-index",
    ],
)
def test_a_damaged_or_incompatible_header_resets_the_entry(
    reference_dir, clip, entry, expected, header, caplog, monkeypatch
):
    path = entry / HEADER_NAME
    if isinstance(header, bytes):
        path.write_bytes(header)
    else:
        data = json.loads(path.read_text())
        if header == "format-99":
            data["format"] = 99
        elif header == "other-plan":
            data["plan"] = "0" * 32
        else:
            data["fragments"]["3"]["file"] = "../../../etc/passwd"
        path.write_text(json.dumps(data))
    counter = EncoderCounter(monkeypatch)
    with caplog.at_level(logging.WARNING):
        assistant = _reopen(reference_dir, clip)
    assert assistant.cache_restored == 0 and assistant.status().fragments_done == 0
    warnings = _warnings(caplog)
    assert any("moved aside" in w and entry.name in w for w in warnings), warnings
    (aside,) = corrupt_items()
    assert aside.name.startswith(f"{entry.name}.corrupt-") and (aside / HEADER_NAME).exists()
    assert sorted(p.name for p in entry.iterdir()) == [HEADER_NAME, "lock"], "a fresh entry"
    assistant.encode()
    assert counter.frames == 64
    assert_same_memory(expected, memory_state(assistant))
    assistant.close()
    assert _reopen(reference_dir, clip).cache_restored == 8


def test_a_consistent_looking_but_wrong_fragment_is_not_used(reference_dir, clip, entry, caplog):
    """A file whose digest matches its header but whose tensors do not fit the memory."""
    import hashlib

    from safetensors.torch import save

    index = 4
    name = FRAGMENT_FILE.format(index)
    meta = {"index": index, "timestamps": [0.0] * 8, "start_s": 0.0, "end_s": 1.0, "covers": [[0]]}
    data = save(
        {
            f"fragment.{index}.raw": torch.zeros(8, 8, 64),
            f"fragment.{index}.long": torch.zeros(5, 8, 64),
        },
        metadata={"fragment": json.dumps(meta)},
    )
    (entry / name).write_bytes(data)
    header = json.loads((entry / HEADER_NAME).read_text())
    header["fragments"][str(index)] = {
        "file": name,
        "bytes": len(data),
        "blake2b": hashlib.blake2b(data, digest_size=16).hexdigest(),
    }
    (entry / HEADER_NAME).write_text(json.dumps(header))
    with caplog.at_level(logging.WARNING):
        assistant = _reopen(reference_dir, clip)
    assert assistant.cache_restored == 0 and assistant.status().fragments_done == 0
    assert any("inconsistent" in w for w in _warnings(caplog)), _warnings(caplog)
    assert len(corrupt_items()) == 1


def test_leftovers_of_a_cut_write_are_removed(reference_dir, clip, entry):
    """Files the header does not list (a write cut short) are deleted, never loaded."""
    stray = entry / FRAGMENT_FILE.format(99)
    stray.write_bytes(b"half a fragment")
    tmp = entry / f"{HEADER_NAME}.{os.getpid()}.tmp"
    tmp.write_bytes(b'{"format": 1, "frag')
    assistant = _reopen(reference_dir, clip)
    assert assistant.cache_restored == 8
    assert not stray.exists() and not tmp.exists()


def test_an_unwritable_cache_never_stops_encoding(
    reference_dir, clip, tmp_path, monkeypatch, caplog
):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache dir should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with caplog.at_level(logging.WARNING):
        assistant = _reopen(reference_dir, clip)
        assert assistant.encode().finished
    assert any("memory cache is unavailable" in w for w in _warnings(caplog))
