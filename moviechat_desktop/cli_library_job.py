"""``encode --server URL --on-server PATH...``: a library job on the server, one progress bar.

Submits the paths (as the server sees them) with this computer's sampling settings, then polls
the job's progress and shows it as one bar on stderr (a plain line every few seconds when stderr
is not a terminal). Ctrl-C cancels the job on the server (what is encoded stays in its cache).
If the server forgets the job (it restarted), the same paths are submitted again: the cache
makes that a resume. Exit status: 0 when every film is ready, 1 with one line per failed film,
130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from moviechat_desktop.engine.settings import load_settings
from moviechat_desktop.terminal_text import for_terminal, json_for_terminal

POLL_S = 0.5
PLAIN_INTERVAL_S = 5.0  # a plain progress line this often when stderr is not a terminal
RESUBMITS = 3  # the server forgot the job (restarted): submit again at most this often
EXIT_CANCELLED = 130


class JobBar:
    """One progress bar for the whole job (fragments of all its films) on stderr."""

    def __init__(self) -> None:
        self.terminal = sys.stderr.isatty()
        self._bar: Any = None
        self._last_line = 0.0
        self._last_text = ""

    def update(self, progress: dict[str, Any]) -> None:
        done, total = progress["fragments_done"], progress["fragments_total"]
        films = f"{progress['films_done']}/{progress['films_total']} films"
        current = Path(progress["current"]).name if progress.get("current") else ""
        if self.terminal:
            from tqdm import tqdm

            if self._bar is None:
                self._bar = tqdm(total=total, unit="frag", file=sys.stderr, leave=False)
            if self._bar.total != total:
                self._bar.total = total
            self._bar.set_description_str(films, refresh=False)
            self._bar.set_postfix_str(for_terminal(current[:40]), refresh=False)
            self._bar.update(done - self._bar.n)
            return
        percent = 100 * done // total if total else 0
        text = f"library job: {done}/{total} fragments ({percent}%), {films}"
        now = time.monotonic()
        finished = progress["state"] in ("done", "cancelled")
        if text != self._last_text and (finished or now - self._last_line >= PLAIN_INTERVAL_S):
            print(text, file=sys.stderr, flush=True)
            self._last_line, self._last_text = now, text

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar = None


def _pause(seconds: float) -> None:
    """Between two progress polls (the tests replace it)."""
    time.sleep(seconds)


def run_library_job(args: argparse.Namespace) -> int:
    """``encode --server URL --on-server PATH...`` (usage checked by the caller)."""
    from moviechat_desktop.service.library_job_client import JobLost, LibraryClient

    settings = load_settings()
    client = LibraryClient(args.server, args.token_file)
    bar = JobBar()
    start = time.perf_counter()
    job_id = None
    try:
        progress = client.submit(list(args.video), settings)
        job_id = progress["job_id"]
        resubmits = 0
        while progress["state"] not in ("done", "cancelled"):
            bar.update(progress)
            _pause(POLL_S)
            try:
                progress = client.progress(job_id)
            except JobLost:
                if resubmits >= RESUBMITS:
                    raise
                resubmits += 1  # the server restarted: the cache keeps what was encoded
                progress = client.submit(list(args.video), settings)
                job_id = progress["job_id"]
        bar.update(progress)
    except KeyboardInterrupt:
        bar.close()
        return _cancel(client, job_id)
    finally:
        bar.close()
        client.close()
    return _report(args, progress, time.perf_counter() - start)


def _cancel(client: Any, job_id: str | None) -> int:
    from moviechat_desktop.service.remote_client import ServerError

    if job_id is None:
        print("moviechat-desktop: interrupted before the job started", file=sys.stderr)
        return EXIT_CANCELLED
    try:
        progress = client.cancel(job_id)
    except ServerError as err:
        print(
            f"moviechat-desktop: interrupted; the job could not be cancelled on the server "
            f"({for_terminal(str(err))})",
            file=sys.stderr,
        )
        return EXIT_CANCELLED
    print(
        f"moviechat-desktop: interrupted: the job on the server is cancelled "
        f"({progress['fragments_done']}/{progress['fragments_total']} fragments are in its "
        "memory cache; run the same command again to resume)",
        file=sys.stderr,
    )
    return EXIT_CANCELLED


def _note_damaged(films: list[Any], failed: list[Any]) -> None:
    """One note per film encoded except a damaged part, as a local ``encode`` says it (a film
    nothing decodes from has its error line instead)."""
    from moviechat_desktop.engine.memory.gaps import describe_gaps
    from moviechat_desktop.service.remote_wire import WireError, ranges

    failed_paths = {f.get("path") for f in failed if isinstance(f, dict)}
    for film in films:
        if not isinstance(film, dict) or film.get("path") in failed_paths:
            continue
        try:
            gaps = ranges(film.get("gaps"))
        except WireError:
            gaps = ()
        if gaps:  # (a server of an older version sends only the count)
            name = Path(str(film.get("path"))).name
            print(
                f"moviechat-desktop: note: {describe_gaps(gaps)} of {for_terminal(name)} could "
                "not be decoded (damaged) and was skipped",
                file=sys.stderr,
            )


def _report(args: argparse.Namespace, progress: dict[str, Any], elapsed_s: float) -> int:
    failed = progress.get("failed") or []
    if getattr(args, "json", False):
        print(json_for_terminal({**progress, "elapsed_s": round(elapsed_s, 3)}))
    else:
        note = ""
        if progress["fragments_damaged"]:
            note = f", {progress['fragments_damaged']} damaged fragments skipped"
        print(
            f"{progress['films_ready']} of {progress['films_total']} films ready on the server: "
            f"{progress['fragments_encoded']} fragments encoded, "
            f"{progress['fragments_from_cache']} already in its cache{note}, "
            f"in {elapsed_s:.1f} s"
        )
    _note_damaged(progress.get("damaged") or [], failed)
    for film in failed:
        print(
            f"moviechat-desktop: error: {for_terminal(film['path'])}: "
            f"{for_terminal(film['error'])}",
            file=sys.stderr,
        )
    if progress.get("error"):
        print(f"moviechat-desktop: error: {for_terminal(progress['error'])}", file=sys.stderr)
    if progress["state"] == "cancelled":
        print("moviechat-desktop: error: the job was cancelled on the server", file=sys.stderr)
        return 1
    return 1 if failed or progress.get("error") else 0
