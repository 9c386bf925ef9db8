"""What is kept on disk for the film that is open: its memory cache entry and its chat history.

The ``Assistant`` holds one ``FilmStore`` per open film. Disk trouble here (a full disk, a
read-only cache dir) is logged and the film carries on without persistence: it never stops
encoding or answering.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moviechat_desktop.engine.store.chat_history import (
    ChatHistory,
    ChatRecord,
    new_conversation_id,
    new_message_id,
)
from moviechat_desktop.engine.store.fingerprint import (
    CacheKey,
    file_fingerprint,
    model_identity,
    sampling_identity,
)

if TYPE_CHECKING:
    from moviechat_desktop.engine.memory.film_memory import FilmMemory
    from moviechat_desktop.engine.model.config import ModelConfig
    from moviechat_desktop.engine.model.movie_chat import MovieChatModel
    from moviechat_desktop.engine.model.paths import ModelPaths
    from moviechat_desktop.engine.settings import CacheSettings, ModelSettings, SamplingSettings
    from moviechat_desktop.engine.store.cache_entry import CacheEntry
    from moviechat_desktop.engine.video.sampling import SamplingPlan

log = logging.getLogger(__name__)


def encoder_identity(
    paths: ModelPaths, settings: ModelSettings, model: MovieChatModel | None = None
) -> tuple[dict[str, Any], ModelConfig]:
    """The frame encoder's identity (``fingerprint.model_identity``) and the model config.

    With ``model`` loaded, its own config and precision plan; without, the config file's and
    the plan ``load_model`` will pick on this machine, so a film's cache is found before the (slow)
    model load. ``OSError`` / ``MovieChatError`` when the weights are not there.
    """
    from moviechat_desktop.engine.model.config import ModelConfig

    if model is not None:
        config, precision = model.config, model.plan.encoder_label
    else:
        from moviechat_desktop.engine.model.device import detect_device_choice

        config = (
            ModelConfig.real()
            if paths.config is None
            else ModelConfig.from_reference_json(paths.config)
        )
        choice = detect_device_choice(
            requested=settings.precision, device=settings.device, llama_dir=str(paths.llama_dir)
        )
        precision = choice.plan.encoder_label
    return model_identity(paths, config, precision), config


class FilmStore:
    """The persistent side of one open film (see module docstring)."""

    def __init__(self, path: Path, keep_history: bool = True, film_id: str | None = None) -> None:
        """``film_id``: the fingerprint computed elsewhere (a client that has the file)."""
        self.film_name = Path(path).name
        self.film_id: str | None = film_id
        if film_id is None:
            try:
                self.film_id = file_fingerprint(path)
            except OSError as err:
                log.warning("cannot fingerprint %s (%s): nothing about it is kept", path, err)
        self.entry: CacheEntry | None = None
        self.restored = 0  # fragments the cache gave back
        self.history = ChatHistory.for_film(self.film_id) if keep_history and self.film_id else None
        self.history_error: str | None = None  # why the last message could not be saved

    # ------------------------------------------------------------------ memory cache
    def attach_cache(
        self,
        model: dict[str, Any],
        sampling: SamplingSettings,
        cache_settings: CacheSettings,
        plan: SamplingPlan,
        memory: FilmMemory,
    ) -> None:
        """Open the cache entry for this film with ``model`` identity and restore ``memory``
        from it (replacing what ``memory`` held only when the entry holds fragments)."""
        from moviechat_desktop.engine.store.film_cache import FilmCache

        if self.film_id is None:
            return
        key = CacheKey(self.film_id, model, sampling_identity(sampling))
        if self.entry is not None:
            if self.entry.key == key:
                return
            self.entry.close()
            self.entry = None
        try:
            cache = FilmCache.from_settings(cache_settings)
            entry = cache.open_entry(key, self.film_name, plan)
            self.restored = len(entry.restore(memory))
            cache.enforce_limit(protect=entry)
        except OSError as err:
            log.warning("the memory cache is unavailable (%s): this film is not kept", err)
            return
        self.entry = entry
        if self.restored:
            log.info("%s: %d fragments restored from the cache", self.film_name, self.restored)

    def save_fragment(self, memory: FilmMemory, index: int) -> None:
        if self.entry is None:
            return
        try:
            self.entry.save_fragment(memory, index)
        except OSError as err:
            log.warning("cannot write the memory cache (%s): this film is no longer kept", err)
            self.entry.close()
            self.entry = None

    # ------------------------------------------------------------------ chat history
    def latest_conversation(self) -> tuple[str, list[ChatRecord]]:
        """The id and messages of the film's latest conversation, or a new id and ``[]``."""
        latest, records = (None, []) if self.history is None else self.history.latest_conversation()
        return (new_conversation_id(), []) if latest is None else (latest, records)

    def record(
        self,
        conversation_id: str,
        role: str,
        text: str,
        *,
        mode: str,
        at_s: float | None,
        settings: dict[str, Any] | None = None,
        replaces: str | None = None,
        stopped: bool = False,
        coverage: str = "",
    ) -> str | None:
        """Append one message to the film's history (version 2: ``chat_history``); its id,
        or None when there is no history. A disk error is logged, not raised."""
        if self.history is None:
            return None
        record = ChatRecord(
            conversation=conversation_id,
            role=role,
            text=text,
            mode=mode,
            at_s=at_s,
            timestamp=time.time(),
            film=self.film_name,
            settings=settings,
            id=new_message_id(),
            replaces=replaces,
            stopped=stopped,
            coverage=coverage,
        )
        try:
            self.history.append(record)
        except OSError as err:
            log.warning("cannot save the chat history (%s): this message is not kept", err)
            self.history_error = err.strerror or str(err)
        else:
            self.history_error = None
        return record.id

    def close(self) -> None:
        if self.entry is not None:
            self.entry.close()
        self.entry = None
