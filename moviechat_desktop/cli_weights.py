"""The ``weights`` subcommand: status, download, verify, import."""

from __future__ import annotations

import argparse

from moviechat_desktop.engine.errors import WeightsMissing


def add_parsers(sub: argparse._SubParsersAction) -> None:
    weights = sub.add_parser("weights", help="show, download, verify or import model weights")
    weights.add_argument("action", choices=["status", "download", "verify", "import"])
    weights.add_argument("path", nargs="?")
    weights.add_argument("--json", action="store_true")
    weights.set_defaults(handler=_not_yet)


def _not_yet(args: argparse.Namespace) -> int:
    raise WeightsMissing("weights management is not built yet")
