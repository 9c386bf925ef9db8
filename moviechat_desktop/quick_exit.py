"""Ending a CLI command without the interpreter's teardown of torch & co.

When a command has imported torch and transformers, Python's normal exit spends seconds
destroying thousands of modules and objects after the work is done and its answer printed
(on this project's loaded 2-core machine: 0.9 s of CPU after ``import torch, transformers``
alone, ~2.3 s after a cached ``ask`` with the test model; bench/README.md). ``finish`` ends
the process at once instead — the same choice the engine's child process makes
(``service/engine_host.py``) — but only when nothing can be lost:

* the output is flushed (stdout, stderr, every logging handler);
* no other non-daemon thread is alive (a normal exit would wait for it; then ``finish``
  returns and the normal exit happens);
* torch is loaded (otherwise the teardown is cheap and there is nothing to gain).

Everything the commands keep is written before they return (atomic writes, fsynced appends,
the film's cache entry closed). Only ``cli.main`` run as the program calls this (never when a
test calls ``main([...])`` in its own process).
"""

from __future__ import annotations

import logging
import os
import sys
import threading


def can_skip_teardown() -> bool:
    """True when ending the process now loses nothing and saves time (module docstring)."""
    if "torch" not in sys.modules:
        return False
    main = threading.main_thread()
    if threading.current_thread() is not main:
        return False
    return not any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not main)


def finish(status: int) -> int:
    """End the process with ``status`` now if ``can_skip_teardown()``; else return ``status``
    (the caller exits normally)."""
    if not can_skip_teardown():
        return status
    logging.shutdown()  # flushes and closes every handler
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`): nothing more to say
            pass
    os._exit(status)
