"""What dialogue costs a question: prompt assembly, and the first token with dialogue.

Prompt assembly (no model: the tokenizer only) takes a generated two-hour film's dialogue
(one line every 4 s, ~1800 lines of 6-14 words) and times choosing the lines and fitting the
prompt into the 2000-token context (``selection.candidate_lines`` + ``prompt.build_prompt``),
for a breakpoint question (the lines up to the middle, newest first) and a global one (BM25 +
even spread): the first global question of a film also builds its BM25 index, so both the
first and a later question are timed. With the test model's byte tokenizer one character is
one token (~1700 characters of dialogue fit); the real SentencePiece tokenizer is timed too
when the installed weights have it.

First token with dialogue: after a film's plain questions, the same questions again with
generated subtitles added as a file (``Assistant.set_dialogue_source``; ~400 lines, dense
enough to fill the context whatever the film's length): the prompt is then ~1700 positions
instead of ~100, so the decoder's prefill grows.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path
from typing import Any

from moviechat_desktop.engine.dialogue.lines import Dialogue, DialogueLine
from moviechat_desktop.engine.dialogue.selection import RelevanceIndex, candidate_lines
from moviechat_desktop.engine.model.llm import SYSTEM_PROMPT, GenerationSettings
from moviechat_desktop.engine.model.prompt import build_prompt
from moviechat_desktop.engine.model.tokenizer import ByteTokenizer, TextTokenizer

_WORD_TEXT = (
    "the a we you they he she it is was go come look run stop wait here there now then why "
    "where who what never always money door car house night morning rain city river train "
    "gun letter phone brother sister mother father friend police doctor boss job time "
    "tomorrow tonight yesterday please sorry thanks okay listen remember forget believe"
)
WORDS = _WORD_TEXT.split()
QUESTION = "Why does her brother want the money?"
VIDEO_TOKENS = 32  # the real model's


def film_dialogue(duration_s: float, every_s: float = 4.0, seed: int = 11) -> Dialogue:
    """A film's worth of subtitle lines (repeatable random sentences)."""
    rng = random.Random(seed)
    lines = []
    t = 1.0
    while t < duration_s - 1.0:
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 14))]
        text = " ".join(words).capitalize() + rng.choice(".?!")
        lines.append(DialogueLine(t, min(duration_s, t + 2.5), text))
        t += every_s
    return Dialogue("file", "Subtitles: bench.srt", tuple(lines), complete_until_s=duration_s)


def write_srt(dialogue: Dialogue, path: Path) -> Path:
    def stamp(seconds: float) -> str:
        ms = round(seconds * 1000)
        h, rest = divmod(ms, 3_600_000)
        m, rest = divmod(rest, 60_000)
        s, ms = divmod(rest, 1000)
        return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"

    blocks = [
        f"{i}\n{stamp(line.start_s)} --> {stamp(line.end_s)}\n{line.text}\n"
        for i, line in enumerate(dialogue.lines, 1)
    ]
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


def _assemble(tokenizer: TextTokenizer, dialogue: Dialogue, mode: str, at_s: float | None):
    lines = candidate_lines(dialogue, QUESTION, mode, at_s)
    return build_prompt(
        tokenizer,
        visual_tokens=VIDEO_TOKENS,
        system=SYSTEM_PROMPT,
        turns=[],
        question=QUESTION,
        max_length=GenerationSettings().max_length,
        max_new_tokens=GenerationSettings().max_new_tokens,
        dialogue=lines,
    )


def _timed_ms(call) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return 1000 * (time.perf_counter() - start), result


def measure_prompt(
    tokenizer: TextTokenizer | None = None, repeats: int = 20, prefix: str = "prompt_"
) -> dict[str, float]:
    """Prompt assembly times for a two-hour film's dialogue (module docstring)."""
    tokenizer = tokenizer or ByteTokenizer()
    dialogue = film_dialogue(2 * 3600.0)
    out: dict[str, float] = {f"{prefix}film_lines": float(len(dialogue.lines))}
    first_ms, built = _timed_ms(lambda: _assemble(tokenizer, dialogue, "global", None))
    out[f"{prefix}global_first_ms"] = first_ms
    out[f"{prefix}global_lines"] = float(built.dialogue_lines)
    index_times = [_timed_ms(lambda: RelevanceIndex(dialogue.lines))[0] for _ in range(3)]
    out[f"{prefix}bm25_index_ms"] = statistics.median(index_times)
    for mode, at_s in (("global", None), ("breakpoint", 3600.0)):
        times = []
        for _ in range(repeats):
            ms, built = _timed_ms(lambda m=mode, a=at_s: _assemble(tokenizer, dialogue, m, a))
            times.append(ms)
        out[f"{prefix}{mode}_ms"] = statistics.median(times)
        out[f"{prefix}{mode}_tokens"] = float(built.length)
    out[f"{prefix}breakpoint_lines"] = float(built.dialogue_lines)
    return out


def real_tokenizer() -> TextTokenizer | None:
    """The installed real model's tokenizer, when there is one (None otherwise)."""
    from moviechat_desktop.engine.errors import MovieChatError
    from moviechat_desktop.engine.model.tokenizer import HFTokenizer, load_tokenizer
    from moviechat_desktop.engine.weights import resolve_model_paths

    try:
        tokenizer = load_tokenizer(resolve_model_paths().llama_dir)
    except (MovieChatError, OSError):
        return None
    return tokenizer if isinstance(tokenizer, HFTokenizer) else None


def ask_with_dialogue(
    assistant: Any,
    generation: GenerationSettings,
    repeats: int,
    samples: dict[str, list[float]],
) -> dict[str, float]:
    """The film's questions again with generated subtitles added (prefix ``dialogue_``);
    the film's dialogue is switched off again afterwards (source "none")."""
    import tempfile

    from bench import engine_bench

    video = assistant.video
    with tempfile.TemporaryDirectory(prefix="moviechat-bench-") as folder:
        # dense enough to fill the context whatever the film's length (~400 lines)
        lines = film_dialogue(video.duration_s, every_s=max(0.01, video.duration_s / 400))
        assistant.set_dialogue_source("file", file=write_srt(lines, Path(folder) / "lines.srt"))
        try:
            out = engine_bench.ask_both(assistant, generation, repeats, samples, "dialogue_")
            half = round(video.duration_s * engine_bench.BREAKPOINT_AT, 3)
            for mode, at_s in (("global", None), ("breakpoint", half)):
                assistant.new_conversation()
                for _chunk in assistant.ask(engine_bench.GLOBAL_QUESTION, mode=mode, at_s=at_s,
                                            settings=generation):  # fmt: skip
                    pass
                info = assistant.last_answer
                out[f"dialogue_{mode}_lines"] = float(info.dialogue_lines)
                out[f"dialogue_{mode}_prompt_ms"] = 1000 * info.timings.get("prompt_s", 0.0)
        finally:
            assistant.set_dialogue_source("none")
    return out
