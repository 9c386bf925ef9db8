"""The ``ask`` and ``encode`` subcommands: the same ``Assistant`` path as the GUI."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from moviechat_desktop import cli_serve
from moviechat_desktop.engine.errors import MovieChatError
from moviechat_desktop.terminal_text import for_terminal, json_for_terminal


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ask = sub.add_parser(
        "ask",
        help="answer a question about a video",
        description=(
            "Answer a question about VIDEO. Without --at it is a question about the whole film "
            "(global mode); with --at it is about that moment (breakpoint mode). The answer "
            "streams to stdout; progress goes to stderr."
        ),
    )
    ask.add_argument("video")
    ask.add_argument("question")
    ask.add_argument(
        "--at",
        type=_at_time,
        help="breakpoint: HH:MM:SS, MM:SS or seconds (default: whole film)",
    )
    _common(ask)
    ask.add_argument("--greedy", action="store_true", help="greedy decoding (deterministic)")
    ask.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        metavar="N",
        help="answer length cap in tokens (the model's context decides the allowed range)",
    )
    ask.add_argument(
        "--subtitles",
        metavar="FILE",
        help="a subtitle file (.srt .ass .ssa .vtt .sub) whose lines the assistant reads",
    )
    ask.add_argument(
        "--no-dialogue",
        action="store_true",
        help="leave the film's dialogue (subtitles, recognised speech) out of the prompt",
    )
    ask.add_argument(
        "--continue",
        dest="continue_chat",
        action="store_true",
        help="continue the film's latest conversation (default: start a new one)",
    )
    ask.add_argument(
        "--on-server",
        action="store_true",
        help="VIDEO is a path on the server (e.g. a shared mount): the server reads the film "
        "itself and uses the memory 'encode --on-server' built (needs --server)",
    )
    ask.set_defaults(handler=run_ask)

    enc = sub.add_parser("encode", help="build a video's memory (progress bar on stderr)")
    enc.add_argument(
        "video",
        nargs="+",
        help="the film (with --on-server: files or folders as the server sees them)",
    )
    _common(enc)
    enc.add_argument(
        "--on-server",
        action="store_true",
        help="the VIDEO paths are on the server (e.g. a shared mount): it reads and encodes "
        "them itself, spread over its cluster (needs --server)",
    )
    enc.set_defaults(handler=run_encode)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-dir",
        help="a model directory laid out like tests/data/reference (default: installed weights)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="neither use nor update the film's cached memory (encode from scratch)",
    )
    cli_serve.add_server_options(parser)


class _Bar:
    """A tqdm progress bar on stderr, silent when stderr is not a terminal."""

    def __init__(self, total: int, desc: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=total,
            desc=desc,
            unit="frag",
            file=sys.stderr,
            leave=False,
            disable=not sys.stderr.isatty(),
        )

    def update(self, done: int) -> None:
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        self._bar.close()


def _open_and_encode(
    args: argparse.Namespace, until_s: float | None = None, check=None, before_open=None
):
    from moviechat_desktop.engine.progress import CancelToken

    timings: dict[str, float] = {}
    on_server = getattr(args, "on_server", False)
    if on_server and not args.server:
        _usage_error("--on-server needs --server (the path is the server's)")
    if on_server and getattr(args, "subtitles", None):
        _usage_error("--subtitles names a file here; with --on-server the server reads the film")
    assistant = cli_serve.make_engine(args)
    if assistant is not None:  # the server's: its settings live here and travel with each call
        _apply_flags(assistant.settings, args)
    else:
        assistant = _local_engine(args)
    if before_open is not None:
        before_open(assistant)
    t0 = time.perf_counter()
    subtitles = getattr(args, "subtitles", None)
    if on_server:
        info = assistant.open_on_server(args.video)
    elif subtitles is None:
        info = assistant.open(args.video)
    else:
        info = assistant.open(args.video, subtitles=subtitles)
    timings["open_s"] = time.perf_counter() - t0
    if not getattr(args, "continue_chat", False):
        assistant.new_conversation()
    if check is not None:
        check(info)
    t0 = time.perf_counter()
    assistant.load_model()
    timings["load_s"] = time.perf_counter() - t0
    cancel = CancelToken()
    status = assistant.status()
    bar = _Bar(status.fragments_total, "encoding")
    t0 = time.perf_counter()
    try:
        while not status.finished and not (until_s is not None and assistant.covers(until_s)):
            status = assistant.encode_step(cancel)
            bar.update(status.fragments_done)
    finally:
        bar.close()
    timings["encode_s"] = time.perf_counter() - t0
    if status.gaps:  # a film damaged in the middle: said once, the rest was watched
        from moviechat_desktop.engine.memory.gaps import describe_gaps

        print(
            f"moviechat-desktop: note: {describe_gaps(status.gaps)} of "
            f"{for_terminal(info.path.name)} could not be decoded (damaged) and was skipped",
            file=sys.stderr,
        )
    return assistant, info, status, timings


def _apply_flags(settings, args: argparse.Namespace) -> None:
    """The command's options that are settings (``AppSettings``), before any engine uses them."""
    if getattr(args, "no_dialogue", False):
        settings.dialogue.enabled = False
    if getattr(args, "greedy", False):
        settings.generation.greedy = True
    if getattr(args, "max_new_tokens", None) is not None:
        settings.generation.max_new_tokens = args.max_new_tokens


