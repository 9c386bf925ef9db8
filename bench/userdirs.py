"""Keep the benchmark's film caches and chat histories out of the user's own directories.

A "cold" open must really be cold (the user's cache may already hold the film) and the
benchmark must not leave films or chats behind. ``BenchDirs`` points ``XDG_CACHE_HOME``,
``XDG_DATA_HOME`` and ``XDG_STATE_HOME`` at a temporary directory, while the installed weights
stay reachable: ``HF_HOME`` is pinned to the hub cache it resolved to before, and the app's
weights folder is linked into each temporary cache dir. ``fresh()`` switches to new empty
dirs (so a phase can encode a film the previous phase cached).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from moviechat_desktop.engine.settings import APP_NAME, user_cache_dir
from moviechat_desktop.engine.weights.store import hub_home

log = logging.getLogger(__name__)

_VARS = ("XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "HF_HOME")


class BenchDirs:
    """A context manager; see the module docstring."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self._saved: dict[str, str | None] = {}
        self._weights = user_cache_dir() / "weights"
        self._rounds = 0

    def __enter__(self) -> BenchDirs:
        self._saved = {var: os.environ.get(var) for var in _VARS}
        os.environ["HF_HOME"] = str(hub_home())  # before XDG_CACHE_HOME moves
        self.root = Path(tempfile.mkdtemp(prefix="moviechat-bench-"))
        self.fresh()
        return self

    def fresh(self) -> Path:
        """Point the cache, data and state dirs at new empty directories (weights still
        reachable): no film memory and no chat history from an earlier phase."""
        assert self.root is not None, "use BenchDirs as a context manager"
        self._rounds += 1
        base = self.root / f"round{self._rounds}"
        app_cache = base / "cache" / APP_NAME
        app_cache.mkdir(parents=True)
        if self._weights.is_dir():
            (app_cache / "weights").symlink_to(self._weights, target_is_directory=True)
        for var, sub in (("XDG_CACHE_HOME", "cache"), ("XDG_DATA_HOME", "data")):
            (base / sub).mkdir(exist_ok=True)
            os.environ[var] = str(base / sub)
        os.environ["XDG_STATE_HOME"] = str(self.root)
        log.debug("benchmark user dirs: %s", base)
        return base

    def __exit__(self, *exc: object) -> None:
        for var, value in self._saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
