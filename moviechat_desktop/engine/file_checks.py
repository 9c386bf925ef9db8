"""Why a path the user gave cannot be used, in words: shared by every place that opens one.

``Path.exists()`` answers False for a symbolic-link loop (and ``Path.resolve()`` raises
``RuntimeError`` on one in Python 3.11), so a loop used to read "does not exist" or to escape
as a traceback. ``why_unusable`` tells the cases apart with one ``stat``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

LOOP = "is a symbolic-link loop"
MISSING = "does not exist"
DANGLING = "is a symbolic link to a file that does not exist"


def why_unusable(path: str | os.PathLike[str]) -> str | None:
    """None when ``path`` exists; else why not (``MISSING``, ``DANGLING``, ``LOOP``, or the
    system's reason such as "Permission denied")."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return DANGLING if os.path.islink(path) else MISSING
    except OSError as err:
        if err.errno == errno.ELOOP:
            return LOOP
        return None  # exists but cannot be examined: the caller's open() says why
    except ValueError:  # a NUL byte in the name
        return MISSING
    return None


def real_path(path: str | os.PathLike[str]) -> str:
    """The absolute path with links resolved as far as they go — never raises on a loop
    (unlike ``Path.resolve()`` in Python 3.11)."""
    return os.path.realpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


__all__ = ["DANGLING", "LOOP", "MISSING", "Path", "real_path", "why_unusable"]
