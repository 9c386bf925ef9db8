"""The ``weights`` subcommand: status, download, verify, import.

    moviechat-desktop weights status [--json]
    moviechat-desktop weights download [--part ID ...] [--json]
    moviechat-desktop weights verify [--part ID ...] [--json]
    moviechat-desktop weights import PATH [--part ID] [--json]

Progress bars go to stderr (tqdm); ``--json`` prints one JSON object on stdout instead of the
human-readable report. Failures raise ``MovieChatError`` subclasses, which ``cli.py`` prints as
one line with exit status 1. Ctrl-C during a download cancels it cleanly (partial downloads
are kept and resume next time); a second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from moviechat_desktop.engine.errors import WeightsCorrupt, WeightsMissing
from moviechat_desktop.terminal_text import for_terminal

_STATE_WORDS = {
    "ready": "installed",
    "unconverted": "installed (.pth, not converted yet)",
    "partial": "partly downloaded",
    "missing": "missing",
    "invalid": "FAILED CHECK",
}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    weights = sub.add_parser(
        "weights",
        help="show, download, verify or import model weights",
        description="Manage the real MovieChat model weights (about 16 GB from four sources).",
    )
    actions = weights.add_subparsers(dest="action", required=True, metavar="ACTION")

    status = actions.add_parser("status", help="what is installed, where, and what is missing")
    status.set_defaults(handler=_status)

    download = actions.add_parser("download", help="download, verify and convert missing parts")
    download.add_argument(
        "--part", action="append", metavar="ID", help="only this part (repeatable)"
    )
    download.set_defaults(handler=_download)

    verify = actions.add_parser("verify", help="re-hash and re-check every installed part")
    verify.add_argument("--part", action="append", metavar="ID", help="only this part (repeatable)")
    verify.set_defaults(handler=_verify)

    imp = actions.add_parser("import", help="use local weight files or directories in place")
    imp.add_argument("path", help="a checkpoint file, a model directory, or a folder holding them")
    imp.add_argument("--part", metavar="ID", help="the part PATH is (default: detect it)")
    imp.set_defaults(handler=_import)

    for parser in (status, download, verify, imp):
        parser.add_argument("--json", action="store_true", help="print one JSON object")


def _say(text: str) -> None:
    """Print one line of the report: paths, file names and details come from outside
    (``for_terminal`` escapes their control characters)."""
    print(for_terminal(text))


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _whisper_alias(part_ids: list[str] | None) -> list[str] | None:
    """``whisper`` names the speech model chosen in the settings (``whisper-small`` by default)."""
    if not part_ids or "whisper" not in part_ids:
        return part_ids
    from moviechat_desktop.engine.dialogue.speech import SIZES
    from moviechat_desktop.engine.settings import load_settings

    chosen = load_settings().dialogue.speech_model
    size = chosen if chosen in SIZES else "small"
    return [f"whisper-{size}" if p == "whisper" else p for p in part_ids]


def _optional_report(manifest: Any) -> list[dict[str, Any]]:
    from moviechat_desktop.engine.weights.status import part_status

    return [part_status(part).as_dict() for part in getattr(manifest, "optional", ())]


def _status_report(manifest: Any, statuses: list[Any]) -> dict[str, Any]:
    from moviechat_desktop.engine.weights import free_bytes, is_offline

    folders = sorted({str(s.destination) for s in statuses})
    return {
        "manifest": manifest.origin,
        "ready": all(s.usable for s in statuses),
        "offline": is_offline(),
        "missing_bytes": sum(s.size - s.partial_bytes for s in statuses if not s.usable),
        "parts": [s.as_dict() for s in statuses],
        "optional": _optional_report(manifest),
        "destinations": [{"path": f, "free_bytes": free_bytes(f)} for f in folders],
    }


def _print_status(report: dict[str, Any]) -> None:
    from moviechat_desktop.engine.weights import format_bytes

    _say(f"MovieChat model weights ({report['manifest']})")
    for part in report["parts"]:
        size = ("" if part["size_exact"] else "~") + format_bytes(part["size"])
        state = _STATE_WORDS.get(part["state"], part["state"])
        if part["partial_bytes"] and not part["path"]:
            state += f" ({format_bytes(part['partial_bytes'])} so far)"
        where = part["path"] or part["destination"]
        _say(f"  {part['title'][:44]:<44} {size:>9}  {state}")
        _say(f"  {'':<44} {'':>9}  {part['origin'] or 'goes to'}: {where}")
        if part["detail"] and part["state"] == "invalid":
            _say(f"  {'':<44} {'':>9}  {part['detail']}")
    if report.get("optional"):
        print("Optional: speech recognition (`weights download --part whisper-SIZE`)")
        for part in report["optional"]:
            size = ("" if part["size_exact"] else "~") + format_bytes(part["size"])
            state = _STATE_WORDS.get(part["state"], part["state"])
            where = f"  {part['path']}" if part["path"] else ""
            print(f"  {part['id']:<44} {size:>9}  {state}{where}")
    for dest in report["destinations"]:
        _say(f"Free disk space: {format_bytes(dest['free_bytes'])} in {dest['path']}")
    if report["offline"]:
        _say("Offline mode is on (HF_HUB_OFFLINE): downloads are disabled.")
    if report["ready"]:
        _say("All parts are installed.")
    else:
        _say(
            f"Not ready: run `moviechat-desktop weights download` "
            f"(about {format_bytes(report['missing_bytes'])}) or `moviechat-desktop weights "
            "import PATH` to use files you already have."
        )


def _status(args: argparse.Namespace) -> int:
    from moviechat_desktop.engine.weights import load_manifest, weights_status

    manifest = load_manifest()
    report = _status_report(manifest, weights_status(manifest))
    _print_json(report) if args.json else _print_status(report)
    return 0


PLAIN_INTERVAL_S = 5.0  # a plain progress line this often when stderr is not a terminal


class _Bars:
    """One tqdm bar per (part, phase), fed by the engine's progress callback; when stderr is
    not a terminal (a log file, a pipe, CI), a plain line every few seconds instead."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.terminal = sys.stderr.isatty()
        self._bars: dict[tuple[str, str], Any] = {}
        self._printed: dict[tuple[str, str], tuple[float, bool]] = {}  # when, finished
        self._lock = threading.Lock()

    def _plain(self, progress: Any) -> None:
        from moviechat_desktop.engine.weights import format_bytes

        key = (progress.part, progress.phase)
        finished = progress.total is not None and progress.done >= progress.total
        now = time.monotonic()
        with self._lock:
            last = self._printed.get(key)
            due = last is None or now - last[0] >= PLAIN_INTERVAL_S or (finished and not last[1])
            if not due or (last is not None and last[1]):
                return
            self._printed[key] = (now, finished)
        if progress.phase == "convert":
            amount = "converting" if not finished else "converted"
        elif progress.total:
            amount = (
                f"{format_bytes(progress.done)} of {format_bytes(progress.total)} "
                f"({100 * progress.done // progress.total}%)"
            )
        else:
            amount = format_bytes(progress.done)
        if progress.phase != "convert" and progress.rate and not finished:
            amount += f", {format_bytes(int(progress.rate))}/s"
            if progress.eta_s is not None:
                amount += f", about {int(progress.eta_s) + 1} s left"
        line = f"{progress.part} {progress.phase}: {amount}"
        print(for_terminal(line), file=sys.stderr, flush=True)

    def __call__(self, progress: Any) -> None:
        if not self.enabled or progress.phase == "done":
            return
        if not self.terminal:
            self._plain(progress)
            return
        from tqdm import tqdm

        key = (progress.part, progress.phase)
        with self._lock:
            bar = self._bars.get(key)
            if bar is None:
                for other in self._bars.values():
                    other.close()
                unit = {"unit": "B", "unit_scale": True, "unit_divisor": 1000}
                if progress.phase == "convert":
                    unit = {"unit": "step"}
                desc = f"{progress.part} {progress.phase}"
                bar = self._bars[key] = tqdm(total=progress.total, desc=desc, leave=True, **unit)
            if progress.total is not None and bar.total != progress.total:
                bar.total = progress.total
            bar.update(progress.done - bar.n)

    def close(self) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()


