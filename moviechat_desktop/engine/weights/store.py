"""Where weights live on disk, and the two small JSON records about them.

- ``<user cache>/weights/``: files downloaded from plain URLs, every converted ``.safetensors``
  and ``installed.json`` (what was downloaded, its size and the sha256 observed after the first
  verified download).
- ``<user cache>/weights/imported/``: ``.safetensors`` conversions of ``.pth`` files the user
  pointed at.
- ``<user config>/weights.json``: the local files/directories the user chose ("Use local
  files…" / ``weights import``), used in place.
- The Hugging Face hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``) for hub files.

Every write is atomic (temp file + fsync + rename); an unreadable record is treated as empty
(with a warning) so a damaged file never stops the app from starting.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from moviechat_desktop.engine.settings import user_cache_dir, user_config_dir
from moviechat_desktop.engine.store.atomic_io import atomic_write

log = logging.getLogger(__name__)

RECORD_FORMAT = 1


def weights_dir() -> Path:
    """The app's own weights folder in the user cache dir."""
    return user_cache_dir() / "weights"


def imported_dir() -> Path:
    return weights_dir() / "imported"


def installed_record_path() -> Path:
    return weights_dir() / "installed.json"


def imports_record_path() -> Path:
    return user_config_dir() / "weights.json"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_home() -> Path:
    env = os.environ.get("HF_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface"


def hub_cache_dir() -> Path:
    """The hub cache as huggingface_hub computes it, read at call time (HF_HOME respected)."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    return Path(env).expanduser() if env else hub_home() / "hub"


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) asks for no network at all."""
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")):
        return True
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def destination_dir(destination: str) -> Path:
    return hub_cache_dir() if destination == "hf_cache" else weights_dir()


def free_bytes(path: Path) -> int:
    """Free space on the disk that holds ``path`` (or its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return 0


def read_record(path: Path) -> dict[str, Any]:
    """``{"format": 1, "parts": {...}}`` from ``path``; empty if missing or unreadable."""
    if not path.is_file():
        return {"format": RECORD_FORMAT, "parts": {}}
    try:
        data = json.loads(path.read_text("utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("parts"), dict):
            raise ValueError("no 'parts' mapping")
    except (OSError, ValueError, UnicodeDecodeError) as err:
        log.warning("%s is unreadable (%s); treating it as empty", path, err)
        return {"format": RECORD_FORMAT, "parts": {}}
    return data


def write_record(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def get_entry(path: Path, part_id: str) -> dict[str, Any] | None:
    entry = read_record(path)["parts"].get(part_id)
    return entry if isinstance(entry, dict) else None


def set_entry(path: Path, part_id: str, entry: dict[str, Any] | None) -> None:
    """Add, replace (``entry``) or remove (``None``) one part's entry."""
    data = read_record(path)
    if entry is None:
        data["parts"].pop(part_id, None)
    else:
        data["parts"][part_id] = {**entry, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    data["format"] = RECORD_FORMAT
    write_record(path, data)


def fsync_replace(src: Path, dst: Path) -> None:
    """Flush ``src`` to disk and atomically rename it to ``dst``."""
    with open(src, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(src, dst)
