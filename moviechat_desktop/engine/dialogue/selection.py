"""Which dialogue lines a question should see, most wanted first (DESIGN §9).

The prompt builder (``engine.model.prompt``) takes the longest prefix of this order that fits
the decoder's budget and shows the chosen lines in time order, so each function here only
decides priorities:

- breakpoint mode: the lines that START at or before the breakpoint, the most recent first.
  A line starting after it is never a candidate (no spoilers), whatever the budget.
- global mode: the lines most relevant to the question (BM25 over the lines' words, via
  ``rank_bm25``) interleaved one for one with an even spread over the film's time, so a
  question about a name finds its lines and a question about the story still sees all of it.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import deque
from collections.abc import Sequence

from moviechat_desktop.engine.dialogue.lines import Dialogue, DialogueLine

_WORD = re.compile(r"\w+", re.UNICODE)
# Question words and function words that would rank every line alike; kept short on purpose
# (BM25's idf already discounts what every line says).
_STOPWORD_TEXT = """a an the and or but if of to in on at by for from with about into over after
before is are was were be been being am do does did done have has had having will would can
could shall should may might must i me my we our you your he him his she her it its they them
their this that these those there here what which who whom whose when where why how not no yes
so than then too very just also as up down out off again once all any both each few more most
other some such only own same s t don doesn didn isn wasn aren weren film movie video scene
say said says tell happen happens happened"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def words(text: str) -> list[str]:
    """The words BM25 compares: lower-cased, stopwords left out."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def breakpoint_order(lines: Sequence[DialogueLine], at_s: float) -> list[int]:
    """Indices of the lines starting at or before ``at_s``, the most recent first."""
    candidates = [i for i, line in enumerate(lines) if line.start_s <= at_s]
    candidates.sort(key=lambda i: (lines[i].start_s, i), reverse=True)
    return candidates


def spread_order(lines: Sequence[DialogueLine]) -> list[int]:
    """Every line's index once, ordered so that each prefix is spread evenly over the time
    the lines span: the line nearest the middle first, then those nearest the middles of the
    two halves, and so on (breadth first)."""
    order = sorted(range(len(lines)), key=lambda i: (lines[i].start_s, i))
    if not order:
        return []
    starts = [lines[i].start_s for i in order]
    out: list[int] = []
    pending = deque([(0, len(order), starts[0], max(line.end_s for line in lines))])
    while pending:
        lo, hi, t0, t1 = pending.popleft()  # the lines order[lo:hi] lie in [t0, t1]
        if lo >= hi:
            continue
        middle = (t0 + t1) / 2
        k = bisect_left(starts, middle, lo, hi)
        pick = k if k < hi and (k == lo or starts[k] - middle < middle - starts[k - 1]) else k - 1
        out.append(order[pick])
        pending.append((lo, pick, t0, starts[pick]))
        pending.append((pick + 1, hi, starts[pick], t1))
    return out


class RelevanceIndex:
    """BM25 over one dialogue's lines (built once per ``Dialogue``, queried per question)."""

    def __init__(self, lines: Sequence[DialogueLine]) -> None:
        self._docs = [words(f"{line.speaker} {line.text}") for line in lines]
        self._bm25 = None
        if any(self._docs):  # rank_bm25 divides by the mean length: not over empty lines only
            from rank_bm25 import BM25Okapi

            self._bm25 = BM25Okapi(self._docs)

    def ranked(self, question: str) -> list[int]:
        """Indices of the lines sharing a word with ``question``, best score first."""
        query = words(question)
        if self._bm25 is None or not query:
            return []
        scores = self._bm25.get_scores(query)
        wanted = set(query)
        hits = [i for i, doc in enumerate(self._docs) if wanted.intersection(doc)]
        hits.sort(key=lambda i: (-float(scores[i]), i))
        return hits


class _LastIndex:
    """The last dialogue's BM25 index (questions repeat on one film)."""

    dialogue: Dialogue | None = None
    index: RelevanceIndex | None = None


def relevance_index(dialogue: Dialogue) -> RelevanceIndex:
    """The BM25 index of ``dialogue``, built once while it stays the film's dialogue."""
    if _LastIndex.dialogue is not dialogue or _LastIndex.index is None:
        _LastIndex.index = RelevanceIndex(dialogue.lines)
        _LastIndex.dialogue = dialogue
    return _LastIndex.index


def global_order(dialogue: Dialogue, question: str) -> list[int]:
    """Relevant lines and the even spread, interleaved one for one, each index once."""
    relevant = relevance_index(dialogue).ranked(question)
    spread = spread_order(dialogue.lines)
    out: list[int] = []
    seen: set[int] = set()
    queues = [deque(relevant), deque(spread)]
    while any(queues):
        for queue in queues:
            while queue and queue[0] in seen:
                queue.popleft()
            if queue:
                seen.add(queue[0])
                out.append(queue.popleft())
    return out


def candidate_lines(
    dialogue: Dialogue, question: str, mode: str, at_s: float | None
) -> list[DialogueLine]:
    """The lines ``question`` may see, most wanted first (empty without dialogue)."""
    if not dialogue.lines:
        return []
    if mode == "breakpoint":
        if at_s is None:
            raise ValueError("breakpoint mode needs at_s")
        order = breakpoint_order(dialogue.lines, at_s)
    else:
        order = global_order(dialogue, question)
    return [dialogue.lines[i] for i in order]
