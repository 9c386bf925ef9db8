"""The ``engine`` subcommand: ``engine status`` and ``engine stop`` for the warm engine that
``ask`` and ``encode`` keep loaded between calls (``service/warm_engine.py``)."""

from __future__ import annotations

import argparse
import json
import time

from moviechat_desktop.terminal_text import for_terminal


def add_parsers(sub: argparse._SubParsersAction) -> None:
    engine = sub.add_parser(
        "engine",
        help="show or stop the warm engine that keeps the model loaded between calls",
        description=(
            "ask and encode keep their engine, with the model loaded, in a background process "
            "for engine.keep_warm_s seconds (default 300; $MOVIECHAT_KEEP_WARM_S overrides it, "
            "0 turns it off) after their last call. 'status' shows it, 'stop' ends it now."
        ),
    )
    actions = engine.add_subparsers(dest="engine_action", metavar="{status,stop}", required=True)
    status = actions.add_parser("status", help="is one running: pid, model, idle time, socket")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=run_status)
    stop = actions.add_parser("stop", help="stop it (the call it is serving is cancelled)")
    stop.add_argument("--json", action="store_true", help="print one JSON object")
    stop.set_defaults(handler=run_stop)


def _place_or_reason():
    from moviechat_desktop.service.warm_engine_paths import WarmEngineRefused

    try:
        from moviechat_desktop.service.warm_engine_paths import warm_engine_place

        return warm_engine_place(), None
    except WarmEngineRefused as err:
        return None, str(err)


def run_status(args: argparse.Namespace) -> int:
    from moviechat_desktop.engine.settings import load_settings
    from moviechat_desktop.service.warm_engine import engine_status
    from moviechat_desktop.service.warm_engine_paths import keep_warm_seconds

    keep_warm_s = keep_warm_seconds(load_settings())
    place, reason = _place_or_reason()
    described = None
    if place is not None:
        place, described = engine_status()
    if args.json:
        print(
            json.dumps(
                {
                    "running": described is not None,
                    "keep_warm_s": keep_warm_s,
                    "socket": str(place.socket) if place else None,
                    "unavailable": reason,
                    "engine": described,
                }
            )
        )
        return 0
    if reason is not None:
        print(f"no warm engine can run here: {for_terminal(reason)}")
    elif described is None:
        off = " (off: engine.keep_warm_s is 0)" if keep_warm_s == 0 else ""
        print(f"no warm engine is running{off}")
        print(f"  socket   {for_terminal(str(place.socket))}")
    else:
        print(_describe(described))
    return 0


def _describe(d: dict) -> str:
    model = d.get("model")
    if model is None:
        loaded = "none loaded yet"
    else:
        loaded = f"{model['model_dir']} on {model['device']} (loaded in {model['load_s']:.1f} s)"
    if d["busy"]:
        state = "answering a call" + (f", {d['waiting']} waiting" if d["waiting"] else "")
    else:
        left = max(0.0, d["keep_warm_s"] - d["idle_s"])
        state = f"idle for {d['idle_s']:.0f} s (exits in {left:.0f} s)"
    up = time.time() - d["started"]
    lines = [
        f"warm engine running, pid {d['pid']}, up {up:.0f} s, {d['sessions']} calls served",
        f"  model    {for_terminal(loaded)}",
        f"  state    {state}",
        f"  socket   {for_terminal(d['socket'])}",
    ]
    return "\n".join(lines)


def run_stop(args: argparse.Namespace) -> int:
    from moviechat_desktop.service.warm_engine import stop_engine

    place, reason = _place_or_reason()
    described = None
    if place is not None:
        place, described = stop_engine()
    if args.json:
        print(json.dumps({"was_running": described is not None, "engine": described}))
    elif described is None:
        print(
            "no warm engine was running"
            if reason is None
            else f"no warm engine: {for_terminal(reason)}"
        )
    else:
        print(f"stopped the warm engine (pid {described['pid']})")
    return 0
