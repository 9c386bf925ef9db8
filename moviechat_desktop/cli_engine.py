"""The ``ask`` and ``encode`` subcommands: the same engine path as the GUI."""

from __future__ import annotations

import argparse

from moviechat_desktop.engine.errors import WeightsMissing


def add_parsers(sub: argparse._SubParsersAction) -> None:
    ask = sub.add_parser("ask", help="answer a question about a video")
    ask.add_argument("video")
    ask.add_argument("question")
    ask.add_argument("--at", help="breakpoint: HH:MM:SS, MM:SS or seconds (default: whole film)")
    ask.add_argument("--model-dir", help="a model directory laid out like the reference set")
    ask.add_argument("--greedy", action="store_true", help="greedy decoding (deterministic)")
    ask.add_argument("--max-new-tokens", type=int, default=None)
    ask.add_argument("--json", action="store_true", help="print one JSON object at the end")
    ask.set_defaults(handler=_not_yet)

    enc = sub.add_parser("encode", help="build a video's memory")
    enc.add_argument("video")
    enc.add_argument("--model-dir", help="a model directory laid out like the reference set")
    enc.add_argument("--json", action="store_true")
    enc.set_defaults(handler=_not_yet)


def _not_yet(args: argparse.Namespace) -> int:
    raise WeightsMissing("the engine is not built yet")
