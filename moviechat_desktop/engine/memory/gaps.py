"""Fragments of a film that could not be decoded (a file damaged in the middle).

VLC plays such a film, skipping the broken part; the assistant does the same: a fragment whose
frames cannot all be decoded becomes a *gap* instead of stopping the encoding. A gap counts as
watched for breakpoint questions after it (they are answered from the rest of the film), is
shown on the timeline and in an answer's coverage, and lives only as long as the film is open:
it is never written to the memory cache, so reopening the film tries it again. A file nothing
can be decoded from is still refused with a clear message (DESIGN §7).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gap:
    index: int  # the fragment of the sampling plan
    start_s: float
    end_s: float
    reason: str  # the decoder's one-line message


class DecodeGaps:
    """The gaps of the open film, by fragment index."""

    def __init__(self) -> None:
        self._gaps: dict[int, Gap] = {}

    def add(self, index: int, start_s: float, end_s: float, reason: str) -> Gap:
        gap = Gap(index, float(start_s), float(end_s), reason)
        if index not in self._gaps:
            log.warning("fragment %d (%.1f-%.1f s) skipped: %s", index, start_s, end_s, reason)
        self._gaps[index] = gap
        return gap

    def clear(self) -> None:
        self._gaps.clear()

    def __contains__(self, index: object) -> bool:
        return index in self._gaps

    def __len__(self) -> int:
        return len(self._gaps)

    @property
    def indices(self) -> set[int]:
        return set(self._gaps)

    def ranges(self, until_s: float | None = None) -> tuple[tuple[float, float], ...]:
        """The gaps' time ranges, merged and in order (only those starting before
        ``until_s`` when given)."""
        merged: list[list[float]] = []
        for gap in sorted(self._gaps.values(), key=lambda g: g.start_s):
            if until_s is not None and gap.start_s > until_s:
                break
            if merged and gap.start_s <= merged[-1][1] + 1e-6:
                merged[-1][1] = max(merged[-1][1], gap.end_s)
            else:
                merged.append([gap.start_s, gap.end_s])
        return tuple((a, b) for a, b in merged)


def describe_gaps(ranges: tuple[tuple[float, float], ...], hours: bool = False) -> str:
    """``"00:09–00:12 and 01:02–01:05"`` (the empty string for none)."""
    from moviechat_desktop.timefmt import format_time

    parts = [f"{format_time(a, hours=hours)}–{format_time(b, hours=hours)}" for a, b in ranges]
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]
