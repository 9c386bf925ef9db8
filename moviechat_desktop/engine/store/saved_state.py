"""What a film left on disk, read without a model: its latest conversation and watched range.

Reopening a film shows its chat and the part of the timeline the assistant has already watched
at once, long before the model is loaded (seconds with the test model, minutes with 16 GB of
weights). This module reads only the chat history file and the memory cache's small
``header.json`` files; it never imports torch (the window's process reads it, and an
import-linter contract forbids torch there).

The cache entry is matched by the film's fingerprint and the sampling settings. The model's
identity is not checked here (that would mean fingerprinting the weights): among entries for
other models the most recently used one is shown, and the engine's own status replaces this
preview as soon as it has opened the film.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moviechat_desktop.engine.settings import user_cache_dir
from moviechat_desktop.engine.store.chat_history import (
    ChatHistory,
    ChatRecord,
    ConversationSummary,
    summarize,
)
from moviechat_desktop.engine.store.fingerprint import (
    canonical_json,
    file_fingerprint,
    sampling_identity,
)

if TYPE_CHECKING:
    from moviechat_desktop.engine.settings import SamplingSettings

log = logging.getLogger(__name__)

HEADER_NAME = "header.json"  # cache_entry.HEADER_NAME (that module would bring torch in)
MAX_HEADER_BYTES = 4_000_000
MAX_RANGES = 100_000


@dataclass(frozen=True)
class SavedState:
    """A film's saved conversation (the latest) and the ranges its cached memory covers."""

    film_id: str
    conversation_id: str | None
    records: tuple[ChatRecord, ...]
    conversations: tuple[ConversationSummary, ...]
    covered: tuple[tuple[float, float], ...]  # seconds, ascending
    fragments_done: int
    fragments_total: int


def default_cache_root() -> Path:
    """``film_cache.default_cache_root`` (importing film_cache would bring torch in)."""
    return user_cache_dir() / "memory"


def _ranges(value: Any) -> tuple[tuple[float, float], ...]:
    """The header's ``covered`` list as ranges; () for anything this app did not write."""
    if not isinstance(value, list) or len(value) > MAX_RANGES:
        return ()
    ranges = []
    for item in value:
        if not (isinstance(item, list | tuple) and len(item) == 2):
            return ()
        start, end = item
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in (start, end)):
            return ()
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start <= end <= 1e7):
            return ()
        ranges.append((float(start), float(end)))
    return tuple(sorted(ranges))


def _cache_preview(
    film_id: str, sampling: SamplingSettings | None, root: Path
) -> tuple[tuple[tuple[float, float], ...], int, int]:
    """(covered, fragments done, total) of the film's most recently used cache entry."""
    wanted_sampling = canonical_json(sampling_identity(sampling)) if sampling else None
    best: tuple[float, tuple, int, int] | None = None
    try:
        candidates = [p for p in root.iterdir() if p.is_dir() and "." not in p.name]
    except OSError:
        return (), 0, 0
    for directory in candidates:
        path = directory / HEADER_NAME
        try:
            if path.stat().st_size > MAX_HEADER_BYTES:
                continue
            header = json.loads(path.read_bytes())
        except (OSError, ValueError, RecursionError):
            continue
        if not isinstance(header, dict):
            continue
        key = header.get("key")
        if not isinstance(key, dict) or key.get("film") != film_id:
            continue
        if wanted_sampling is not None and canonical_json(key.get("sampling")) != wanted_sampling:
            continue
        last_used = header.get("last_used")
        if isinstance(last_used, bool) or not isinstance(last_used, int | float):
            last_used = 0.0
        fragments = header.get("fragments")
        done = len(fragments) if isinstance(fragments, dict) else 0
        total = header.get("fragments_total")
        total = total if isinstance(total, int) and not isinstance(total, bool) else 0
        candidate = (float(last_used), _ranges(header.get("covered")), done, total)
        if best is None or candidate[0] > best[0]:
            best = candidate
    if best is None:
        return (), 0, 0
    return best[1], best[2], best[3]


def memory_cache_usage(root: Path | None = None) -> tuple[int, int]:
    """(films, bytes) the memory cache holds on disk: what clearing it would free at most."""
    root = default_cache_root() if root is None else Path(root)
    films = total = 0
    try:
        items = list(root.iterdir())
    except OSError:
        return 0, 0
    for item in items:
        films += item.is_dir() and "." not in item.name
        for path in [item] if item.is_file() else item.rglob("*"):
            try:
                total += path.stat().st_size if path.is_file() else 0
            except OSError:  # vanished while counting
                pass
    return films, total


def read_saved_state(
    path: str | Path,
    sampling: SamplingSettings | None = None,
    *,
    history_root: Path | None = None,
    cache_root: Path | None = None,
) -> SavedState | None:
    """The saved state of the film at ``path``; None when the file cannot be read (the
    player's own error handling speaks then). Disk trouble in the stores reads as "nothing
    saved"; this never raises for a damaged history or cache header."""
    try:
        film_id = file_fingerprint(path)
    except OSError as err:
        log.info("no saved state for %s: %s", path, err)
        return None
    history = ChatHistory.for_film(film_id, history_root)
    records = history.records()
    latest = records[-1].conversation if records else None
    mine = tuple(r for r in records if r.conversation == latest)
    if cache_root is None:
        cache_root = default_cache_root()
    covered, done, total = _cache_preview(film_id, sampling, Path(cache_root))
    return SavedState(film_id, latest, mine, tuple(summarize(records)), covered, done, total)
