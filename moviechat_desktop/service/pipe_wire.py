"""How the local engine's messages cross the pipe: pickled tuples, read back with care.

Parent → child: ``("call", id, name, args, kwargs)``, ``("get", id, name)``,
``("set", id, name, value)``, ``("cancel", id)``, ``("shutdown", id)``.
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
    """Read a message from the other side (the guarded way)."""
    return _GuardedUnpickler(io.BytesIO(data)).load()


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
