"""The ``transcript`` subcommand: the film's dialogue as the assistant reads it.

    moviechat-desktop transcript FILM [--subtitles FILE] [--source S] [--track N] [--json]

Prints every cleaned line of the chosen source (the same choice the assistant makes: see
``engine/dialogue/film_dialogue.py``), one per line as ``[mm:ss] text``; with speech as the
source it recognises the whole film first (progress bar on stderr when it is a terminal;
resumable: recognised chunks are cached). ``--json`` prints one object:
``{"source", "label", "lines": [{"start_s", "end_s", "text"}…]}``. Failures are one line and
exit status 1 (``cli.py``).
"""

from __future__ import annotations

import argparse
import sys

from moviechat_desktop.engine.errors import DialogueError
from moviechat_desktop.terminal_text import for_terminal, json_for_terminal

SOURCE_CHOICES = ("auto", "file", "sidecar", "embedded", "speech", "none")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "transcript",
        help="print a film's dialogue (subtitles, or speech recognised from its audio)",
        description=(
            "Print the dialogue of FILM as the assistant reads it: a subtitle file you name, "
            "a subtitle file next to the film, the film's own text subtitle track, or speech "
            "recognised from its audio (slow; cached and resumable)."
        ),
    )
    parser.add_argument("film")
    parser.add_argument("--subtitles", metavar="FILE", help="use this subtitle file")
    parser.add_argument(
        "--source",
        choices=SOURCE_CHOICES,
        default=None,
        help="where the dialogue comes from (default: the settings' choice, normally auto)",
    )
    parser.add_argument(
        "--track",
        type=int,
        metavar="N",
        help="the film's subtitle track N (1 = the first, as players number them)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(handler=run_transcript)


class _SpeechBar:
    """Seconds of the film recognised, as a tqdm bar on stderr (silent when not a terminal)."""

    def __init__(self, total_s: float) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=round(total_s),
            desc="recognising speech",
            unit="s",
            file=sys.stderr,
            leave=False,
            disable=not sys.stderr.isatty(),
        )

    def update(self, done_s: float) -> None:
        self._bar.update(round(done_s) - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def recognise_speech(assistant) -> str | None:
    """Run speech recognition to the end when speech is the film's dialogue source (progress
    bar; Ctrl-C cancels, keeping what was recognised); the reason it stopped early, or None."""
    from moviechat_desktop.cli_weights import _ctrl_c_cancels
    from moviechat_desktop.engine.progress import CancelToken

    if not hasattr(assistant, "dialogue_step") or not assistant.status().speech_pending:
        return None
    cancel = CancelToken()
    bar = _SpeechBar(assistant.status().speech_total_s)
    try:
        with _ctrl_c_cancels(cancel):
            while True:
                try:
                    if not assistant.dialogue_step(cancel):
                        break
                except DialogueError:
                    break  # kept in the status as speech_error
                bar.update(assistant.status().speech_done_s)
    finally:
        bar.close()
    return assistant.status().speech_error


def run_transcript(args: argparse.Namespace) -> int:
    from moviechat_desktop.engine.assistant import Assistant

    if args.track is not None and args.track < 1:
        print("moviechat-desktop: error: --track counts from 1", file=sys.stderr)
        return 2
    assistant = Assistant(use_cache=False, keep_history=False)
    assistant.open(args.film, subtitles=args.subtitles)
    if args.source is not None or args.track is not None:
        source = args.source or ("embedded" if args.track is not None else "auto")
        track = None if args.track is None else args.track - 1
        assistant.set_dialogue_source(source, track=track)
    error = recognise_speech(assistant)
    if error:
        raise DialogueError(error)
    dialogue = assistant.dialogue
    if args.json:
        lines = [
            {"start_s": round(line.start_s, 3), "end_s": round(line.end_s, 3), "text": line.text}
            for line in dialogue.lines
        ]
        print(
            json_for_terminal({"source": dialogue.source, "label": dialogue.label, "lines": lines})
        )
        return 0
    if not dialogue.lines:
        raise DialogueError(dialogue.label)
    print(for_terminal(dialogue.label))
    _print_lines(dialogue.lines, assistant.video.duration_s if assistant.video else 0.0)
    return 0


def _print_lines(lines, duration_s: float) -> None:
    from moviechat_desktop.timefmt import format_time

    hours = duration_s >= 3600
    for line in lines:
        who = f"{line.speaker}: " if line.speaker else ""
        stamp = f"[{format_time(line.start_s, hours=hours)}] "
        text = for_terminal(who + line.text, keep_newlines=True)
        sys.stdout.write(stamp + text.replace("\n", "\n" + " " * len(stamp)) + "\n")
