"""How the local engine's messages cross the pipe: pickled tuples, read back with care.

Parent → child: ``("call", id, name, args, kwargs)``, ``("get", id, name)``,
``("set", id, name, value)``, ``("cancel", id)``, ``("shutdown", id)``, framed as two pickles
(``dumps_request``): ``(kind, id)`` then the rest, so that a request whose arguments the child
cannot rebuild is answered with an error for its id instead of leaving the caller waiting.
Child → parent: ``("ready", 0, pid)``, ``("value", id, result)``, ``("method", id)``,
``("error", id, exception)``, ``("stream", id)``, ``("item", id, chunk)``, ``("end", id)``,
``("callback", id, index, args, kwargs)``.

A ``CancelToken`` argument travels as ``CANCEL`` (the child gives the call its own token, which
a ``cancel`` message sets); a callable argument travels as ``Callback(index)`` (the child sends
``callback`` messages; the parent calls the function).

The parent reads with ``loads``, which refuses to import torch, transformers, decord or the
engine's model package: a result that would need them cannot drag torch into the GUI process.
The child sends an exception as itself only when its class lives in a module the parent may
import (the engine's errors, the service's, the standard library's); anything else becomes a
``RemoteError`` naming its kind and message.
"""

from __future__ import annotations

import builtins
import io
import pickle
from dataclasses import dataclass
from typing import Any

from moviechat_desktop.service.api import RemoteError

FORBIDDEN_PREFIXES = (
    "torch",
    "transformers",
    "decord",
    "moviechat_desktop.engine.model",
)
EXCEPTION_MODULES = (
    "builtins",
    "moviechat_desktop.engine.errors",
    "moviechat_desktop.service.api",
)

CANCEL = "__moviechat_cancel_token__"


@dataclass(frozen=True)
class Callback:
    """Stands for the caller's ``index``-th callable argument."""

    index: int


def forbidden(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in FORBIDDEN_PREFIXES)


class _GuardedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if forbidden(module):
            raise pickle.UnpicklingError(f"{module}.{name} cannot be read in this process")
        return super().find_class(module, name)


def dumps(message: tuple) -> bytes:
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> tuple:
    """Read a message from the child (the guarded way)."""
    return _GuardedUnpickler(io.BytesIO(data)).load()


def dumps_request(message: tuple) -> bytes:
    """A parent → child message: ``(kind, id)`` and the rest, as two pickles."""
    return dumps(message[:2]) + dumps(message[2:])


def loads_request(data: bytes) -> tuple:
    """Read a parent → child message in the child, which may import the whole engine (the
    parent's values, e.g. ``GenerationSettings``, are the engine's own types). Arguments that
    cannot be rebuilt give ``("unreadable", id, error)``: the child answers that call with it."""
    stream = io.BytesIO(data)
    kind, call_id = pickle.Unpickler(stream).load()
    try:
        rest = pickle.Unpickler(stream).load()
    except Exception as err:  # any failure of the arguments is that call's error
        failure = RemoteError(f"the engine cannot read the {kind!r} request: {err}")
        return ("unreadable", call_id, failure)
    return (kind, call_id, *rest)


def sendable_exception(err: BaseException) -> BaseException:
    """``err`` itself when the parent can rebuild it, else a ``RemoteError`` describing it."""
    kind = type(err)
    module = kind.__module__
    known = module in EXCEPTION_MODULES
    if known and (module != "builtins" or getattr(builtins, kind.__name__, None) is kind):
        try:
            loads(dumps((err,)))
        except Exception:  # an exception class with unusual arguments
            pass
        else:
            return err
    return RemoteError(f"{kind.__name__}: {err}")
