"""Cache format 2: float16 tokens (drift against float32 measured, the reference set's greedy
answer unchanged), format 1 (float32) still read, and batched flushing: the durable header never
names a fragment that was not flushed first, a crash keeps what the pending header lists, a
power loss loses only fragments written since the last flush."""

from __future__ import annotations

import json

import pytest
import torch
from cache_helpers import cache_dirs, memory_state, small_settings
from safetensors.torch import load, load_file, save

from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.memory.film_memory import consolidate
from moviechat_desktop.engine.model.llm import Conversation, GenerationSettings
from moviechat_desktop.engine.model.movie_chat import MovieChatModel
from moviechat_desktop.engine.model.paths import ModelPaths
from moviechat_desktop.engine.model.streaming import AnswerStream
from moviechat_desktop.engine.store import cache_entry
from moviechat_desktop.engine.store.cache_entry import (
    FRAGMENT_FILE,
    HEADER_NAME,
    PENDING_NAME,
    _digest,
)

N_FRAGMENTS = 6


@pytest.fixture(scope="module")
def clip(make_video):
    return make_video("half.mp4", seconds=3)


def _header(entry) -> dict:
    return json.loads((entry / HEADER_NAME).read_text("utf-8"))


def test_reference_greedy_answer_is_unchanged_with_float16_memory(reference_dir):
    """The parity pipeline (pixels → memory → the original's table → greedy tokens) with the
    memory rounded to float16 as the cache stores it: same tokens; drift printed (-s)."""
    ref = load_file(str(reference_dir / "reference_outputs.safetensors"))
    llm_index = json.loads((reference_dir / "reference_index.json").read_text())["llm"]
    model = MovieChatModel.load(ModelPaths.from_reference_dir(reference_dir), device="cpu")
    expected = llm_index["greedy"]["global_new_tokens"]
    greedy = GenerationSettings(greedy=True, max_new_tokens=len(expected))
    tokens = model.encode_frames(ref["input_video"][0].permute(1, 0, 2, 3))
    per = model.config.memory.frames_per_fragment
    merge = model.config.memory.short_memory_merge
    memory = torch.cat(
        [consolidate(tokens[i : i + per], merge).frames for i in range(0, len(tokens), per)]
    )
    answers, visuals = {}, {}
    for name, held in (("float32", memory), ("float16", memory.half().float())):
        visuals[name] = model.visual_tokens(held, ref["frame_position_embeddings"])
        embeds = model.prompt_embeds(visuals[name], Conversation(), llm_index["question"], greedy)
        stream = AnswerStream(model.llm, embeds, greedy)
        list(stream)
        answers[name] = stream.token_ids
    memory_drift = (memory.half().float() - memory).abs().max().item()
    visual_drift = (visuals["float16"] - visuals["float32"]).abs().max().item()
    print(f"float16 memory: max |drift| {memory_drift:.2e} (of max |x| {memory.abs().max():.2f})")
    print(f"visual tokens into the decoder: max |drift| {visual_drift:.2e}")
    assert memory_drift <= memory.abs().max().item() * 2**-11  # float16's rounding, no more
    assert answers["float32"] == expected
    assert answers["float16"] == expected


def test_fragments_are_float16_and_the_memory_holds_what_was_stored(reference_dir, clip):
    assistant = Assistant(settings=small_settings(N_FRAGMENTS), model_dir=reference_dir)
    assistant.open(clip)
    assistant.encode()
    state = memory_state(assistant)
    (entry,) = cache_dirs()
    assert _header(entry)["format"] == 2
    for index in range(N_FRAGMENTS):
        stored = load((entry / FRAGMENT_FILE.format(index)).read_bytes())
        for part in ("raw", "long"):
            name = f"fragment.{index}.{part}"
            assert stored[name].dtype == torch.float16
            assert torch.equal(stored[name].float(), state["tensors"][name])
    frames = sum(len(e["timestamps"]) for e in state["metadata"]["fragments"])
    tensor_bytes = sum(t.numel() * 2 for t in state["tensors"].values())
    per_frame = tensor_bytes / frames  # raw tokens + consolidated share, as stored
    q_d = state["tensors"]["fragment.0.raw"][0].numel()
    assert per_frame <= 2 * q_d * 1.25 + 1  # half of float32's 4 bytes × (1 + 2/8)
    assistant.close()


