"""Creating libVLC safely: the options per platform and the headless case (no Qt widgets).

Traps (see ENVIRONMENT.md): with no display VLC picks its ASCII-art output and crashes, so a
headless Qt (``offscreen``/``minimal``) gets ``--vout=dummy --aout=dummy``; VLC's Xlib modules
are not thread-safe beside Qt's own X connection, hence ``--no-xlib`` on X11.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

HEADLESS_PLATFORMS = frozenset({"offscreen", "minimal", "vnc"})
DUMMY_OUTPUT_ARGS = ("--vout=dummy", "--aout=dummy")
# --play-and-pause: at the end VLC pauses on the last frame instead of tearing the video
# down (mpv's keep-open): the ending stays on screen to look at and ask about, and it repaints
# when a menu or dialog closes over it. PlayerWidget reports that pause as "ended".
_BASE_ARGS = ("--no-video-title-show", "--no-snapshot-preview", "--quiet", "--play-and-pause")


def qt_platform_name() -> str:
    from PySide6.QtGui import QGuiApplication

    return QGuiApplication.platformName() if QGuiApplication.instance() else ""


def is_headless(platform_name: str | None = None) -> bool:
    """True when there is no real screen to show video on (Qt's offscreen platform)."""
    name = qt_platform_name() if platform_name is None else platform_name
    return name in HEADLESS_PLATFORMS


def default_vlc_args(platform_name: str | None = None) -> list[str]:
    name = qt_platform_name() if platform_name is None else platform_name
    args = list(_BASE_ARGS)
    if name == "xcb":
        args.append("--no-xlib")
    if is_headless(name):
        args += DUMMY_OUTPUT_ARGS
    return args


def create_vlc_instance(args: Sequence[str] | None) -> tuple[Any, str]:
    """``(vlc.Instance or None, problem)``: None with a readable reason when libVLC is absent."""
    try:
        import vlc
    except (ImportError, OSError) as err:
        return None, f"VLC is not available ({err}). Install VLC to play videos."
    chosen = default_vlc_args() if args is None else list(args)
    try:
        instance = vlc.Instance(chosen)
    except (NameError, OSError, AttributeError) as err:  # python-vlc without libvlc
        return None, f"libVLC could not start ({err}). Install VLC 3 to play videos."
    if instance is None:
        return None, "libVLC could not start with options " + " ".join(chosen)
    log.debug("libVLC %s started with %s", vlc.libvlc_get_version(), chosen)
    return instance, ""


def embed(player: Any, win_id: int) -> bool:
    """Tell VLC to draw into the native window ``win_id``; False when it cannot here."""
    name = qt_platform_name()
    if is_headless(name):
        return False
    if sys.platform.startswith("linux") or name == "xcb":
        if name != "xcb":  # e.g. native Wayland: VLC cannot draw into it
            log.warning("Qt platform %r: VLC cannot embed its video here; use xcb", name)
            return False
        player.set_xwindow(win_id)
    elif sys.platform == "win32":
        player.set_hwnd(win_id)
    elif sys.platform == "darwin":
        player.set_nsobject(win_id)
    else:
        return False
    return True
