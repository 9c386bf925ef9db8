"""Recognising one film's speech chunk by chunk, on the engine's schedule.

The film's audio is cut into ``CHUNK_S`` stretches recognised in order; ``step`` does one (a
question never waits for more than one chunk) and saves it (``speech_cache``), so a restarted
app resumes where it stopped. With the language on "auto" the first chunk with speech decides
it for the whole film. A chunk that cannot be decoded stops recognition with its reason
(``error``); the film's memory and chat are not touched.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from moviechat_desktop.engine.dialogue.audio import SAMPLE_RATE, decode_audio
from moviechat_desktop.engine.dialogue.lines import DialogueLine
from moviechat_desktop.engine.dialogue.speech_cache import SpeechTranscript
from moviechat_desktop.engine.errors import DialogueError

if TYPE_CHECKING:
    import numpy as np

    from moviechat_desktop.engine.dialogue.speech import Segment, SpeechModel
    from moviechat_desktop.engine.progress import CancelToken

log = logging.getLogger(__name__)

CHUNK_S = 30.0


class SpeechChunks:
    """A film's ``CHUNK_S`` chunks and which of them are recognised (``transcript``): the
    progress that ``SpeechSession`` (recognition here) and the remote engine's client
    (recognition on a server, ``service/remote_dialogue.py``) both report."""

    def __init__(
        self, film: Path, duration_s: float, transcript: SpeechTranscript, language: str
    ) -> None:
        self.film = film
        self.duration_s = max(0.0, duration_s)
        self.language_setting = language or "auto"
        self.n_chunks = max(1, math.ceil(self.duration_s / CHUNK_S))
        self.transcript = transcript
        self.error: str | None = None
        self.seconds_per_chunk = 0.0  # last chunk's wall time
        self.audio_seconds = 0.0  # audio recognised in this session
        self.busy_seconds = 0.0  # wall time spent recognising it

    # ------------------------------------------------------------------ progress
    @property
    def done_chunks(self) -> int:
        return sum(1 for i in self.transcript.chunks if i < self.n_chunks)

    @property
    def finished(self) -> bool:
        return self.done_chunks >= self.n_chunks

    def _chunk_end(self, index: int) -> float:
        return min(self.duration_s, (index + 1) * CHUNK_S)

    @property
    def done_s(self) -> float:
        """Seconds of the film recognised."""
        return sum(
            self._chunk_end(i) - i * CHUNK_S for i in self.transcript.chunks if i < self.n_chunks
        )

    @property
    def complete_until_s(self) -> float:
        """The end of the recognised stretch that starts at 0."""
        index = 0
        while index in self.transcript.chunks:
            index += 1
        return 0.0 if index == 0 else self._chunk_end(index - 1)

    def covered(self) -> tuple[tuple[float, float], ...]:
        """Recognised time ranges, merged (for the timeline)."""
        ranges: list[tuple[float, float]] = []
        for index in sorted(i for i in self.transcript.chunks if i < self.n_chunks):
            start, end = index * CHUNK_S, self._chunk_end(index)
            if ranges and ranges[-1][1] >= start:
                ranges[-1] = (ranges[-1][0], end)
            else:
                ranges.append((start, end))
        return tuple(ranges)

    @property
    def fraction(self) -> float:
        return 1.0 if self.duration_s <= 0 else min(1.0, self.done_s / self.duration_s)

    def lines(self) -> tuple[DialogueLine, ...]:
        return self.transcript.lines()

    def next_chunk(self) -> int | None:
        for index in range(self.n_chunks):
            if index not in self.transcript.chunks:
                return index
        return None

    def chunk_span(self, index: int) -> tuple[float, float]:
        """Chunk ``index``'s start and length (s)."""
        start = index * CHUNK_S
        return start, self._chunk_end(index) - start

    def _done(self, index: int, lines: tuple[DialogueLine, ...], language: str, t0: float) -> None:
        elapsed = time.perf_counter() - t0
        self.transcript.add(index, lines, language)
        self.seconds_per_chunk = elapsed
        self.audio_seconds += self.chunk_span(index)[1]
        self.busy_seconds += elapsed
        log.info(
            "speech chunk %d/%d: %d lines in %.2f s", index + 1, self.n_chunks, len(lines), elapsed
        )

    @property
    def real_time_factor(self) -> float:
        """Wall time per second of audio in this session (0 before the first chunk)."""
        return 0.0 if self.audio_seconds <= 0 else self.busy_seconds / self.audio_seconds


class SpeechSession(SpeechChunks):
    """The speech recognition of one film with one model (see module docstring)."""

    def __init__(
        self,
        film: Path,
        film_id: str | None,
        duration_s: float,
        model: SpeechModel,
        *,
        language: str = "auto",
        cache_dir: Path | None = None,
    ) -> None:
        self.model = model
        key = {
            "film": film_id or "unsaved",
            "source": "speech",
            "model": model.identity(),
            "language": language or "auto",
            "chunk_s": CHUNK_S,
        }
        # without a fingerprint there is nothing to key a cache on: kept in memory only
        transcript = SpeechTranscript(key, cache_dir, persist=film_id is not None)
        super().__init__(film, duration_s, transcript, language)

    # ------------------------------------------------------------------ work
    def step(self, cancel: CancelToken | None = None) -> bool:
        """Recognise the next chunk; False when there is nothing left (or it failed before)."""
        if self.error is not None:
            return False
        index = self.next_chunk()
        if index is None:
            return False
        if cancel is not None:
            cancel.raise_if_cancelled()
        start, length = self.chunk_span(index)
        t0 = time.perf_counter()
        try:
            audio = decode_audio(self.film, start, length)
        except DialogueError as err:
            self.error = str(err)
            raise
        self.recognise_chunk(index, audio, cancel, t0)
        return True

    def recognise_chunk(
        self, index: int, audio: np.ndarray, cancel: CancelToken | None = None, t0: float = 0.0
    ) -> tuple[DialogueLine, ...]:
        """Recognise chunk ``index`` from its audio (16 kHz mono float32, decoded here or
        uploaded by a client) and record it; its lines."""
        t0 = t0 or time.perf_counter()
        start = index * CHUNK_S
        lines: tuple[DialogueLine, ...] = ()
        language = self.transcript.language
        try:
            if audio.size >= SAMPLE_RATE // 10:
                wanted = None if self.language_setting == "auto" else self.language_setting
                chosen = wanted or language or None
                segments, detected = self.model.transcribe(audio, chosen, cancel)
                lines = _to_lines(segments, start, self._chunk_end(index))
                # the first chunk where anything was said fixes the language for the film
                if lines and not language:
                    language = detected
        except DialogueError as err:
            self.error = str(err)
            raise
        self._done(index, lines, language, t0)
        return lines


def _to_lines(segments: list[Segment], offset: float, chunk_end: float) -> tuple[DialogueLine, ...]:
    from moviechat_desktop.engine.dialogue.cleaning import clean_text

    lines = []
    for segment in segments:
        text, _ = clean_text(segment.text)
        if not text:
            continue
        start = min(offset + max(0.0, segment.start_s), chunk_end)
        end = min(max(offset + segment.end_s, start), chunk_end)  # tiny models overshoot
        lines.append(DialogueLine(round(start, 3), round(end, 3), text))
    return tuple(lines)
