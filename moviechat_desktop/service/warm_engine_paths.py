"""Where the CLI's warm engine lives, whether it may be used, and which code it runs.

The files of one warm engine sit in a private runtime directory, ``$XDG_RUNTIME_DIR/
moviechat-desktop`` when that variable names a directory, else ``/tmp/moviechat-desktop-<uid>``
(short: a Unix socket's path is limited to ~107 bytes). The directory is used only when it is a
real directory (no symlink), owned by this user, mode 0700; anything else is
``WarmEngineRefused`` and the call runs in its own process, as without a warm engine.

In it, for each set of user dirs and interpreter (``identity``: engines that would behave the
same share one): ``engine-<hash>.sock`` (the daemon's socket), ``.key`` (the handshake's
random key, mode 0600), ``.lock`` (held while a daemon is being started, so two calls never
start two). The daemon's own log is ``warm-engine.log`` in the user cache dir.

``code_fingerprint`` names the installed code (version, and the size and mtime of every file of
the package): a daemon of other code is told to go and a new one started.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from moviechat_desktop import __version__
from moviechat_desktop.engine.errors import MovieChatError
from moviechat_desktop.engine.settings import (
    APP_NAME,
    AppSettings,
    user_cache_dir,
    user_config_dir,
    user_data_dir,
)

log = logging.getLogger(__name__)

KEEP_WARM_ENV = "MOVIECHAT_KEEP_WARM_S"
KEEP_WARM_MAX_S = 86400
SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes with its terminating NUL
# the environment the engine reads (weights, hub cache, GPUs): engines differing here differ
ENGINE_ENVIRONMENT = (
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "MOVIECHAT_WEIGHTS_MANIFEST",
    "CUDA_VISIBLE_DEVICES",
)
PACKAGE_DIR = Path(__file__).resolve().parent.parent


class WarmEngineRefused(MovieChatError):
    """The warm engine cannot be used here (its directory is not private, ...)."""


def keep_warm_seconds(settings: AppSettings) -> int:
    """``$MOVIECHAT_KEEP_WARM_S`` when set (and valid), else ``engine.keep_warm_s``."""
    text = os.environ.get(KEEP_WARM_ENV, "").strip()
    if text:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if 0 <= value <= KEEP_WARM_MAX_S:
            return value
        log.warning(
            "%s=%.40r is not a whole number of seconds from 0 to %d; using engine.keep_warm_s",
            KEEP_WARM_ENV,
            text,
            KEEP_WARM_MAX_S,
        )
    return settings.engine.keep_warm_s


def identity() -> dict[str, str]:
    """What makes two warm engines interchangeable: the user dirs, the engine's environment
    and the interpreter."""
    return {
        "config": str(user_config_dir()),
        "cache": str(user_cache_dir()),
        "data": str(user_data_dir()),
        "state": platformdirs.user_state_dir(APP_NAME, appauthor=False),
        "python": sys.executable,
        **{name: os.environ.get(name, "") for name in ENGINE_ENVIRONMENT},
    }


def code_fingerprint() -> str:
    """The package version and the size and mtime of each of its files (a few ms)."""
    digest = hashlib.sha256(__version__.encode())
    for folder, dirs, names in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if not name.endswith((".py", ".toml", ".json")):
                continue
            path = os.path.join(folder, name)
            try:
                info = os.stat(path)
            except OSError:
                continue
            relative = os.path.relpath(path, PACKAGE_DIR)
            digest.update(f"{relative}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class WarmEnginePlace:
    """The files of one warm engine (module docstring)."""

    directory: Path
    name: str  # engine-<hash>

    @property
    def socket(self) -> Path:
        return self.directory / f"{self.name}.sock"

    @property
    def key_file(self) -> Path:
        return self.directory / f"{self.name}.key"

    @property
    def lock_file(self) -> Path:
        return self.directory / f"{self.name}.lock"

    @property
    def log_file(self) -> Path:
        return user_cache_dir() / "warm-engine.log"


def runtime_directory() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if base and os.path.isdir(base):  # (a session's variable can outlive its directory)
        return Path(base) / APP_NAME
    return Path("/tmp") / f"{APP_NAME}-{os.getuid()}"


def private_directory(path: Path) -> Path:
    """``path``, created mode 0700 when missing; ``WarmEngineRefused`` unless it is a real
    directory owned by this user that no one else can enter."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as err:
        raise WarmEngineRefused(f"cannot create {path}: {err.strerror}") from None
    try:
        info = os.lstat(path)
    except OSError as err:
        raise WarmEngineRefused(f"cannot use {path}: {err.strerror}") from None
    if stat.S_ISLNK(info.st_mode):
        raise WarmEngineRefused(f"{path} is a symbolic link, not a private directory")
    if not stat.S_ISDIR(info.st_mode):
        raise WarmEngineRefused(f"{path} is not a directory")
    if info.st_uid != os.getuid():
        raise WarmEngineRefused(f"{path} belongs to another user (uid {info.st_uid})")
    mode = stat.S_IMODE(info.st_mode)
    if mode != 0o700:
        raise WarmEngineRefused(f"{path} has mode {mode:04o}; it must be 0700 (private)")
    return path


def warm_engine_place() -> WarmEnginePlace:
    """This user's warm engine's files; ``WarmEngineRefused`` when the directory is unsafe or
    the socket's path would be too long."""
    directory = private_directory(runtime_directory())
    text = json.dumps(identity(), sort_keys=True)
    place = WarmEnginePlace(directory, "engine-" + hashlib.sha256(text.encode()).hexdigest()[:12])
    if len(os.fsencode(place.socket)) > SOCKET_PATH_MAX:
        raise WarmEngineRefused(f"the socket path {place.socket} is too long for a Unix socket")
    return place


def read_key(place: WarmEnginePlace) -> bytes:
    """The handshake key (``WarmEngineRefused`` when missing or readable by others)."""
    try:
        fd = os.open(place.key_file, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as err:
        raise WarmEngineRefused(f"cannot read {place.key_file}: {err.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
            raise WarmEngineRefused(f"{place.key_file} is not private to this user")
        key = handle.read(256).strip()
    if len(key) < 32:
        raise WarmEngineRefused(f"{place.key_file} holds no key")
    return key


def write_new_key(place: WarmEnginePlace) -> bytes:
    """A new random key in the key file (mode 0600, replaced atomically)."""
    key = os.urandom(32).hex().encode()
    temporary = place.key_file.with_suffix(f".key-{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    os.replace(temporary, place.key_file)
    return key
