"""One film's entry in the memory cache: header, fragment files and lock (layout: film_cache.py).

``CacheEntry`` checks the header when it opens (format, full key, frame plan; anything else moves
the entry aside and starts a fresh one), ``restore`` loads the listed fragments into a
``FilmMemory`` (a fragment file failing its size or digest check is moved aside alone and will be
encoded again), and ``save_fragment`` writes one fragment file then the header, both atomically.

Format 2 stores the tokens in float16 (half of format 1's float32: the real model's 32 × 768
tokens take 48 KiB per frame plus its share of the consolidated frames, 60 KiB in all); when a
fragment is written, the memory's own tensors are rounded to the stored values, so a film's
answers are the same before and after it is reopened from the cache. Format 1 entries (float32)
are still read; new fragments join them in float16 and the header becomes format 2.

Durability. Every fragment file and header replacement is atomic (temp file + rename), so a
crash or ``SIGKILL`` loses at most the fragment in flight. Flushing to disk is batched: a
fragment is written without ``fsync`` and recorded in ``header.json.pending`` (also without
``fsync``); at most every ``SYNC_INTERVAL_S`` seconds of encoding (and when the film is
complete, when the entry closes, when it is next opened) the pending fragment files and the
directory are flushed, then ``header.json`` is replaced (with ``fsync``) and the pending header
removed. ``header.json`` therefore never names a fragment that is not yet on disk, and a power
loss loses at most the last ``SYNC_INTERVAL_S`` seconds of encoding (the pending header, read
only when it names every fragment ``header.json`` does, is digest-checked like any fragment).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moviechat_desktop.engine.errors import CacheError
from moviechat_desktop.engine.store.atomic_io import (
    CORRUPT_MARK,
    atomic_write,
    fsync_dir,
    fsync_file,
    move_aside,
)
from moviechat_desktop.engine.store.fingerprint import canonical_json

try:  # POSIX; elsewhere entries are not locked (one app instance is the norm there)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from moviechat_desktop.engine.memory.film_memory import FilmMemory
    from moviechat_desktop.engine.store.fingerprint import CacheKey

log = logging.getLogger(__name__)

CACHE_FORMAT = 2
READABLE_FORMATS = (1, 2)  # 1: float32 tokens
STORED_DTYPE = "float16"
HEADER_NAME = "header.json"
PENDING_NAME = "header.json.pending"  # fragments written since the last flush (no fsync)
SYNC_INTERVAL_S = 10.0  # the most encoding time a power loss can cost
LOCK_NAME = "lock"
FRAGMENT_FILE = "frag-{:06d}.safetensors"


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class EntryLock:
    """An exclusive, non-blocking ``flock`` on ``<entry>/lock``: who may write the entry."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, create: bool = True) -> bool:
        """True when this object now holds the lock (or no one can: no lock file, no fcntl)."""
        if fcntl is None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        except FileNotFoundError:
            return not create  # no lock file: nobody uses the entry
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None and fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:  # an entry dropped without close() must not stay locked
        self.release()


