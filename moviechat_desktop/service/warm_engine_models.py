"""The warm engine's one model, lent to each session's ``Assistant``.

Every CLI call gets an ``Assistant`` of its own (its settings, its film, its conversation); the
model in it is the one the daemon keeps loaded (``Assistant.use_model_of``) as long as what
decides the model is the same: the weights' files (the resolved ``ModelPaths``, and each file's
size and mtime), the precision, the device and the position table. A call that needs another
model drops the kept one first (one model in memory at a time) and loads its own, which is then
kept.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import logging
import threading
from pathlib import Path
from typing import Any

from moviechat_desktop.engine.assistant import Assistant

log = logging.getLogger(__name__)


def model_key(assistant: Assistant) -> tuple:
    """What decides the model ``assistant`` would load (``WeightsMissing`` when none is)."""
    from moviechat_desktop.engine.model.paths import ModelPaths

    if assistant.model_dir is not None:
        paths = ModelPaths.from_reference_dir(assistant.model_dir)
    else:
        from moviechat_desktop.engine.weights import resolve_model_paths

        paths = resolve_model_paths()
    model = assistant.settings.model
    return (repr(paths), _files_state(paths), model.precision, model.device, model.position_table)


def _files_state(paths: Any) -> tuple:
    """Size and mtime of the weights' files (and of the decoder's directory entries): weights
    replaced in place (a new download, a conversion) make the kept model stale."""
    state = []
    for field in dataclasses.fields(paths):
        path = getattr(paths, field.name)
        if path is None:
            continue
        entries = sorted(Path(path).iterdir()) if Path(path).is_dir() else [Path(path)]
        for entry in entries:
            try:
                info = entry.stat()
            except OSError:
                continue
            state.append((str(entry), info.st_size, info.st_mtime_ns))
    return tuple(state)


class ModelKeeper:
    """Holds the loaded model between sessions (in an ``Assistant`` with no film)."""

    def __init__(self) -> None:
        self._holder: Assistant | None = None
        self._key: tuple | None = None
        self._lock = threading.Lock()

    def lend(self, session: Assistant) -> bool:
        """Give ``session`` the kept model, loading it first when it is not the right one.
        True when it was already loaded (a warm call)."""
        key = model_key(session)
        with self._lock:
            warm = self._holder is not None and self._key == key
            if not warm:
                self.drop()
                holder = Assistant(
                    settings=copy.deepcopy(session.settings),
                    model_dir=session.model_dir,
                    use_cache=False,
                    keep_history=False,
                )
                holder.load_model()
                self._holder, self._key = holder, key
                log.info("model loaded in %.2f s (%s)", holder.load_seconds, holder.device_label)
            session.use_model_of(self._holder)
        return warm

    def drop(self) -> None:
        """Release the kept model (its memory returns once no session holds it)."""
        if self._holder is not None:
            self._holder.shutdown()
            self._holder = self._key = None
            gc.collect()

    def describe(self) -> dict[str, Any] | None:
        """The kept model, for ``engine status`` (read without waiting for a load)."""
        holder = self._holder
        if holder is None:
            return None
        return {
            "model_dir": str(holder.model_dir) if holder.model_dir else "installed weights",
            "device": holder.device_label,
            "load_s": round(holder.load_seconds, 3),
        }


class SessionAssistant(Assistant):
    """One call's ``Assistant``, whose model comes from the ``ModelKeeper``."""

    def __init__(self, keeper: ModelKeeper, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._keeper = keeper
        self.model_was_warm = False  # the model was loaded before this call asked for it

    def load_model(self) -> None:
        if self._model is None:
            self.model_was_warm = self._keeper.lend(self)
