"""Timed dialogue lines and the dialogue of one film (DESIGN §9).

Every source (a subtitle file the user added, a sidecar, an embedded text track, recognised
speech) produces the same thing: a ``Dialogue`` holding cleaned ``DialogueLine``s in time order.
The prompt builder only ever sees these.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCES = ("file", "sidecar", "embedded", "speech", "none")


@dataclass(frozen=True)
class DialogueLine:
    """One line of dialogue: shown from ``start_s`` to ``end_s`` (seconds into the film)."""

    start_s: float
    end_s: float
    text: str  # cleaned: no markup, no HTML entities; may hold newlines
    speaker: str = ""  # where the format names one (ASS "Name" field), else ""


@dataclass(frozen=True)
class Dialogue:
    """The dialogue of one film from one source.

    ``source`` is one of ``SOURCES``; ``label`` says where it came from in words
    ("Subtitles: film.en.srt", "Embedded track 2 (eng)", "Speech: 34% recognised").
    ``complete_until_s`` is how far the lines are known: the film's end for subtitles, the end
    of the last recognised chunk for speech (lines after it may still come).
    """

    source: str
    label: str
    lines: tuple[DialogueLine, ...] = ()
    complete_until_s: float | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {self.source!r}")

    @classmethod
    def none(cls, label: str = "No dialogue") -> Dialogue:
        return cls(source="none", label=label)

    def __bool__(self) -> bool:
        return bool(self.lines)