class CacheEntry:
    """A film's cache entry, opened by ``FilmCache.open_entry`` (see module docstring)."""

    def __init__(
        self,
        directory: Path,
        *,
        key: CacheKey,
        film_name: str,
        plan_digest: str,
        fragments_total: int,
        on_written: Callable[[CacheEntry, int], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.key, self.film_name = key, film_name
        self.plan_digest, self.fragments_total = plan_digest, fragments_total
        self._on_written = on_written
        self._lock = EntryLock(self.directory)
        self.writable = False
        self._unsynced: set[str] = set()  # fragments written but not yet flushed to disk
        self._unsynced_since: float | None = None  # monotonic time of the oldest of them
        self._header = self._open()

    # ------------------------------------------------------------------ header
    def _fresh_header(self) -> dict[str, Any]:
        from moviechat_desktop.engine.memory.film_memory import STATE_VERSION

        now = time.time()
        return {
            "format": CACHE_FORMAT,
            "memory_version": STATE_VERSION,
            "key": self.key.as_dict(),
            "film_name": self.film_name,
            "plan": self.plan_digest,
            "fragments_total": self.fragments_total,
            "created": now,
            "last_used": now,
            "fragments": {},
            "covered": [],
        }

    def _header_problem(self, header: Any) -> str | None:
        from moviechat_desktop.engine.memory.film_memory import STATE_VERSION

        if not isinstance(header, dict):
            return "its header is not a JSON object"
        if header.get("format") not in READABLE_FORMATS:
            return f"cache format {header.get('format')!r} is not supported"
        if header.get("memory_version") != STATE_VERSION:
            return f"memory format {header.get('memory_version')!r} is not supported"
        if canonical_json(header.get("key")) != canonical_json(self.key.as_dict()):
            return "it was written for another film, model or settings"
        if header.get("plan") != self.plan_digest:
            return "the film's frame plan differs (another decoder version?)"
        if header.get("fragments_total") != self.fragments_total:
            return "the fragment count differs"
        fragments = header.get("fragments")
        if not isinstance(fragments, dict):
            return "its fragment index is missing"
        for name, record in fragments.items():
            if not (
                name.isdigit()
                and int(name) < self.fragments_total
                and isinstance(record, dict)
                and record.get("file") == FRAGMENT_FILE.format(int(name))
                and isinstance(record.get("bytes"), int)
                and not isinstance(record.get("bytes"), bool)
                and isinstance(record.get("blake2b"), str)
            ):
                return f"its fragment index is damaged (entry {name!r})"
        return None

    def _open(self) -> dict[str, Any]:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.writable = self._lock.acquire()
        if not self.writable:
            log.info(
                "cache entry %s is in use elsewhere (another window or process): read only",
                self.directory,
            )
        path = self.directory / HEADER_NAME
        if not path.exists():
            return self._start(self._fresh_header())
        try:
            header = json.loads(path.read_bytes())
            problem = self._header_problem(header)
        except (OSError, ValueError, RecursionError) as err:
            problem = f"its header is unreadable: {str(err)[:200]}"
        if problem is None:
            return self._start(self._with_pending(header))
        if not self.writable:
            log.warning(
                "memory cache of %s is unusable (%s) and in use elsewhere; not used",
                self.film_name,
                problem,
            )
            return self._fresh_header()
        return self._reset(problem)

    def _with_pending(self, header: dict[str, Any]) -> dict[str, Any]:
        """``header`` or, when it is usable, the pending header (fragments written after the
        last flush: kept after a crash, possibly lost or garbled after a power loss)."""
        path = self.directory / PENDING_NAME
        if not path.exists():
            return header
        try:
            pending = json.loads(path.read_bytes())
            problem = self._header_problem(pending)
        except (OSError, ValueError, RecursionError) as err:
            problem = f"unreadable: {str(err)[:200]}"
        if problem is None and not set(header["fragments"]) <= set(pending["fragments"]):
            problem = "older than the header"
        if problem is not None:
            log.info("memory cache of %s: pending header not used (%s)", self.film_name, problem)
            return header
        self._unsynced = set(pending["fragments"]) - set(header["fragments"])
        if self._unsynced:
            self._unsynced_since = time.monotonic()
        return pending

    def _start(self, header: dict[str, Any]) -> dict[str, Any]:
        self._header = header
        if self.writable:
            header["last_used"] = time.time()
            self.sync()  # what a crash left pending becomes durable, the header is rewritten
            self._remove_leftovers(header)
        return header

    def _reset(self, problem: str) -> dict[str, Any]:
        """Move the whole entry aside (logged) and start an empty one in its place."""
        self._lock.release()
        self._unsynced.clear()
        self._unsynced_since = None
        if move_aside(self.directory, f"memory cache of {self.film_name}: {problem}") is None:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.writable = self._lock.acquire()
        return self._start(self._fresh_header())

    def _remove_leftovers(self, header: dict[str, Any]) -> None:
        """Delete files the header does not list (a write cut short, temp files)."""
        keep = {HEADER_NAME, LOCK_NAME, PENDING_NAME}
        keep |= {r["file"] for r in header["fragments"].values()}
        for item in self.directory.iterdir():
            if item.name in keep or CORRUPT_MARK in item.name or not item.is_file():
                continue
            log.debug("cache: removing leftover %s", item)
            item.unlink(missing_ok=True)

    def _write_header(self, header: dict[str, Any]) -> None:
        """The durable header: only ever names fragments already flushed (``sync``)."""
        durable = dict(header)
        durable["fragments"] = {
            name: record
            for name, record in header["fragments"].items()
            if name not in self._unsynced
        }
        atomic_write(self.directory / HEADER_NAME, json.dumps(durable).encode("utf-8"))

    def sync(self) -> None:
        """Flush the fragments written since the last flush, then commit them in
        ``header.json`` (write order: fragment files, directory, header; module docstring)."""
        if not self.writable:
            return
        for name in sorted(self._unsynced, key=int):
            record = self._header["fragments"].get(name)
            if record is not None:
                try:
                    fsync_file(self.directory / record["file"])
                except FileNotFoundError:  # moved aside meanwhile: not committed
                    del self._header["fragments"][name]
        if self._unsynced:
            fsync_dir(self.directory)
        self._unsynced.clear()
        self._unsynced_since = None
        self._write_header(self._header)
        (self.directory / PENDING_NAME).unlink(missing_ok=True)

    @property
    def saved_fragments(self) -> list[int]:
        """Indices the header lists, ascending."""
        return sorted(int(name) for name in self._header["fragments"])

    # ------------------------------------------------------------------ reading
    def _read_fragment(self, name: str, record: dict[str, Any]) -> tuple[dict, dict]:
        from safetensors.torch import load

        data = (self.directory / record["file"]).read_bytes()
        if len(data) != record["bytes"] or _digest(data) != record["blake2b"]:
            raise CacheError(f"{record['file']} is truncated or damaged (size or digest)")
        head_len = int.from_bytes(data[:8], "little")  # safetensors: u64 header length
        entry = json.loads(json.loads(data[8 : 8 + head_len])["__metadata__"]["fragment"])
        if entry.get("index") != int(name):
            raise CacheError(f"{record['file']} holds fragment {entry.get('index')!r}")
        return load(data), entry

    def restore(self, memory: FilmMemory) -> list[int]:
        """Fill ``memory`` with the saved fragments; the indices restored. Never raises for a
        bad cache: bad fragments are moved aside (re-encoded later), a bad whole resets."""
        tensors: dict[str, Any] = {}
        entries = []
        bad = []
        for name, record in sorted(self._header["fragments"].items(), key=lambda kv: int(kv[0])):
            try:
                loaded, entry = self._read_fragment(name, record)
            except (OSError, ValueError, KeyError, TypeError, CacheError) as err:
                bad.append((name, record, str(err)))
                continue
            tensors.update(loaded)
            entries.append(entry)
        for name, record, reason in bad:
            path = self.directory / record["file"]
            if not self.writable:
                log.warning("memory cache of %s: %s unusable (%s)", self.film_name, path, reason)
                continue
            if not path.exists():
                log.warning("memory cache of %s: %s is missing", self.film_name, path)
            elif move_aside(path, reason) is None:
                path.unlink(missing_ok=True)
            del self._header["fragments"][name]
        if bad and self.writable:
            self._write_header(self._header)
        if not entries:
            return []
        state = memory.state_dict()  # an empty template of the memory's own format
        state["tensors"] = tensors
        state["metadata"]["fragments"] = entries
        try:
            memory.load_state_dict(state)
        except CacheError as err:
            memory.clear()
            if self.writable:
                self._header = self._reset(str(err))
            return []
        return memory.fragment_indices()

    # ------------------------------------------------------------------ writing
    def save_fragment(self, memory: FilmMemory, index: int) -> None:
        """Write fragment ``index`` of ``memory`` (float16; the memory's tensors are rounded
        to the stored values) and record it: in the pending header, or, when the oldest
        unflushed fragment is ``SYNC_INTERVAL_S`` old or the film is complete, flushed and
        committed in the header (module docstring). ``OSError``."""
        if not self.writable:
            return
        import torch
        from safetensors.torch import save

        state = memory.state_dict()  # references, no copies
        entry = next(e for e in state["metadata"]["fragments"] if e["index"] == index)
        tensors = {}
        for name in (f"fragment.{index}.raw", f"fragment.{index}.long"):
            held = state["tensors"][name]
            tensors[name] = held.to(getattr(torch, STORED_DTYPE)).contiguous()
            with torch.inference_mode():  # (the memory's tensors may be inference tensors)
                held.copy_(tensors[name])  # in place: the memory holds what the cache holds
        data = save(tensors, metadata={"fragment": json.dumps(entry)})
        name = FRAGMENT_FILE.format(index)
        atomic_write(self.directory / name, data, sync=False)
        self._header["format"] = CACHE_FORMAT
        self._header["fragments"][str(index)] = {
            "file": name,
            "bytes": len(data),
            "blake2b": _digest(data),
        }
        self._header["covered"] = [list(r) for r in memory.covered_ranges()]
        self._header["last_used"] = time.time()
        self._unsynced.add(str(index))
        now = time.monotonic()
        if self._unsynced_since is None:
            self._unsynced_since = now
        complete = len(self._header["fragments"]) >= self.fragments_total
        if complete or now - self._unsynced_since >= SYNC_INTERVAL_S:
            self.sync()
        else:
            pending = json.dumps(self._header).encode("utf-8")
            atomic_write(self.directory / PENDING_NAME, pending, sync=False)
        if self._on_written is not None:
            self._on_written(self, len(data))

    def close(self) -> None:
        """Flush what is pending (``sync``), release the lock (the files stay)."""
        try:
            if self._unsynced:
                self.sync()
        except OSError as err:  # a full or gone disk: the pending header still has them
            log.warning("memory cache of %s: could not flush: %s", self.film_name, err)
        finally:
            self._lock.release()
