"""Memory consolidation and ``FilmMemory`` with small hand-checkable tensors."""

from __future__ import annotations

import json

import pytest
import torch

from moviechat_desktop.engine.errors import CacheError, NotReady
from moviechat_desktop.engine.memory.film_memory import FilmMemory, consolidate
from moviechat_desktop.engine.model.config import MemoryConfig


def frames_from(values: list[float], q: int = 2, d: int = 3) -> torch.Tensor:
    """Frame i = a constant ``values[i]`` everywhere: mean token = values[i]·1, so the
    similarity of frames i, i+1 is d·values[i]·values[i+1]."""
    return torch.tensor(values, dtype=torch.float32)[:, None, None].expand(-1, q, d).clone()


# ---------------------------------------------------------------- consolidate
def test_similarity_is_the_mean_of_token_dot_products_not_cosine():
    gen = torch.Generator().manual_seed(0)
    frames = torch.randn(4, 3, 5, generator=gen)
    result = consolidate(frames, keep=3)
    expected = [float((frames[i] @ frames[i + 1].T).mean()) for i in range(3)]
    assert result.log[0].similarities == pytest.approx(expected, rel=1e-5)
    # Scaling one frame scales its similarities (a cosine would not change).
    scaled = frames.clone()
    scaled[0] *= 10
    first = consolidate(scaled, keep=3).log[0].similarities[0]
    assert first == pytest.approx(10 * expected[0], rel=1e-5)


def test_most_similar_adjacent_pair_merges_to_the_plain_average():
    frames = frames_from([1.0, 2.0, 3.0, 1.0])  # sims ∝ 2, 6, 3 → pair (1, 2)
    result = consolidate(frames, keep=3)
    assert [s.chosen for s in result.log] == [1]
    assert result.covers == [[0], [1, 2], [3]]
    torch.testing.assert_close(result.frames[1], torch.full((2, 3), 2.5))
    torch.testing.assert_close(result.frames[[0, 2]], frames[[0, 3]])


def test_repeated_merges_are_not_weighted_equally():
    frames = frames_from([4.0, 4.0, 8.0])  # sims ∝ 16, 32 → (1, 2) = 6; then (0, 1) → 5
    result = consolidate(frames, keep=1)
    assert [s.chosen for s in result.log] == [1, 0]
    torch.testing.assert_close(result.frames[0], torch.full((2, 3), 5.0))  # not 16/3
    assert result.covers == [[0, 1, 2]]


def test_ties_go_to_the_lowest_index():
    frames = frames_from([1.0, 1.0, 1.0, 1.0, 1.0])  # every similarity equal
    result = consolidate(frames, keep=2)
    assert [s.chosen for s in result.log] == [0, 0, 0]
    assert result.covers == [[0, 1, 2, 3], [4]]


def test_log_lists_all_adjacent_similarities_before_each_merge():
    frames = frames_from([1.0, 2.0, 3.0])
    log = consolidate(frames, keep=1).log
    assert log[0].similarities == pytest.approx([3 * 2.0, 3 * 6.0])
    assert log[1].similarities == pytest.approx([3 * 1.0 * 2.5])
    assert consolidate(frames, keep=3).log == []  # nothing to merge


# ---------------------------------------------------------------- FilmMemory
def add(memory: FilmMemory, index: int, values: list[float], start: float, step: float = 1.0):
    stamps = [start + step * i for i in range(len(values))]
    return memory.add_fragment(
        index, frames_from(values), stamps, start, start + step * len(values)
    )


def test_fragments_consolidate_separately_and_stay_in_index_order():
    memory = FilmMemory()
    add(memory, 1, [5.0, 5.0, 5.0, 5.0], start=4.0)
    add(memory, 0, [1.0, 1.0, 1.0, 1.0], start=0.0)
    long, spans = memory.long_term()
    assert long.shape == (4, 2, 3)
    # Fragment 0's survivors only average fragment 0's frames (never across the boundary).
    assert long[:2].unique().tolist() == [1.0]
    assert long[2:].unique().tolist() == [5.0]
    assert spans == [(0.0, 2.0), (3.0, 3.0), (4.0, 6.0), (7.0, 7.0)]
    assert memory.fragments_done == 2 and memory.fragment_indices() == [0, 1]


def test_re_adding_a_fragment_replaces_it():
    memory = FilmMemory()
    add(memory, 0, [1.0, 1.0, 1.0], start=0.0)
    add(memory, 0, [7.0, 7.0, 7.0], start=0.0)
    assert memory.fragments_done == 1
    assert memory.global_frames().unique().tolist() == [7.0]


def test_covered_ranges_merge_touching_fragments():
    memory = FilmMemory()
    add(memory, 3, [1.0, 1.0], start=6.0)  # 6..8
    add(memory, 0, [1.0, 1.0], start=0.0)  # 0..2
    add(memory, 1, [1.0, 1.0], start=2.0)  # 2..4
    assert memory.covered_ranges() == [(0.0, 4.0), (6.0, 8.0)]


def test_global_frames_need_something_encoded():
    with pytest.raises(NotReady):
        FilmMemory().global_frames()


