"""Crash-safe file writes shared by the memory cache and the chat history.

``atomic_write`` replaces a file so that a reader (or the next start after a crash or a
``SIGKILL``) sees either the old content or the new content, never a mix: the bytes go to a
temporary file beside the target, are flushed to disk (``fsync``), renamed over the target, and
the directory entry is flushed too. ``append_line`` adds one line to a log file with a single
``write`` and an ``fsync``; a line cut short by a crash is dropped by the reader.

Every byte goes through ``write_fully``: one place to count or interrupt writes in tests.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

TMP_SUFFIX = ".tmp"
CORRUPT_MARK = ".corrupt-"


def write_fully(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the file descriptor ``fd`` (``os.write`` may write less)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (a rename or a new file) to disk; a no-op where unsupported."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file already written (by ``atomic_write(..., sync=False)``) to disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (temp file + fsync + rename + dir fsync).

    ``sync=False`` skips both fsyncs: the rename is still atomic for other processes and
    survives the writer's crash or ``SIGKILL`` (the data sits in the page cache), but not a
    power loss; the caller makes it durable later (``fsync_file`` + ``fsync_dir``)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o644)
    try:
        write_fully(fd, data)
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    if sync:
        fsync_dir(path.parent)


def append_line(path: Path, line: bytes) -> None:
    """Append ``line`` (no newline inside) plus ``\\n`` to ``path`` and flush it to disk.

    A previous writer killed mid-line leaves a last line without its newline: that fragment is
    cut off first (logged), so the new line never fuses with it.
    """
    if b"\n" in line:
        raise ValueError("a log line may not contain a newline")
    path = Path(path)
    new = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0), 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and _pread(fd, 1, size - 1) != b"\n":
            keep = _last_newline_end(fd, size)
            log.warning("%s: dropping %d bytes of an unfinished last line", path, size - keep)
            os.ftruncate(fd, keep)
        write_fully(fd, line + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        fsync_dir(path.parent)


def _pread(fd: int, n: int, offset: int) -> bytes:
    os.lseek(fd, offset, os.SEEK_SET)  # (os.pread is POSIX-only)
    return os.read(fd, n)


def _last_newline_end(fd: int, size: int, chunk: int = 64 * 1024) -> int:
    """Offset just past the last ``\\n`` in the first ``size`` bytes of ``fd`` (0 if none)."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        block = _pread(fd, end - start, start)
        found = block.rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def move_aside(path: Path, reason: str) -> Path | None:
    """Rename a corrupt ``path`` to ``<path>.corrupt-<timestamp>`` and log a warning.

    Returns the new path, or None when even the rename failed (then the path is deleted if
    possible, so a corrupt file is never read again).
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}{CORRUPT_MARK}{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{CORRUPT_MARK}{stamp}-{n}")
    try:
        os.replace(path, target)
    except OSError as err:
        log.warning("%s is unusable (%s) and cannot be moved aside: %s", path, reason, err)
        return None
    log.warning("%s is unusable (%s); moved aside to %s", path, reason, target.name)
    return target
