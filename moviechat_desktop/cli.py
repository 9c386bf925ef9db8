"""Command line: ``moviechat-desktop [VIDEO]`` opens the player; subcommands work headless.

    moviechat-desktop [VIDEO]                       open the GUI (optionally with a film)
    moviechat-desktop ask VIDEO "QUESTION" [--at T] answer a question from the terminal
    moviechat-desktop encode VIDEO                  build the film's memory (progress bar)
    moviechat-desktop weights status|download|verify|import
    moviechat-desktop cache status|clear            the films' cached memories
    moviechat-desktop transcript VIDEO [--json]     the film's dialogue (subtitles or speech)
    moviechat-desktop serve [--host H --port P]     the engine as a server (Ray Serve)
    moviechat-desktop engine status|stop            the warm engine ask/encode keep loaded

Every failure is one line on stderr and a non-zero exit status. Heavy imports (torch,
transformers, Qt) happen inside the command that needs them, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from moviechat_desktop import __version__
from moviechat_desktop.runtime_env import prefer_passive_openmp

SUBCOMMANDS = ("ask", "encode", "weights", "cache", "serve", "transcript", "engine")
# the commands that may end without the interpreter's teardown (not serve: Ray's own exit
# handlers must run)
QUICK_EXIT_COMMANDS = ("ask", "encode", "weights", "transcript")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 130


def _gui_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moviechat-desktop",
        description=(
            "A video player with an assistant that has watched the film with you. "
            "Without a subcommand it opens the player window."
        ),
        epilog=(
            "subcommands (run 'moviechat-desktop COMMAND --help' for their options):\n"
            "  ask       answer a question about a video from the terminal\n"
            "  encode    build a video's memory ahead of time\n"
            "  weights   show, download, verify or import the model weights\n"
            "  cache     show or clear the films' cached memories\n"
            "  serve     run the engine as a server for other computers (Ray Serve)\n"
            "  transcript  print a film's dialogue (subtitles, or recognised speech)\n"
            "  engine    show or stop the warm engine (the model ask/encode keep loaded)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("video", nargs="?", help="a video file to open")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    return parser


def _command_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moviechat-desktop")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    from moviechat_desktop import cli_cache, cli_engine, cli_serve, cli_weights

    cli_engine.add_parsers(sub)
    cli_weights.add_parsers(sub)
    cli_cache.add_parsers(sub)
    cli_serve.add_parser(sub)
    from moviechat_desktop import cli_dialogue

    cli_dialogue.add_parsers(sub)
    from moviechat_desktop import cli_warm_engine

    cli_warm_engine.add_parsers(sub)
    return parser


def configure_logging(verbose: bool) -> None:
    """Log to stderr, with control characters in the messages escaped (``for_terminal``)."""
    from moviechat_desktop.terminal_text import TerminalLogFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(TerminalLogFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler])


def main(argv: Sequence[str] | None = None) -> int:
    prefer_passive_openmp()  # before anything imports torch
    args_list = list(sys.argv[1:] if argv is None else argv)
    command_mode = bool(args_list) and args_list[0] in SUBCOMMANDS
    if not command_mode and any(a in SUBCOMMANDS for a in args_list[:2]):
        # `moviechat-desktop -v ask …`: options before the subcommand
        command_mode = args_list[0].startswith("-")
    parser = _command_parser() if command_mode else _gui_parser()
    args = parser.parse_args(args_list)
    configure_logging(args.verbose)
    if not command_mode:
        from moviechat_desktop.app import run_gui

        return run_gui(args.video)

    status = _run_command(args)
    if argv is None and args.command in QUICK_EXIT_COMMANDS:  # run as the program
        from moviechat_desktop.quick_exit import finish

        return finish(status)  # skips the ~1 s teardown of torch & co. (quick_exit.py)
    return status


def _run_command(args: argparse.Namespace) -> int:
    from moviechat_desktop.engine.errors import Cancelled, MovieChatError

    try:
        return int(args.handler(args) or EXIT_OK)
    except Cancelled:
        print("moviechat-desktop: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        print("moviechat-desktop: interrupted", file=sys.stderr)
        return EXIT_CANCELLED
    except MovieChatError as err:
        from moviechat_desktop.terminal_text import for_terminal

        print(f"moviechat-desktop: error: {for_terminal(str(err))}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
