"""Which films a library job encodes: the paths a client names, as the server sees them.

A path is a film file or a folder. Folders are scanned (recursively, hidden entries skipped,
symbolic links followed once) for files whose extension is a video one; a named file is taken
whatever its extension (probing it decides whether it is a film). Every path that cannot be used
becomes one clear per-path error instead of stopping the job. Pure logic: no Ray, no torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".wmv", ".flv", ".mpg", ".mpeg",
        ".m2ts", ".mts", ".ts", ".vob", ".ogv", ".3gp", ".divx", ".asf", ".rm", ".rmvb",
    }
)  # fmt: skip
MAX_PATHS = 10_000  # paths in one request
MAX_FILMS = 100_000  # films one job may hold after scanning folders
MAX_PATH_CHARS = 4096


@dataclass(frozen=True)
class Candidate:
    """One film to encode (``error`` None) or a path that cannot be used (why, in words)."""

    path: str
    error: str | None = None


def check_paths(paths: object) -> list[str]:
    """The request's path list, or ``ValueError`` with what is wrong with it."""
    if not isinstance(paths, list) or not paths:
        raise ValueError("paths must be a non-empty list of files or folders on the server")
    if len(paths) > MAX_PATHS:
        raise ValueError(f"at most {MAX_PATHS} paths in one job")
    for item in paths:
        if not isinstance(item, str) or not item.strip() or "\x00" in item:
            raise ValueError("every path must be a non-empty string")
        if len(item) > MAX_PATH_CHARS:
            raise ValueError(f"a path is longer than {MAX_PATH_CHARS} characters")
    return list(paths)


def scan(paths: list[str]) -> list[Candidate]:
    """Each path as films (folders expanded, sorted by name) or an error; duplicates once.

    Relative paths are refused: the server's working directory means nothing to a client.
    """
    found: list[Candidate] = []
    seen: set[str] = set()

    def add(candidate: Candidate) -> None:
        if candidate.path not in seen:
            seen.add(candidate.path)
            found.append(candidate)

    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_absolute():
            add(Candidate(raw, "not an absolute path (name it as the server sees it)"))
            continue
        try:
            is_dir = path.is_dir()
            exists = is_dir or path.exists()
        except OSError as err:
            add(Candidate(raw, f"cannot be read on the server ({err.strerror or err})"))
            continue
        if not exists:
            add(Candidate(raw, "no such file or folder on the server"))
        elif is_dir:
            films = _films_in(path)
            if isinstance(films, str):
                add(Candidate(raw, films))
            elif not films:
                add(Candidate(raw, "the folder holds no video files"))
            for film in films if isinstance(films, list) else ():
                add(Candidate(str(film)))
        elif not path.is_file():
            add(Candidate(raw, "not a regular file"))
        elif not os.access(path, os.R_OK):
            add(Candidate(raw, "the server may not read it (permission denied)"))
        else:
            add(Candidate(str(path)))
        if len(found) > MAX_FILMS:
            raise ValueError(f"more than {MAX_FILMS} films in one job")
    return found


def _films_in(folder: Path) -> list[Path] | str:
    """Video files under ``folder`` sorted by path, or why the folder cannot be read."""
    if not os.access(folder, os.R_OK | os.X_OK):
        return "the server may not read this folder (permission denied)"
    films: list[Path] = []
    visited: set[tuple[int, int]] = set()

    def walk(directory: Path) -> None:
        try:
            stat = directory.stat()
            if (stat.st_dev, stat.st_ino) in visited:  # a link loop
                return
            visited.add((stat.st_dev, stat.st_ino))
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return  # an unreadable sub-folder is skipped, as a file manager would
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    walk(Path(entry.path))
                elif entry.is_file() and Path(entry.name).suffix.lower() in VIDEO_EXTENSIONS:
                    films.append(Path(entry.path))
            except OSError:
                continue
            if len(films) > MAX_FILMS:
                raise ValueError(f"more than {MAX_FILMS} films in one job")

    walk(folder)
    return films
