"""What the ``Assistant`` reports: the encoding status of the open film and what the last
question did (``assistant.py`` re-exports both; the GUI and the remote client read them)."""

from __future__ import annotations

from dataclasses import dataclass, field

MODES = ("global", "breakpoint")
END_SLACK_S = 1.0  # a breakpoint this far past the last frame still means "the end"


@dataclass(frozen=True)
class EncodeStatus:
    """A small immutable snapshot of the encoding of the current film."""

    fragments_done: int
    fragments_total: int
    frames_done: int
    frames_total: int
    covered: tuple[tuple[float, float], ...]  # time ranges (s) already in memory, merged
    frames_per_s: float  # recent encoding speed (decode + model + memory)
    duration_s: float
    finished: bool
    # speech recognition (when speech is the dialogue source): seconds of the film recognised,
    # the film's length, and the recognised ranges for the timeline; 0/0/() otherwise
    speech_done_s: float = 0.0
    speech_total_s: float = 0.0
    speech_covered: tuple[tuple[float, float], ...] = ()
    speech_pending: bool = False  # speech is the source and chunks remain (background work)
    speech_error: str | None = None  # why recognition stopped (undecodable audio…)
    # parts of the film that could not be decoded (a damaged file): skipped, retried on reopen
    gaps: tuple[tuple[float, float], ...] = ()

    @property
    def fraction(self) -> float:
        return 0.0 if self.fragments_total == 0 else self.fragments_done / self.fragments_total


@dataclass
class AnswerInfo:
    """What the last ``ask`` did, for ``--json`` and the benchmarks."""

    mode: str = "global"
    at_s: float | None = None
    memory_frames: int = 0  # frames fed to the video Q-Former
    first_token_s: float | None = None  # from the call to the decoder's first token
    first_text_s: float | None = None  # from the call to the first text shown (chunk)
    tokens: int = 0  # tokens the decoder generated (the stop sequence included)
    answer_s: float = 0.0  # from the call to the last chunk
    chunks: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    dialogue_source: str = "none"  # where the film's dialogue came from (lines.SOURCES)
    dialogue_lines: int = 0  # dialogue lines that went into the prompt
    turns_dropped: int = 0  # earlier turns left out of the prompt for room
    prompt: str = ""  # the text given to the decoder, with the video placeholder
    gaps: tuple[tuple[float, float], ...] = ()  # damaged parts the answer could not see
    # the chat history's ids of the question and of the answer (None when not saved), whether
    # the answer was stopped, and the coverage note of a whole-film answer from part of it
    question_id: str | None = None
    answer_id: str | None = None
    stopped: bool = False
    coverage: str = ""
