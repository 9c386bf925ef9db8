"""The cache keeps to its size limit by evicting the least recently used films; Clear cache."""

import logging

import pytest
from cache_helpers import cache_dirs, small_settings

from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.store.film_cache import GB, FilmCache


@pytest.fixture(scope="module")
def clips(make_video):
    return [make_video(f"lru{i}.mp4", seconds=2 + i) for i in range(3)]


def _encode(reference_dir, clip, limit_gb=20.0, keep_open=False):
    assistant = Assistant(settings=small_settings(limit_gb=limit_gb), model_dir=reference_dir)
    assistant.open(clip)
    assistant.encode()
    if not keep_open:
        assistant.close()
    return assistant


def _films():
    return sorted(e.film_name for e in FilmCache().entries() if not e.corrupt)


def test_least_recently_used_films_are_evicted(reference_dir, clips):
    a, b, c = clips
    _encode(reference_dir, a)
    (entry,) = FilmCache().entries()
    size = entry.size_bytes  # every clip has 8 fragments of the same token shape
    assert size > 0
    limit_gb = 2.5 * size / GB  # room for two films, not three
    _encode(reference_dir, b, limit_gb)
    assert _films() == [a.name, b.name]
    reopened = Assistant(settings=small_settings(limit_gb=limit_gb), model_dir=reference_dir)
    reopened.open(a)  # a is now more recently used than b
    assert reopened.cache_restored == 8
    reopened.close()
    _encode(reference_dir, c, limit_gb)
    assert _films() == [a.name, c.name], "b, the least recently used, was evicted"
    assert FilmCache().total_bytes() <= limit_gb * GB
    again = Assistant(settings=small_settings(limit_gb=limit_gb), model_dir=reference_dir)
    again.open(b)
    assert again.cache_restored == 0


def test_the_film_in_use_is_never_evicted(reference_dir, clips, caplog):
    a, b, _ = clips
    _encode(reference_dir, a)
    with caplog.at_level(logging.WARNING):
        open_b = _encode(reference_dir, b, limit_gb=1e-9, keep_open=True)  # ~1 byte
    assert _films() == [b.name], "a was evicted, b (in use) kept although over the limit"
    assert any("over its" in r.getMessage() for r in caplog.records)
    (entry_b,) = cache_dirs()
    other = FilmCache(limit_bytes=0)
    assert other.enforce_limit() == [], "another user of the cache cannot evict b either"
    open_b.close()
    assert other.enforce_limit() == [entry_b.name]
    assert _films() == []


def test_clear_cache_keeps_what_is_in_use(reference_dir, clips):
    a, b, c = clips
    _encode(reference_dir, a)
    _encode(reference_dir, b)
    in_use = _encode(reference_dir, c, keep_open=True)
    before = FilmCache().total_bytes()
    result = in_use.clear_cache()
    assert (result.removed, result.kept_in_use) == (2, 1)
    assert 0 < result.freed_bytes < before
    assert _films() == [c.name]
    in_use.close()
    result = FilmCache().clear()
    assert (result.removed, result.kept_in_use) == (1, 0)
    assert FilmCache().entries() == [] and FilmCache().total_bytes() == 0
    fresh = Assistant(settings=small_settings(), model_dir=reference_dir)
    fresh.open(c)
    assert fresh.cache_restored == 0


def test_clear_also_removes_items_moved_aside(reference_dir, clips):
    a = clips[0]
    _encode(reference_dir, a)
    (directory,) = cache_dirs()
    (directory / "header.json").write_text("garbage")
    reopened = Assistant(settings=small_settings(), model_dir=reference_dir)
    reopened.open(a)
    reopened.close()
    entries = FilmCache().entries()
    assert [e.corrupt for e in entries] == [True, False], "moved-aside items are evicted first"
    assert FilmCache().clear().removed == 2
    assert FilmCache().entries() == []