@contextlib.contextmanager
def _ctrl_c_cancels(token: Any) -> Iterator[None]:
    """First Ctrl-C cancels through the token (clean stop); the second one interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        print("\ncancelling… (Ctrl-C again to stop at once)", file=sys.stderr)
        token.cancel()

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _download(args: argparse.Namespace) -> int:
    from moviechat_desktop.engine.progress import CancelToken
    from moviechat_desktop.engine.weights import download_weights, load_manifest, weights_status

    manifest = load_manifest()
    token = CancelToken()
    bars = _Bars(enabled=not args.json)
    try:
        with _ctrl_c_cancels(token):
            download_weights(
                _whisper_alias(args.part), manifest=manifest, progress=bars, cancel=token
            )
    finally:
        bars.close()
    report = _status_report(manifest, weights_status(manifest))
    _print_json(report) if args.json else _print_status(report)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from moviechat_desktop.engine.progress import CancelToken
    from moviechat_desktop.engine.weights import load_manifest, verify_weights, weights_status
    from moviechat_desktop.engine.weights.resolve import missing_message

    manifest = load_manifest()
    token = CancelToken()
    bars = _Bars(enabled=not args.json)
    try:
        with _ctrl_c_cancels(token):
            results = verify_weights(
                _whisper_alias(args.part), manifest=manifest, progress=bars, cancel=token
            )
    finally:
        bars.close()
    if args.json:
        _print_json({"ok": all(r.ok for r in results), "parts": [r.as_dict() for r in results]})
    else:
        for r in results:
            word = "ok" if r.ok else "FAILED" if r.failed else "missing"
            _say(f"  {word:<8}{r.title}: {r.detail}")
    failed = [r for r in results if r.failed]
    if failed:
        names = "; ".join(f"{r.title}: {r.detail}" for r in failed)
        raise WeightsCorrupt(
            f"{len(failed)} part(s) failed verification and will not be used — {names}. "
            "Download them again with `moviechat-desktop weights download`."
        )
    if results and all(r.id.startswith("whisper-") for r in results):
        if not args.json:
            _say("Speech recognition model verified.")
        return 0  # only the optional speech model was asked about
    missing = [s for s in weights_status(manifest) if not s.usable]
    if missing:
        raise WeightsMissing(missing_message(missing))
    if not args.json:
        _say("All parts verified.")
    return 0


def _import(args: argparse.Namespace) -> int:
    from moviechat_desktop.engine.progress import CancelToken
    from moviechat_desktop.engine.weights import import_weights, load_manifest, weights_status

    manifest = load_manifest()
    token = CancelToken()
    bars = _Bars(enabled=not args.json)
    try:
        with _ctrl_c_cancels(token):
            [part] = _whisper_alias([args.part]) if args.part else [None]
            result = import_weights(args.path, part, manifest=manifest, progress=bars, cancel=token)
    finally:
        bars.close()
    report = _status_report(manifest, weights_status(manifest))
    report["imported"] = [s.id for s in result.imported]
    report["ignored"] = result.ignored
    if args.json:
        _print_json(report)
        return 0
    for s in result.imported:
        _say(f"Imported {s.title}: {s.path}")
    for line in result.ignored:
        _say(f"Ignored {line}")
    _print_status(report)
    return 0
