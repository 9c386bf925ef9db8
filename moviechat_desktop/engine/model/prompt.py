"""The prompt the decoder is given: neutralised texts, the layout, and the context budget.

Layout (Vicuna v0, the original's ``inference.py``; multi-turn and dialogue are ours)::

    {SYSTEM}###Human: <Video><ImageHere></Video> {DIALOGUE}{q1}###Assistant: {a1}
    ###Human: {q}###Assistant:

(one line, broken here for width)

``{DIALOGUE}`` is empty without dialogue, so the prompt is then the original's byte for byte.
With dialogue it is a header, one line per entry in time order, and a blank line::

    Dialogue:
    [01:12] Marla: I'm not here.
    [01:04:05] Who are you?

    {question}

It sits beside the video (after ``</Video>``, in the first human turn) because, like the video
tokens, it is the film's context for the CURRENT question: both are rebuilt for every question,
and earlier turns keep only their question and answer. The header says what the timed lines
are (without it Vicuna reads them as part of the question); the blank line ends them. Times
are the player's (``timefmt.format_time``); a speaker is written where the source names one;
a line's own line breaks become spaces, so no text can forge another timed line.

Neutralising (``neutralise``): every text placed here — the system text, questions, answers,
conversations restored from disk (whatever version wrote them) and dialogue — loses the image
placeholder (removed until none is left: ``<Image<ImageHere>Here>`` too) and ``###`` becomes
``#`` (the role markers only act after ``###``).

Budget (DESIGN §3): ``max_length`` positions (2000, the original's) hold the prompt, the video
tokens and ``max_new_tokens`` of answer. The system text, the video, the question and the
answer's room are never cut; a question that does not fit beside them is refused
(``PromptTooLong``). What is left goes to dialogue lines first (the longest prefix of the
selection's priority order) and then to conversation turns, newest first: when the whole does
not fit, the oldest turns give way first, then dialogue lines. Lengths are counted with the
model's own tokenizer on the final text, segment by segment as the decoder sees it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from moviechat_desktop.engine.dialogue.lines import DialogueLine
from moviechat_desktop.engine.errors import MovieChatError
from moviechat_desktop.engine.model.tokenizer import TextTokenizer
from moviechat_desktop.timefmt import format_time

if TYPE_CHECKING:
    from moviechat_desktop.engine.model.paths import ModelPaths

SYSTEM_PROMPT = (
    "You are able to understand the visual content that the user provides."
    "Follow the instructions carefully and explain your answers in details."
)
IMAGE_PLACEHOLDER = "<ImageHere>"
STOP_STRING = "###"
DIALOGUE_HEADER = "Dialogue:"
SHORTEST_QUESTION = "?"  # what the answer-length limit leaves room for
_SPACES = re.compile(r"\s+")


class PromptTooLong(MovieChatError):
    """A question (or answer length) that cannot fit beside the video in the context."""


def neutralise(text: str) -> str:
    """``text`` without the image placeholder and without ``###`` (see module docstring)."""
    while True:
        cleaned = text.replace(IMAGE_PLACEHOLDER, "").replace(STOP_STRING, "#")
        if cleaned == text:
            return text
        text = cleaned


def format_line(line: DialogueLine) -> str:
    """One dialogue entry as the prompt shows it: ``[01:12] Speaker: text`` (one line)."""
    text = _SPACES.sub(" ", neutralise(line.text)).strip()
    speaker = _SPACES.sub(" ", neutralise(line.speaker)).strip()
    said = f"{speaker}: {text}" if speaker else text
    return f"[{format_time(line.start_s)}] {said}"


def dialogue_block(lines: Sequence[DialogueLine]) -> str:
    """The dialogue part of the human turn (empty for no lines), lines in time order."""
    shown = [format_line(line) for line in sorted(lines, key=lambda line: line.start_s)]
    if not shown:
        return ""
    return DIALOGUE_HEADER + "".join("\n" + text for text in shown) + "\n\n"


def layout(system: str, turns: Sequence[tuple[str, str]], question: str, dialogue: str = "") -> str:
    """The prompt text from already neutralised parts (module docstring's layout)."""
    exchanges = [f"{q}###Assistant: {a}" for q, a in turns]
    exchanges.append(f"{question}###Assistant:")
    return f"{system}###Human: <Video>{IMAGE_PLACEHOLDER}</Video> {dialogue}" + "###Human: ".join(
        exchanges
    )


def prompt_length(tokenizer: TextTokenizer, prompt: str, visual_tokens: int) -> int:
    """Decoder positions of ``prompt``: both segments tokenized apart (BOS on the first) plus
    the video tokens."""
    segments = prompt.split(IMAGE_PLACEHOLDER)
    if len(segments) != 2:
        raise ValueError(f"the prompt must hold {IMAGE_PLACEHOLDER} exactly once")
    first, second = segments
    return (
        len(tokenizer.encode(first, add_bos=True))
        + visual_tokens
        + len(tokenizer.encode(second, add_bos=False))
    )