def test_global_frames_compress_beyond_long_memory_length():
    config = MemoryConfig()
    memory = FilmMemory(config)
    fragments = config.long_memory_length // config.short_memory_merge + 3
    for i in range(fragments):
        add(memory, i, [float(i + 1)] * 4, start=4.0 * i)
    long, _ = memory.long_term()
    assert long.shape[0] == fragments * config.short_memory_merge
    compressed = memory.global_frames()
    assert compressed.shape == (config.long_memory_length, 2, 3)
    # The same adjacent-merge rule over the whole long-term memory.
    torch.testing.assert_close(compressed, consolidate(long, config.long_memory_length).frames)


def test_breakpoint_frames_clean_semantics():
    memory = FilmMemory()
    add(memory, 0, [1.0, 1.0, 1.0, 1.0], start=0.0)  # frames at 0,1,2,3; ends at 4
    add(memory, 1, [2.0, 3.0, 4.0, 5.0], start=4.0)  # frames at 4,5,6,7; ends at 8
    add(memory, 2, [9.0, 9.0, 9.0, 9.0], start=8.0)  # after t: never used
    current = frames_from([100.0])
    out = memory.breakpoint_frames(5.5, current)
    # long of fragment 0 (2 frames of 1.0), raw frames at 4 and 5 of fragment 1, current.
    assert out[:, 0, 0].tolist() == [1.0, 1.0, 2.0, 3.0, 100.0]
    # A fragment ending exactly at t counts as before t; the next one contributes its first frame.
    assert memory.breakpoint_frames(4.0, current)[:, 0, 0].tolist() == [1.0, 1.0, 2.0, 100.0]
    # Before anything: just the current frame.
    assert memory.breakpoint_frames(-1.0, current)[:, 0, 0].tolist() == [100.0]


def test_breakpoint_frames_capacity_drops_oldest_raw_then_oldest_long():
    memory = FilmMemory(MemoryConfig(long_memory_length=6))
    add(memory, 0, [1.0, 1.0, 1.0, 1.0], start=0.0)  # long: 1, 1
    add(memory, 1, [2.0, 2.0, 2.0, 2.0], start=4.0)  # long: 2, 2
    add(memory, 2, [3.0, 4.0, 5.0, 6.0], start=8.0)
    current = frames_from([100.0])
    # 4 long + 4 raw + 1 = 9 > 6: drop 3 → all 3 from the raw frames (oldest first).
    out = memory.breakpoint_frames(11.0, current)
    assert out[:, 0, 0].tolist() == [1.0, 1.0, 2.0, 2.0, 6.0, 100.0]
    small = FilmMemory(MemoryConfig(long_memory_length=3))
    for i, v in enumerate([1.0, 2.0]):
        add(small, i, [v, v, v, v], start=4.0 * i)
    add(small, 2, [3.0, 4.0], start=8.0)
    # 4 long + 2 raw + 1 = 7 > 3: drop both raw frames, then the 2 oldest long frames.
    assert small.breakpoint_frames(9.0, current)[:, 0, 0].tolist() == [2.0, 2.0, 100.0]


def test_state_round_trip_is_lossless_and_json_able():
    memory = FilmMemory()
    gen = torch.Generator().manual_seed(1)
    for i in (2, 0):
        memory.add_fragment(
            i, torch.randn(5, 2, 3, generator=gen), [i + 0.1 * k for k in range(5)], i, i + 1
        )
    state = memory.state_dict()
    json.dumps(state["metadata"])  # plain JSON
    restored = FilmMemory()
    restored.load_state_dict(
        {
            "tensors": {k: v.clone() for k, v in state["tensors"].items()},
            "metadata": json.loads(json.dumps(state["metadata"])),
        }
    )
    assert restored.fragment_indices() == [0, 2]
    assert restored.covered_ranges() == memory.covered_ranges()
    for a, b in zip(memory.fragments(), restored.fragments(), strict=True):
        assert torch.equal(a.raw, b.raw) and torch.equal(a.long, b.long)
        assert (a.timestamps, a.covers, a.spans) == (b.timestamps, b.covers, b.spans)
    current = torch.zeros(1, 2, 3)
    assert torch.equal(
        memory.breakpoint_frames(2.25, current), restored.breakpoint_frames(2.25, current)
    )


def test_corrupt_state_is_a_cache_error():
    memory = FilmMemory()
    add(memory, 0, [1.0, 2.0, 3.0], start=0.0)
    state = memory.state_dict()
    del state["tensors"]["fragment.0.long"]
    with pytest.raises(CacheError):
        FilmMemory().load_state_dict(state)
    state = memory.state_dict()
    state["metadata"]["fragments"][0]["covers"] = [[0], [1]]  # frame 2 covered by nothing
    with pytest.raises(CacheError):
        FilmMemory().load_state_dict(state)


def test_bad_fragments_are_refused():
    memory = FilmMemory()
    with pytest.raises(ValueError):
        memory.add_fragment(0, torch.zeros(3, 2, 3), [0.0, 1.0], 0.0, 2.0)  # 3 frames, 2 stamps
    add(memory, 0, [1.0], start=0.0)
    with pytest.raises(ValueError):
        memory.add_fragment(1, torch.zeros(2, 4, 3), [2.0, 3.0], 2.0, 4.0)  # other token shape
