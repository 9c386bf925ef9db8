"""No exception in the GUI is silent: one hook for everything that escapes a handler.

PySide hands an exception that escapes a slot (or a virtual method such as ``closeEvent``) to
``sys.excepthook``; Python threads use ``threading.excepthook``; an asyncio task of the GUI
loop (qasync) reports a failure nobody awaited to the loop's exception handler. ``install``
points all three at one function: the traceback is logged and the error is shown to the user
through the error presenter (``error_display.show_error``, an "Unexpected error" box), on the
GUI thread whatever thread it happened on. Under a test runner whose own hook was in place
(pytest-qt fails a test on an escaping exception), that hook is called as well.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QWidget

log = logging.getLogger(__name__)

Presenter = Callable[[BaseException], Any]


class _Relay(QObject):
    """Carries an exception to the GUI thread (a queued signal when raised elsewhere)."""

    raised = Signal(object)


class _Hook:
    def __init__(self) -> None:
        self.presenter: weakref.WeakMethod[Presenter] | Callable[[], None] | None = None
        self.previous: Callable[..., Any] | None = None
        self.previous_thread: Callable[..., Any] | None = None
        self.relay = _Relay()
        self.relay.raised.connect(self._present, Qt.ConnectionType.QueuedConnection)
        self.showing = False

    # -------------------------------------------------------------- entry points
    def excepthook(
        self, kind: type[BaseException], err: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(kind, KeyboardInterrupt | SystemExit):
            sys.__excepthook__(kind, err, tb)
            return
        self._report(err.with_traceback(tb) if tb is not None else err, "a handler of the window")
        if self.previous not in (None, sys.__excepthook__, self.excepthook):
            self.previous(kind, err, tb)  # a test runner's own hook

    def thread_hook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or isinstance(args.exc_value, SystemExit):
            return
        name = args.thread.name if args.thread is not None else "a thread"
        self._report(args.exc_value, f"thread {name}")
        if self.previous_thread not in (None, threading.__excepthook__, self.thread_hook):
            self.previous_thread(args)  # a test runner's own hook

    def loop_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        err = context.get("exception")
        if not isinstance(err, BaseException):
            log.error("event loop: %s", context.get("message"))
            return
        self._report(err, "a background task of the window")

    # -------------------------------------------------------------- reporting
    def _report(self, err: BaseException, where: str) -> None:
        log.error("an exception escaped %s", where, exc_info=(type(err), err, err.__traceback__))
        try:
            self.relay.raised.emit(err)  # queued: shown on the GUI thread, after this handler
        except RuntimeError:  # the relay is gone (the application is shutting down)
            pass

    def _present(self, err: BaseException) -> None:
        presenter = self.presenter() if self.presenter is not None else None
        if presenter is None or self.showing:
            return
        self.showing = True  # an error inside the presenter must not loop
        try:
            presenter(err)
        except Exception:
            log.exception("the error presenter failed")
        finally:
            self.showing = False


_hooks: list[_Hook] = []  # one per process, made by the first install()


def install(window: QWidget, presenter: Presenter | None = None) -> None:
    """Route every escaping exception to ``presenter`` (default: ``window.show_error``).

    Safe to call again (the latest window presents); the window is held weakly."""
    if not _hooks:
        _hooks.append(_Hook())
    hook = _hooks[0]
    if sys.excepthook != hook.excepthook:
        hook.previous = sys.excepthook
        sys.excepthook = hook.excepthook
    if threading.excepthook != hook.thread_hook:
        hook.previous_thread = threading.excepthook
        threading.excepthook = hook.thread_hook
    bound = presenter or window.show_error  # type: ignore[attr-defined]
    hook.presenter = weakref.WeakMethod(bound) if hasattr(bound, "__self__") else lambda: bound
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:  # no loop in this thread (yet)
        return
    loop.set_exception_handler(hook.loop_handler)