@dataclass(frozen=True)
class BuiltPrompt:
    """A prompt that fits: its text (with the placeholder once) and what went into it."""

    text: str
    length: int  # decoder positions, video tokens included
    dialogue_lines: int  # dialogue entries shown
    turns: int  # earlier conversation turns kept
    turns_dropped: int  # earlier turns left out for room


def max_new_tokens_limit(
    tokenizer: TextTokenizer, visual_tokens: int, max_length: int, system: str = SYSTEM_PROMPT
) -> int:
    """The longest answer that fits beside the video, the fixed prompt and the shortest
    question (``SHORTEST_QUESTION``) in ``max_length`` positions (at least 0)."""
    shortest = layout(neutralise(system), [], SHORTEST_QUESTION)
    return max(0, max_length - prompt_length(tokenizer, shortest, visual_tokens))


def answer_limit_for(paths: ModelPaths, max_length: int) -> int:
    """``max_new_tokens_limit`` of an installed model, read from its config files and its
    tokenizer only: no weights are loaded."""
    from moviechat_desktop.engine.model.config import ModelConfig
    from moviechat_desktop.engine.model.tokenizer import load_tokenizer

    config = (
        ModelConfig.real()
        if paths.config is None
        else ModelConfig.from_reference_json(paths.config)
    )
    tokenizer = load_tokenizer(paths.llama_dir)
    return max_new_tokens_limit(tokenizer, config.video_qformer.num_query_tokens, max_length)


def _largest(fits: Callable[[int], bool], start: int, top: int) -> int:
    """The largest ``k`` in ``[0, top]`` with ``fits(k)`` (``fits`` monotone, ``fits(0)``
    true), searched from the guess ``start``; every returned ``k > 0`` was checked."""
    if top <= 0:
        return 0
    start = max(0, min(start, top))
    if start and not fits(start):
        lo, hi = 0, start - 1  # the answer lies below the guess
    else:
        lo, step = start, 1  # gallop up from the guess
        while lo + step <= top and fits(lo + step):
            lo, step = lo + step, step * 2
        hi = min(top, lo + step - 1)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def build_prompt(
    tokenizer: TextTokenizer,
    *,
    visual_tokens: int,
    system: str,
    turns: Sequence[tuple[str, str]],
    question: str,
    max_length: int,
    max_new_tokens: int,
    dialogue: Sequence[DialogueLine] = (),
) -> BuiltPrompt:
    """The prompt for ``question`` within the budget (module docstring). ``turns`` are the
    earlier ``(question, answer)`` pairs, oldest first; ``dialogue`` the candidate lines, most
    wanted first. Raises ``PromptTooLong`` when the question cannot fit beside the video."""
    system = neutralise(system)
    question = neutralise(question)
    kept_turns = [(neutralise(q), neutralise(a)) for q, a in turns]
    room = max_length - max_new_tokens  # positions for the prompt itself

    def length(text: str) -> int:
        return prompt_length(tokenizer, text, visual_tokens)

    without = length(layout(system, [], ""))  # everything fixed, an empty question
    shortest = length(layout(system, [], SHORTEST_QUESTION))
    if shortest > room:
        raise PromptTooLong(
            f"an answer of {max_new_tokens} tokens cannot fit beside the video in the "
            f"decoder's {max_length}-token context: ask for 1 to "
            f"{max(1, max_length - shortest)} tokens"
        )
    base = length(layout(system, [], question))
    if base > room:
        raise PromptTooLong(
            f"the question is too long: {base - without} tokens, but beside the video and "
            f"room for a {max_new_tokens}-token answer only {max(0, room - without)} fit in "
            f"the decoder's {max_length}-token context (shorten the question or ask for a "
            "shorter answer)"
        )

    def with_lines(k: int) -> str:
        return layout(system, [], question, dialogue_block(dialogue[:k]))

    # A guess from each line's own length (exact for byte tokenizers, close for others).
    guess, spent = 0, len(tokenizer.encode(DIALOGUE_HEADER + "\n", add_bos=False))
    for line in dialogue:
        spent += len(tokenizer.encode("\n" + format_line(line), add_bos=False))
        if base + spent > room:
            break
        guess += 1
    shown = _largest(lambda k: length(with_lines(k)) <= room, guess, len(dialogue))
    block = dialogue_block(dialogue[:shown])

    def with_turns(j: int) -> str:
        return layout(system, kept_turns[len(kept_turns) - j :] if j else [], question, block)

    count = _largest(lambda j: length(with_turns(j)) <= room, len(kept_turns), len(kept_turns))
    text = with_turns(count)
    return BuiltPrompt(
        text=text,
        length=length(text),
        dialogue_lines=shown,
        turns=count,
        turns_dropped=len(kept_turns) - count,
    )