def _local_engine(args: argparse.Namespace):
    """The warm engine's session when it is on (``engine.keep_warm_s``; it keeps the model
    loaded between calls: service/warm_engine.py), else an ``Assistant`` in this process."""
    from moviechat_desktop.engine.settings import load_settings
    from moviechat_desktop.service.warm_engine import open_warm_engine

    settings = load_settings()
    _apply_flags(settings, args)
    model_dir = args.model_dir or settings.model.model_dir
    use_cache = not args.no_cache
    model_dir = os.path.abspath(model_dir) if model_dir else None
    engine = open_warm_engine(settings, model_dir, use_cache, on_wait=_say_waiting)
    if engine is not None:  # its working directory is not ours
        args.video = os.path.abspath(args.video)
        if getattr(args, "subtitles", None):
            args.subtitles = os.path.abspath(args.subtitles)
        return engine
    from moviechat_desktop.engine.assistant import Assistant

    return Assistant(settings=settings, model_dir=args.model_dir, use_cache=use_cache)


def _say_waiting() -> None:
    print(
        "moviechat-desktop: waiting for the warm engine (another call is using it)…",
        file=sys.stderr,
        flush=True,
    )


def _model_was_warm(assistant) -> bool:
    """True when the warm engine had the model loaded before this call."""
    return bool(getattr(assistant, "model_was_warm", False))


