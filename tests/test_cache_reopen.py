"""Reopening a film restores its memory from the cache: no encoding, the same tensors bit for bit,
the same answers; another film, model or setting misses; an interrupted encoding resumes."""

import dataclasses
import shutil

import pytest
from cache_helpers import (
    GREEDY,
    EncoderCounter,
    assert_same_memory,
    cache_dirs,
    memory_state,
    reference_memory,
    small_settings,
)

from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.model.checkpoint_io import read_checkpoint
from moviechat_desktop.engine.store.fingerprint import sampled_offsets


@pytest.fixture(scope="module")
def clip(make_video):
    return make_video("cached.mp4", seconds=3)


def _encoded(reference_dir, path, settings=None, model_dir=None):
    assistant = Assistant(
        settings=settings or small_settings(), model_dir=model_dir or reference_dir
    )
    assistant.open(path)
    assistant.encode()
    return assistant


def test_reopen_needs_no_encoding_and_answers_the_same(reference_dir, bigbuckbunny, monkeypatch):
    settings = small_settings(n_fragments=32)  # (the CLI tests run the default 128)
    first = Assistant(settings=settings, model_dir=reference_dir)
    first.open(bigbuckbunny)
    assert first.cache_restored == 0
    first.encode()
    whole = "".join(first.ask("What happens in the film?", settings=GREEDY))
    first.new_conversation()
    moment = "".join(first.ask("What is he holding?", "breakpoint", at_s=3.0, settings=GREEDY))
    expected = memory_state(first)
    first.close()

    counter = EncoderCounter(monkeypatch)
    second = Assistant(settings=settings, model_dir=reference_dir)
    second.open(bigbuckbunny)
    assert second.cache_restored == 32
    status = second.status()
    assert status.finished and status.frames_done == 32 * 8
    assert status.covered[0][0] == 0.0
    assert second.encode().finished
    assert counter.calls == [], "the encoder ran for a film whose memory was cached"
    assert_same_memory(expected, memory_state(second))

    second.new_conversation()
    assert "".join(second.ask("What happens in the film?", settings=GREEDY)) == whole
    assert counter.calls == []
    second.new_conversation()
    assert "".join(second.ask("What is he holding?", "breakpoint", at_s=3.0, settings=GREEDY)) == (
        moment
    )
    assert counter.calls == [1], "only the exact frame at the breakpoint is encoded"


def test_renamed_copy_hits(reference_dir, clip, tmp_path, monkeypatch):
    expected = memory_state(_encoded(reference_dir, clip))
    renamed = tmp_path / "elsewhere" / "Mon film renommé.mp4"
    renamed.parent.mkdir()
    shutil.copy(clip, renamed)
    counter = EncoderCounter(monkeypatch)
    again = Assistant(settings=small_settings(), model_dir=reference_dir)
    again.open(renamed)
    assert again.cache_restored == 8 and again.status().finished
    assert_same_memory(expected, memory_state(again))
    assert counter.calls == []
    assert len(cache_dirs()) == 1


@pytest.mark.parametrize("change", ["sampled byte", "appended"])
def test_a_changed_file_misses(reference_dir, bigbuckbunny, tmp_path, change):
    settings = small_settings()
    original = tmp_path / "film.mp4"
    shutil.copy(bigbuckbunny, original)
    _encoded(reference_dir, original, settings).close()
    data = bytearray(original.read_bytes())
    if change == "appended":
        data += b"\0" * 100
    else:
        data[sampled_offsets(len(data))[3] + 1000] ^= 0xFF  # inside the film's media data
    changed = tmp_path / "film changed.mp4"
    changed.write_bytes(bytes(data))
    assistant = Assistant(settings=settings, model_dir=reference_dir)
    assistant.open(changed)
    assert assistant.cache_restored == 0
    assert assistant.status().fragments_done == 0
    assistant.open(original)  # the original still hits
    assert assistant.cache_restored == 8


@pytest.mark.parametrize(
    "other",
    [
        {"n_fragments": 4},
        {"plan": "fps"},
        {"frames_per_fragment": 4},
    ],
)
def test_other_sampling_settings_miss(reference_dir, clip, other):
    _encoded(reference_dir, clip).close()
    settings = small_settings()
    settings.sampling = dataclasses.replace(settings.sampling, **other)
    assistant = Assistant(settings=settings, model_dir=reference_dir)
    assistant.open(clip)
    assert assistant.cache_restored == 0 and assistant.status().fragments_done == 0
    assistant.encode()
    assert len(cache_dirs()) == 2, "each setting has its own entry"
    assistant.open(clip)
    assert assistant.cache_restored == assistant.status().fragments_total


def test_another_model_misses(reference_dir, clip, tmp_path):
    _encoded(reference_dir, clip).close()
    other = tmp_path / "other-model"
    shutil.copytree(reference_dir, other)
    from safetensors.torch import save_file

    state = read_checkpoint(other / "tiny_eva_vit.pth")
    name = next(k for k, v in state.items() if v.is_floating_point() and v.dim() == 2)
    state[name] = state[name] * 1.01
    save_file(state, other / "tiny_eva_vit.safetensors")  # preferred over the .pth
    assistant = Assistant(settings=small_settings(), model_dir=other)
    assistant.open(clip)
    assert assistant.cache_restored == 0
    assistant.encode()
    moved = Assistant(settings=small_settings(), model_dir=reference_dir)
    moved.open(clip)
    assert moved.cache_restored == 8, "the first model's memory is still there"
    assert len(cache_dirs()) == 2


def test_interrupted_encoding_resumes(reference_dir, clip, monkeypatch):
    settings = small_settings()
    expected = reference_memory(reference_dir, clip, settings)
    first = Assistant(settings=settings, model_dir=reference_dir)
    first.open(clip)
    for _ in range(3):
        first.encode_step()
    first.close()  # the user closed the film (or the app died) after 3 fragments

    counter = EncoderCounter(monkeypatch)
    second = Assistant(settings=settings, model_dir=reference_dir)
    second.open(clip)
    assert second.cache_restored == 3
    status = second.status()
    assert status.fragments_done == 3 and not status.finished
    assert status.covered == ((0.0, second._plan.fragments[2].end_s),)
    assert second.covers(second._plan.fragments[2].start_s)
    second.encode()
    assert counter.calls == [8] * 5, "only the 5 missing fragments are encoded"
    assert_same_memory(expected, memory_state(second))


def test_no_cache_neither_reads_nor_writes(reference_dir, clip, monkeypatch):
    _encoded(reference_dir, clip).close()
    before = {p: sorted(q.name for q in p.iterdir()) for p in cache_dirs()}
    counter = EncoderCounter(monkeypatch)
    assistant = Assistant(settings=small_settings(), model_dir=reference_dir, use_cache=False)
    assistant.open(clip)
    assert assistant.cache_restored == 0
    assistant.encode()
    assert counter.frames == 64
    assert {p: sorted(q.name for q in p.iterdir()) for p in cache_dirs()} == before
