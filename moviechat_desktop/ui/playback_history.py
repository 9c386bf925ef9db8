"""Recent files and resume positions (Qt-free), kept in one JSON file in the user data dir.

A damaged file is ignored (with a warning) and rewritten on the next change: history is a
convenience and can never stop the player from starting.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from moviechat_desktop.engine.file_checks import real_path
from moviechat_desktop.engine.settings import user_data_dir

log = logging.getLogger(__name__)

RECENT_LIMIT = 10
RESUME_MIN_S = 10.0  # closer to the start than this: start over next time
RESUME_END_MARGIN_S = 15.0  # closer to the end than this: the film was finished
_POSITIONS_LIMIT = 200


def default_history_path() -> Path:
    return user_data_dir() / "history.json"


def _key(path: str | Path) -> str:
    return real_path(path)  # (Path.resolve raises on a symbolic-link loop)


class PlaybackHistory:
    """Most-recent-first list of opened films and where each was left."""

    def __init__(self, path: Path | None = None, limit: int = RECENT_LIMIT) -> None:
        self.path = path or default_history_path()
        self.limit = limit
        self._recent: list[str] = []
        self._positions: dict[str, float] = {}
        self._load()

    # ------------------------------------------------------------------ recent files
    def recent(self) -> list[str]:
        return list(self._recent)

    def add_recent(self, path: str | Path) -> None:
        key = _key(path)
        self._recent = [key] + [p for p in self._recent if p != key]
        del self._recent[self.limit :]
        self._save()

    def remove_recent(self, path: str | Path) -> None:
        key = _key(path)
        self._recent = [p for p in self._recent if p != key]
        self._save()

    def clear_recent(self) -> None:
        self._recent = []
        self._save()

    # ------------------------------------------------------------------ resume positions
    def resume_position(self, path: str | Path) -> float | None:
        return self._positions.get(_key(path))

    def remember_position(self, path: str | Path, position_s: float, duration_s: float) -> None:
        """Keep ``position_s`` to offer it next time, unless the film was barely started or
        practically finished (then forget any earlier position)."""
        key = _key(path)
        near_end = duration_s > 0 and position_s > duration_s - RESUME_END_MARGIN_S
        if position_s < RESUME_MIN_S or near_end:
            if self._positions.pop(key, None) is not None:
                self._save()
            return
        self._positions.pop(key, None)
        self._positions[key] = round(float(position_s), 3)  # newest last
        while len(self._positions) > _POSITIONS_LIMIT:
            self._positions.pop(next(iter(self._positions)))
        self._save()

    # ------------------------------------------------------------------ storage
    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            log.warning("%s unreadable (%s); starting a new history", self.path, err)
            return
        if not isinstance(data, dict):
            log.warning("%s: unexpected content; starting a new history", self.path)
            return
        recent = data.get("recent", [])
        positions = data.get("positions", {})
        if isinstance(recent, list):
            self._recent = [p for p in recent if isinstance(p, str)][: self.limit]
        if isinstance(positions, dict):
            self._positions = {
                k: float(v)
                for k, v in positions.items()
                if isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
            }

    def _save(self) -> None:
        data = {"recent": self._recent, "positions": self._positions}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), "utf-8")
            os.replace(tmp, self.path)
        except OSError as err:
            log.warning("cannot save %s: %s", self.path, err)