def _usage_error(message: str) -> None:
    from moviechat_desktop.cli import EXIT_USAGE

    print(f"moviechat-desktop: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _encode_on_server(args: argparse.Namespace) -> int:
    """``encode --server URL --on-server PATH...``: a library job on the server."""
    if not args.server:
        _usage_error("--on-server needs --server (the paths are the server's)")
    if args.model_dir:
        _usage_error("--model-dir is the server's business: it cannot be combined with --server")
    if args.no_cache:
        _usage_error(
            "--no-cache cannot be combined with --on-server (the job builds the server's "
            "cached memories)"
        )
    from moviechat_desktop.cli_library_job import run_library_job

    return run_library_job(args)


def _at_time(text: str) -> float:
    """``--at``'s type: a malformed time is a usage error (exit 2), before any file opens."""
    from moviechat_desktop.timefmt import parse_time

    try:
        return parse_time(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(for_terminal(str(err))) from None


def run_ask(args: argparse.Namespace) -> int:
    from moviechat_desktop.engine.assistant import END_SLACK_S
    from moviechat_desktop.engine.errors import VideoError
    from moviechat_desktop.engine.video.probe import format_time

    at_s = args.at  # already parsed and checked by argparse (_at_time)
    if not args.question.strip():
        raise MovieChatError("the question is empty")

    def before_open(assistant) -> None:  # a usage error before any film opens or weights load
        if args.max_new_tokens is not None:
            _check_answer_length(args, assistant)

    def check(info) -> None:  # before any encoding: fail fast
        if at_s is not None and at_s > info.duration_s + END_SLACK_S:
            raise VideoError(
                f"--at {format_time(at_s)} lies beyond the end of the film "
                f"({format_time(info.duration_s)})"
            )

    assistant, info, status, timings = _open_and_encode(
        args, until_s=at_s, check=check, before_open=before_open
    )
    with contextlib.closing(assistant):  # releases the film's cache entry and files
        _recognise_speech(assistant, info.duration_s if at_s is None else at_s, timings)
        mode = "global" if at_s is None else "breakpoint"
        chunks = []
        # the answer's settings: the user's [generation] with --greedy/--max-new-tokens
        for chunk in assistant.ask(args.question, mode=mode, at_s=at_s):
            chunks.append(chunk)
            if not args.json:
                sys.stdout.write(for_terminal(chunk, keep_newlines=True))
                sys.stdout.flush()
        answer_info = assistant.last_answer
        if not args.json:
            sys.stdout.write("\n")
            return 0
        # first_token_s: the decoder's first token; first_text_s: the first text shown (the
        # streamer holds back what could still become the stop string, whitespace, half a
        # character, so it can come much later)
        timings["first_token_s"] = answer_info.first_token_s or 0.0
        timings["first_text_s"] = answer_info.first_text_s or answer_info.answer_s
        timings["answer_s"] = answer_info.answer_s
        timings.update(answer_info.timings)
        print(
            json_for_terminal(
                {
                    "answer": "".join(chunks).strip(),
                    "mode": mode,
                    "at_s": at_s,
                    "question": args.question,
                    "video": str(info.path),
                    "duration_s": info.duration_s,
                    "frames_sampled": status.frames_done,
                    "fragments_encoded": status.fragments_done,
                    "memory_frames": answer_info.memory_frames,
                    "cache_hit": assistant.cache_restored > 0,
                    "fragments_from_cache": assistant.cache_restored,
                    "device": assistant.device_label,
                    "engine": "server" if args.server else "local",
                    "warm": _model_was_warm(assistant),
                    "greedy": assistant.settings.generation.greedy,
                    "gaps": [list(g) for g in answer_info.gaps],
                    "dialogue_source": answer_info.dialogue_source,
                    "dialogue_lines": answer_info.dialogue_lines,
                    "prompt": answer_info.prompt,
                    "timings": {k: round(v, 4) for k, v in timings.items()},
                },
            )
        )
        return 0


def _check_answer_length(args: argparse.Namespace, assistant) -> None:
    """``--max-new-tokens`` outside what fits beside the video and the fixed prompt in the
    decoder's context: a usage error (exit 2), decided from the model's config and tokenizer
    files before any film is opened or weights are loaded."""
    from moviechat_desktop.cli import EXIT_USAGE

    if args.server:  # the server's model has the exact limit: it refuses more, saying it
        from moviechat_desktop.engine.model.llm import GenerationSettings

        limit, whose = GenerationSettings().max_length - 1, "the decoder's context"
    else:
        limit, whose = assistant.answer_length_limit(), "this model"
    if not 1 <= args.max_new_tokens <= limit:
        print(
            f"moviechat-desktop: error: --max-new-tokens {args.max_new_tokens} is out of range: "
            f"{whose} takes 1 to {limit} (its context is shared with the video and the "
            "prompt)",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_USAGE)


def _recognise_speech(assistant, until_s: float, timings: dict[str, float]) -> None:
    """When recognised speech is the film's dialogue: recognise it up to ``until_s`` (the
    breakpoint, or the film's end) before asking, with a progress bar."""
    from moviechat_desktop.engine.errors import DialogueError
    from moviechat_desktop.engine.progress import CancelToken

    status = assistant.status()
    if not status.speech_pending or status.speech_total_s <= 0:
        return
    cancel = CancelToken()
    bar = _Bar(round(status.speech_total_s), "recognising speech")
    t0 = time.perf_counter()
    try:
        while status.speech_pending and status.speech_done_s < until_s:
            if not assistant.dialogue_step(cancel):
                break
            status = assistant.status()
            bar.update(round(status.speech_done_s))
    except DialogueError as err:  # the audio cannot be decoded: answer with what there is
        print(f"moviechat-desktop: warning: {for_terminal(str(err))}", file=sys.stderr)
    finally:
        bar.close()
    timings["speech_s"] = time.perf_counter() - t0


def run_encode(args: argparse.Namespace) -> int:
    from moviechat_desktop.cli_dialogue import recognise_speech

    if args.on_server:
        return _encode_on_server(args)
    if len(args.video) > 1:
        _usage_error("one VIDEO at a time (several films or folders: --on-server)")
    args.video = args.video[0]
    assistant, info, status, timings = _open_and_encode(args)
    with contextlib.closing(assistant):  # releases the film's cache entry and files
        speech_error = recognise_speech(assistant)  # when speech is the film's dialogue source
        if speech_error:
            msg = f"moviechat-desktop: speech recognition stopped: {for_terminal(speech_error)}"
            print(msg, file=sys.stderr)
        if args.json:
            print(
                json_for_terminal(
                    {
                        "video": str(info.path),
                        "duration_s": info.duration_s,
                        "frames_sampled": status.frames_done,
                        "fragments_encoded": status.fragments_done,
                        "covered": status.covered,
                        "gaps": status.gaps,
                        "cache_hit": assistant.cache_restored > 0,
                        "fragments_from_cache": assistant.cache_restored,
                        "device": assistant.device_label,
                        "engine": "server" if args.server else "local",
                        "warm": _model_was_warm(assistant),
                        "timings": {k: round(v, 4) for k, v in timings.items()},
                    },
                )
            )
        else:
            cached = assistant.cache_restored
            note = f" ({cached} fragments from the cache)" if cached else ""
            print(
                f"encoded {status.frames_done} frames in {status.fragments_done} fragments "
                f"of {for_terminal(info.path.name)} in {timings['encode_s']:.1f} s "
                f"on {assistant.device_label}"
                f"{note}"
            )
        return 0
