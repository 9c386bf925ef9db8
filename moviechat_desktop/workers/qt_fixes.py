"""A guard against a reference-counting bug in PySide6 6.12.0's ``SignalInstance.emit``.

Measured here (PySide6-Essentials 6.12.0, CPython 3.11): every ``signal.emit(...)`` called
from Python returns ``True`` without taking a reference, so each call drops one reference to
``True``. After a few hundred emissions (a player polls its position 10×/s) CPython aborts
with "Fatal Python error: bool_dealloc: deallocating True or False". 6.11.3 is not affected;
CPython ≥ 3.12 is immune (``True`` is immortal there).

``install()`` measures whether the running PySide6 has the bug and, only if so, wraps
``SignalInstance.emit`` to give back the missing reference. On a fixed PySide6 it changes
nothing. The real fix is a PySide6 without the bug (``PySide6-Essentials!=6.12.0``).
"""

from __future__ import annotations

import ctypes
import logging
import sys

from PySide6.QtCore import QObject, Signal, SignalInstance

log = logging.getLogger(__name__)

_PROBE_EMITS = 64
_state = {"installed": False}


class _Probe(QObject):
    pinged = Signal()


def emit_leaks_references() -> bool:
    """True when ``emit()`` drops a reference to the object it returns (the 6.12.0 bug)."""
    if sys.version_info >= (3, 12):
        return False  # immortal True/False: the missing reference is harmless
    probe = _Probe()
    result = probe.pinged.emit()
    before = sys.getrefcount(result)
    for _ in range(_PROBE_EMITS):
        probe.pinged.emit()
    leaked = before - sys.getrefcount(result)
    if leaked >= _PROBE_EMITS // 2:  # give the references back that the probe itself took
        for _ in range(leaked):
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(result))
        return True
    return False


def install() -> bool:
    """Work around the bug if this PySide6 has it; True when the workaround is active."""
    if _state["installed"]:
        return True
    if not emit_leaks_references():
        return False
    original = SignalInstance.emit
    incref = ctypes.pythonapi.Py_IncRef
    incref.argtypes = [ctypes.py_object]

    def emit(self, *args):
        result = original(self, *args)
        incref(result)  # the reference PySide6 forgot to take
        return result

    SignalInstance.emit = emit
    _state["installed"] = True
    log.warning(
        "PySide6 %s drops a reference on every Signal.emit(); a workaround is active. "
        "Install PySide6-Essentials other than 6.12.0 to remove it.",
        __import__("PySide6").__version__,
    )
    return True
