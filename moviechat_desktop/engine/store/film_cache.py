"""The memory cache: a film's encoded memory on disk, so reopening it costs no encoding.

Layout, under the user cache dir (``~/.cache/moviechat-desktop/memory/``)::

    <key digest>/                  one entry per film × model × sampling settings (fingerprint.py)
        header.json                format, full key, film name, plan digest, fragment index,
                                   covered ranges, last use: rewritten atomically (small)
        frag-000000.safetensors    one fragment's raw and consolidated tokens + its metadata,
        frag-000001.safetensors    written once, atomically, as soon as it is encoded
        lock                       flock'ed by the process using the entry
    <key digest>.corrupt-<time>/   an entry found corrupt or incompatible, moved aside

The header is the commit point: a fragment counts once the header lists it with its size and
BLAKE2b digest, so a crash (even ``SIGKILL``) loses at most the fragment being written; files the
header does not list are leftovers and are deleted. Saving a fragment writes one ~1 MB file and
the header, never the whole memory. Anything unreadable, mismatched or failing its digest is
moved aside with a warning and rebuilt: never used silently, never a crash.

A second process opening an entry already in use reads it but does not write to it. The total
size is kept under ``CacheSettings.limit_gb`` (decimal GB) by deleting the least recently used
entries; the entry in use by this process (or another) is never evicted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moviechat_desktop.engine.settings import user_cache_dir
from moviechat_desktop.engine.store.atomic_io import CORRUPT_MARK, TMP_SUFFIX
from moviechat_desktop.engine.store.cache_entry import HEADER_NAME, CacheEntry, EntryLock
from moviechat_desktop.engine.store.fingerprint import canonical_json
from moviechat_desktop.engine.weights.manifest import format_bytes

if TYPE_CHECKING:
    from moviechat_desktop.engine.settings import CacheSettings
    from moviechat_desktop.engine.store.fingerprint import CacheKey
    from moviechat_desktop.engine.video.sampling import SamplingPlan

log = logging.getLogger(__name__)

GB = 1_000_000_000

__all__ = ["CacheEntry", "ClearResult", "EntryInfo", "FilmCache", "plan_digest"]


def default_cache_root() -> Path:
    return user_cache_dir() / "memory"


def plan_digest(plan: SamplingPlan) -> str:
    """A digest of every fragment's span, frames and timestamps: the cache holds tokens of
    exactly these frames, so a plan that differs (another decoder's timestamps) is refused."""
    rows = [
        [f.index, f.start_s, f.end_s, list(f.frame_indices), list(f.timestamps)]
        for f in plan.fragments
    ]
    return hashlib.blake2b(canonical_json([plan.kind, rows]), digest_size=16).hexdigest()


@dataclass(frozen=True)
class EntryInfo:
    """One item of the cache directory, for ``cache status`` and eviction."""

    name: str
    path: Path
    film_name: str
    size_bytes: int
    fragments_done: int
    fragments_total: int
    last_used: float  # seconds since the epoch
    corrupt: bool  # moved aside (kept for inspection until evicted or cleared)


@dataclass(frozen=True)
class ClearResult:
    removed: int
    freed_bytes: int
    kept_in_use: int  # entries another process (or this one) is using


def _size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for item in path.rglob("*"):
        try:
            if item.is_file():
                total += item.stat().st_size
        except OSError:  # vanished while scanning
            pass
    return total


def _read_header(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / HEADER_NAME).read_text("utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError, RecursionError):
        return {}


_LAST_TIME = 32_503_680_000.0  # the year 3000: any clock shows it


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class FilmCache:
    """The cache directory: open entries, list them, keep the size limit, clear."""

    def __init__(self, root: Path | None = None, limit_bytes: int | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()
        self.limit_bytes = limit_bytes
        self._approx_total: int | None = None
        self._stuck_at = 0  # total left over the limit by what is in use (rescan only above)
        self._warned_small_limit = False

    @classmethod
    def from_settings(cls, settings: CacheSettings, root: Path | None = None) -> FilmCache:
        return cls(root, max(0, int(settings.limit_gb * GB)))

    def open_entry(self, key: CacheKey, film_name: str, plan: SamplingPlan) -> CacheEntry:
        """The entry for ``key`` (created if new), locked for writing when nobody else has it.
        ``OSError`` if the cache directory cannot be created."""
        self.root.mkdir(parents=True, exist_ok=True)
        return CacheEntry(
            self.root / key.digest,
            key=key,
            film_name=film_name,
            plan_digest=plan_digest(plan),
            fragments_total=len(plan.fragments),
            on_written=self._note_written,
        )

    # ------------------------------------------------------------------ listing
    def entries(self) -> list[EntryInfo]:
        """Every item under the root, least recently used first."""
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.iterdir():
            if path.name.endswith(TMP_SUFFIX):
                continue
            corrupt = CORRUPT_MARK in path.name or not path.is_dir()
            header = {} if corrupt else _read_header(path)
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            last_used = header.get("last_used", mtime)
            if isinstance(last_used, bool) or not isinstance(last_used, int | float):
                last_used = mtime
            if not 0 <= last_used <= _LAST_TIME:  # NaN, 1e300, negative: a header we did not write
                last_used = mtime
            fragments = header.get("fragments", {})
            film_name = header.get("film_name", "")
            found.append(
                EntryInfo(
                    name=path.name,
                    path=path,
                    film_name=film_name[:4096] if isinstance(film_name, str) else "",
                    size_bytes=_size_of(path),
                    fragments_done=len(fragments) if isinstance(fragments, dict) else 0,
                    fragments_total=_count(header.get("fragments_total", 0)),
                    last_used=float(last_used),
                    corrupt=corrupt,
                )
            )
        # moved-aside items go first, then by last use
        return sorted(found, key=lambda e: (not e.corrupt, e.last_used))

    def total_bytes(self) -> int:
        total = sum(e.size_bytes for e in self.entries())
        self._approx_total = total
        return total

    # ------------------------------------------------------------------ size limit
    def _note_written(self, entry: CacheEntry, nbytes: int) -> None:
        if self.limit_bytes is None:
            return
        if self._approx_total is None:
            self._approx_total = self.total_bytes()
        else:
            self._approx_total += nbytes
        # over the limit only because of entries in use: rescan after another 1 % of growth
        threshold = max(self.limit_bytes, self._stuck_at + self.limit_bytes // 100)
        if self._approx_total > threshold:
            self.enforce_limit(protect=entry)

    def enforce_limit(self, protect: CacheEntry | None = None) -> list[str]:
        """Delete least recently used items until the cache fits its limit; their names."""
        if self.limit_bytes is None:
            return []
        entries = self.entries()
        total = sum(e.size_bytes for e in entries)
        evicted = []
        for info in entries:
            if total <= self.limit_bytes:
                break
            if protect is not None and info.path == protect.directory:
                continue
            if self._remove(info):
                total -= info.size_bytes
                evicted.append(info.name)
                log.info(
                    "cache: evicted %s (%s, %d bytes)", info.name, info.film_name, info.size_bytes
                )
        self._approx_total = total
        self._stuck_at = total if total > self.limit_bytes else 0
        if total > self.limit_bytes and not self._warned_small_limit:
            self._warned_small_limit = True
            log.warning(
                "the memory cache holds %s, over its %s limit: the films in use are larger than "
                "the limit (raise Settings ▸ cache ▸ limit_gb)",
                format_bytes(total),
                format_bytes(self.limit_bytes),
            )
        return evicted

    def _remove(self, info: EntryInfo) -> bool:
        """Delete one item unless a process is using it; True when it is gone."""
        if not info.path.is_dir() or info.corrupt:
            try:
                if info.path.is_dir():
                    shutil.rmtree(info.path)
                else:
                    info.path.unlink()
            except OSError as err:
                log.warning("cache: cannot delete %s: %s", info.path, err)
                return False
            return True
        lock = EntryLock(info.path)
        if not lock.acquire(create=False):
            return False  # in use
        try:
            shutil.rmtree(info.path)
        except OSError as err:
            log.warning("cache: cannot delete %s: %s", info.path, err)
            return False
        finally:
            lock.release()
        return True

    def clear(self) -> ClearResult:
        """Delete every entry that no process is using."""
        removed = freed = kept = 0
        for info in self.entries():
            if self._remove(info):
                removed += 1
                freed += info.size_bytes
            else:
                kept += 1
        self._approx_total = None
        return ClearResult(removed=removed, freed_bytes=freed, kept_in_use=kept)

    def status_summary(self) -> dict[str, Any]:
        """JSON-able: root, limit, total and the entries (for ``cache status --json``)."""
        entries = self.entries()
        return {
            "root": str(self.root),
            "limit_bytes": self.limit_bytes,
            "total_bytes": sum(e.size_bytes for e in entries),
            "entries": [
                {
                    "name": e.name,
                    "film": e.film_name,
                    "bytes": e.size_bytes,
                    "fragments_done": e.fragments_done,
                    "fragments_total": e.fragments_total,
                    "last_used": e.last_used,
                    "corrupt": e.corrupt,
                }
                for e in entries
            ],
        }
