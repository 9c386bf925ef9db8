"""The ``cache`` subcommand: show or clear the films' cached memories.

    moviechat-desktop cache status [--json]   what is cached, how big, the limit
    moviechat-desktop cache clear [--json]    delete every cached memory not in use

Chat histories are not touched: they live in the user data dir, not the cache.
"""

from __future__ import annotations

import argparse
import json
import time

from moviechat_desktop.terminal_text import for_terminal, json_for_terminal


def add_parsers(sub: argparse._SubParsersAction) -> None:
    cache = sub.add_parser(
        "cache",
        help="show or clear the films' cached memories",
        description=(
            "Each encoded film's memory is cached so reopening it needs no encoding. "
            "'status' lists the cache; 'clear' deletes it (chat histories are kept)."
        ),
    )
    actions = cache.add_subparsers(dest="cache_command", required=True)
    status = actions.add_parser("status", help="list the cached films and the size limit")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=run_status)
    clear = actions.add_parser("clear", help="delete every cached memory not in use")
    clear.add_argument("--json", action="store_true", help="print one JSON object")
    clear.set_defaults(handler=run_clear)


def _cache():
    from moviechat_desktop.engine.settings import load_settings
    from moviechat_desktop.engine.store.film_cache import FilmCache

    return FilmCache.from_settings(load_settings().cache)


def run_status(args: argparse.Namespace) -> int:
    from moviechat_desktop.engine.weights.manifest import format_bytes as _size

    cache = _cache()
    summary = cache.status_summary()
    if args.json:
        print(json_for_terminal(summary))
        return 0
    entries = summary["entries"]
    print(
        f"memory cache: {for_terminal(str(summary['root']))}\n"
        f"{len(entries)} item(s), {_size(summary['total_bytes'])} of a "
        f"{_size(summary['limit_bytes'] or 0)} limit"
    )
    for e in reversed(entries):  # most recently used first
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e["last_used"]))
        what = "(corrupt, moved aside)" if e["corrupt"] else e["film"] or e["name"]
        done = f"{e['fragments_done']}/{e['fragments_total']} fragments"
        print(f"  {for_terminal(str(what))}  {done}  {_size(e['bytes'])}  last used {when}")
    return 0


def run_clear(args: argparse.Namespace) -> int:
    from moviechat_desktop.engine.weights.manifest import format_bytes as _size

    result = _cache().clear()
    if args.json:
        print(
            json.dumps(
                {
                    "removed": result.removed,
                    "freed_bytes": result.freed_bytes,
                    "kept_in_use": result.kept_in_use,
                }
            )
        )
        return 0
    kept = f"; {result.kept_in_use} in use kept" if result.kept_in_use else ""
    print(f"removed {result.removed} cached memories, {_size(result.freed_bytes)} freed{kept}")
    return 0