def test_a_format_1_entry_is_read(reference_dir, clip):
    first = Assistant(settings=small_settings(N_FRAGMENTS), model_dir=reference_dir)
    first.open(clip)
    first.encode()
    first.close()
    (entry,) = cache_dirs()
    header = _header(entry)
    for record in header["fragments"].values():  # rewrite it as format 1 wrote it
        path = entry / record["file"]
        data = path.read_bytes()
        head_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + head_len])["__metadata__"]
        tensors = {k: v.float() for k, v in load(data).items()}
        data = save(tensors, metadata=metadata)
        path.write_bytes(data)
        record.update(bytes=len(data), blake2b=_digest(data))
    header["format"] = 1
    (entry / HEADER_NAME).write_text(json.dumps(header), "utf-8")

    second = Assistant(settings=small_settings(N_FRAGMENTS), model_dir=reference_dir)
    second.open(clip)
    assert second.cache_restored == N_FRAGMENTS
    assert second.encode().finished
    second.close()
    assert cache_dirs() == [entry], "nothing moved aside"


class DiskLog:
    """Records the flushes and header replacements of the cache, in order."""

    def __init__(self, monkeypatch) -> None:
        self.events: list[tuple[str, object]] = []
        real_write, real_file = cache_entry.atomic_write, cache_entry.fsync_file

        def atomic_write(path, data, sync=True):
            real_write(path, data, sync=sync)
            if path.name == HEADER_NAME:
                names = sorted(json.loads(data)["fragments"], key=int)
                self.events.append(("header", names))
                assert sync, "the durable header is always flushed"

        def fsync_file(path):
            real_file(path)
            self.events.append(("fsync", path.name))

        monkeypatch.setattr(cache_entry, "atomic_write", atomic_write)
        monkeypatch.setattr(cache_entry, "fsync_file", fsync_file)

    def check_order(self) -> None:
        """Every fragment a header names was flushed before that header was written."""
        flushed: set[str] = set()
        for kind, what in self.events:
            if kind == "fsync":
                flushed.add(what)
            else:
                missing = [n for n in what if FRAGMENT_FILE.format(int(n)) not in flushed]
                assert not missing, f"header names fragments not on disk: {missing}"

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.events if k == kind)


def test_flushes_are_batched_and_the_header_follows_them(reference_dir, clip, monkeypatch):
    log = DiskLog(monkeypatch)
    monkeypatch.setattr(cache_entry, "SYNC_INTERVAL_S", 3600.0)
    assistant = Assistant(settings=small_settings(N_FRAGMENTS), model_dir=reference_dir)
    assistant.open(clip)
    assistant.encode()
    log.check_order()
    # one durable header on open, one when the film is complete; one fsync per fragment
    assert log.count("header") == 2 and log.count("fsync") == N_FRAGMENTS
    (entry,) = cache_dirs()
    assert not (entry / PENDING_NAME).exists()
    assistant.close()

    monkeypatch.setattr(cache_entry, "SYNC_INTERVAL_S", 0.0)  # every fragment flushed
    log.events.clear()
    other = Assistant(settings=small_settings(N_FRAGMENTS + 1), model_dir=reference_dir)
    other.open(clip)
    other.encode()
    log.check_order()
    assert log.count("header") == 1 + (N_FRAGMENTS + 1)
    other.close()


def test_crash_keeps_pending_fragments_and_power_loss_loses_only_them(
    reference_dir, clip, monkeypatch
):
    monkeypatch.setattr(cache_entry, "SYNC_INTERVAL_S", 3600.0)
    settings = small_settings(N_FRAGMENTS)
    first = Assistant(settings=settings, model_dir=reference_dir)
    first.open(clip)
    for _ in range(3):
        first.encode_step()
    (entry,) = cache_dirs()
    assert _header(entry)["fragments"] == {}, "nothing flushed yet"
    pending = json.loads((entry / PENDING_NAME).read_text("utf-8"))
    assert sorted(pending["fragments"], key=int) == ["0", "1", "2"]
    # a crash (the process dies without closing; its files are in the page cache): the lock
    # goes with the process, nothing is flushed
    saved = {p.name: p.read_bytes() for p in entry.iterdir() if p.is_file()}
    first._store.entry._lock.release()
    first._store.entry._unsynced.clear()  # (so that nothing flushes it when collected)

    second = Assistant(settings=settings, model_dir=reference_dir)
    second.open(clip)
    assert second.cache_restored == 3, "the pending header's fragments are restored"
    assert sorted(_header(entry)["fragments"], key=int) == ["0", "1", "2"], "now durable"
    assert not (entry / PENDING_NAME).exists()
    second.close()

    # a power loss at the same moment instead: the unflushed files and pending header are gone
    for item in entry.iterdir():
        if item.is_file() and item.name != "lock":
            item.unlink()
    for name, data in saved.items():
        if name == HEADER_NAME or name == "lock":
            (entry / name).write_bytes(data)
    third = Assistant(settings=settings, model_dir=reference_dir)
    third.open(clip)
    assert third.cache_restored == 0
    assert cache_dirs() == [entry], "a clean start: nothing damaged to move aside"
    third.close()
