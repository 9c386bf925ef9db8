"""Recognised speech kept on disk per film, so recognition resumes after a quit or a kill.

One JSON file per (film fingerprint, speech model, language setting, chunk length) in
``<user cache>/dialogue/``, rewritten atomically (``atomic_io``) after every chunk: a kill loses
at most the chunk being recognised. A damaged or foreign file is set aside and recognition
starts again; it never stops the film from opening.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from moviechat_desktop.engine.dialogue.lines import DialogueLine
from moviechat_desktop.engine.settings import user_cache_dir
from moviechat_desktop.engine.store.atomic_io import atomic_write
from moviechat_desktop.engine.store.fingerprint import canonical_json

log = logging.getLogger(__name__)

FORMAT = 1


def dialogue_cache_dir() -> Path:
    return user_cache_dir() / "dialogue"


class SpeechTranscript:
    """The chunks of a film recognised so far (``chunks[i]``: the lines of chunk ``i``)."""

    def __init__(
        self, key: dict[str, Any], folder: Path | None = None, persist: bool = True
    ) -> None:
        self.key = key
        digest = hashlib.blake2b(canonical_json(key), digest_size=12).hexdigest()
        film = str(key.get("film") or "unknown")
        self.path = (folder or dialogue_cache_dir()) / f"speech-{film}-{digest}.json"
        self.chunks: dict[int, tuple[DialogueLine, ...]] = {}
        self.language = ""
        self.save_error: str | None = None
        self.persist = persist
        if persist:
            self._load()

    def _load(self) -> None:
        if not self.path.is_file():
            return
        try:
            data = json.loads(self.path.read_text("utf-8"))
            if data.get("format") != FORMAT or data.get("key") != self.key:
                raise ValueError("written for another film or model")
            chunks = {
                int(index): tuple(DialogueLine(float(s), float(e), str(t)) for s, e, t in lines)
                for index, lines in data["chunks"].items()
            }
            language = str(data.get("language") or "")
        except (OSError, ValueError, KeyError, TypeError) as err:
            aside = self.path.with_name(self.path.name + ".corrupt")
            log.warning("speech transcript %s is unusable (%s): starting again", self.path, err)
            try:
                self.path.replace(aside)
            except OSError:
                pass
            return
        self.chunks, self.language = chunks, language

    def add(self, index: int, lines: tuple[DialogueLine, ...], language: str) -> None:
        """Record chunk ``index`` and write the file (a failed write is kept in ``save_error``)."""
        self.chunks[index] = lines
        if language:
            self.language = language
        if not self.persist:
            return
        data = {
            "format": FORMAT,
            "key": self.key,
            "language": self.language,
            "chunks": {
                str(i): [[line.start_s, line.end_s, line.text] for line in chunk]
                for i, chunk in sorted(self.chunks.items())
            },
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(data, ensure_ascii=False).encode("utf-8"))
            self.save_error = None
        except OSError as err:
            self.save_error = f"the recognised speech cannot be saved: {err}"
            log.warning("%s", self.save_error)

    def lines(self) -> tuple[DialogueLine, ...]:
        return tuple(line for _, chunk in sorted(self.chunks.items()) for line in chunk)
