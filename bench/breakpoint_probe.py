"""The first breakpoint question anywhere in a long film: time to its first token.

    .venv/bin/python -m bench.breakpoint_probe [--film PATH] [--model-dir D] [--points N]
        [--typing-s S] [--no-prepare]

Issue 16's target: ≤ 100 ms to the first token with the test model, wherever the user pauses
in a 2-hour film. Each point is a *film's first* breakpoint question, as a user meets it: the
film is closed and opened again (its memory comes from the cache, encoded once at the start)
and plays until its full-size frame reader is open (``GrabberOpener``, timed as "reader");
the user pauses at the point — the app then prepares the picture there
(``prepare_breakpoint``: decoded and encoded, timed as "prepare") — and types for
``--typing-s`` seconds; then the breakpoint question is asked. "first token" is from the
question to the decoder's first token (``TokenClock``), plus whatever of the preparing was
still going on when the question came (the question waits for it, as in the app).
``--no-prepare`` measures the question alone doing the decoding (the CLI's ``ask --at``, a
question asked while the film plays). One greedy token per answer. User dirs point into a
temporary dir (``BenchDirs``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from bench.engine_bench import BREAKPOINT_QUESTION, TokenClock, new_assistant
from bench.films import long_film
from bench.userdirs import BenchDirs
from moviechat_desktop.engine.model.llm import GenerationSettings
from moviechat_desktop.engine.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "reference"
TYPING_PAUSE_S = 1.0


def probe(
    film: Path, model_dir: Path, points: int, typing_s: float, prepare: bool
) -> list[dict[str, float]]:
    settings = load_settings()
    settings.model.model_dir = str(model_dir)
    generation = GenerationSettings(greedy=True, max_new_tokens=1)
    assistant = new_assistant(settings)
    assistant.load_model()
    assistant.open(film)
    assistant.encode()  # the memory, once; every later open takes it from the cache
    duration = assistant.video.duration_s
    rows = []
    try:
        for k in range(points):
            at_s = round(duration * (k + 0.5) / points, 3)
            assistant.close()
            opened = time.perf_counter()
            assistant.open(film)
            open_s = time.perf_counter() - opened
            assistant._grabber.get()  # the film plays until its full-size reader is open
            reader_s = time.perf_counter() - opened - open_s
            paused = time.perf_counter()
            if prepare:
                assistant.prepare_breakpoint(at_s)
            prepare_s = time.perf_counter() - paused
            time.sleep(max(0.0, typing_s - prepare_s))
            waited = max(0.0, prepare_s - typing_s)  # the question queued behind the preparing
            clock = TokenClock(assistant.model.llm.hf)
            try:
                start = time.perf_counter()
                for _chunk in assistant.ask(
                    BREAKPOINT_QUESTION, mode="breakpoint", at_s=at_s, settings=generation
                ):
                    pass
                first = clock.times[0] - start + waited
            finally:
                clock.close()
            frame_s = assistant.last_answer.timings.get("current_frame_s", float("nan"))
            row = {
                "at_s": at_s,
                "open_s": open_s,
                "reader_s": reader_s,
                "prepare_s": prepare_s,
                "first_token_s": first,
                "frame_s": frame_s,
            }
            rows.append(row)
    finally:
        assistant.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--film", type=Path, help="default: the bench's generated 2-hour film")
    parser.add_argument("--model-dir", type=Path, default=TINY)
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--typing-s", type=float, default=TYPING_PAUSE_S)
    parser.add_argument("--no-prepare", action="store_true")
    args = parser.parse_args()
    film = args.film or long_film()
    load_before = os.getloadavg()[0]
    with BenchDirs():
        rows = probe(film, args.model_dir, args.points, args.typing_s, not args.no_prepare)
    load_after = os.getloadavg()[0]
    how = "no preparing" if args.no_prepare else "prepared at the pause"
    print(
        f"{film.name}: the film's first breakpoint question, {len(rows)} points, {how}, "
        f"typing {args.typing_s:.1f} s"
    )
    print(
        f"{'at':>10} {'reopen s':>9} {'reader s':>9} {'prepare ms':>11} {'question grab ms':>17} "
        f"{'first token ms':>15}"
    )
    for row in rows:
        print(
            f"{row['at_s']:>10.1f} {row['open_s']:>9.3f} {row['reader_s']:>9.3f} "
            f"{row['prepare_s'] * 1000:>11.1f} {row['frame_s'] * 1000:>17.1f} "
            f"{row['first_token_s'] * 1000:>15.1f}"
        )
    firsts = [row["first_token_s"] * 1000 for row in rows]
    print(f"first token: median {statistics.median(firsts):.1f} ms, max {max(firsts):.1f} ms")
    print(f"load average: {load_before:.1f} before, {load_after:.1f} after")


if __name__ == "__main__":
    main()
