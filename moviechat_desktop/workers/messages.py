"""Small immutable messages the workers send to the UI through Qt signals (never tensors)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from moviechat_desktop.engine.errors import (
    Busy,
    Cancelled,
    CheckpointMismatch,
    DownloadError,
    MovieChatError,
    NotReady,
    OutOfGpuMemory,
    UnsafeCheckpoint,
    VideoError,
    WeightsCorrupt,
    WeightsMissing,
)
from moviechat_desktop.service.api import EngineError, EngineGaveUp

if TYPE_CHECKING:  # the records arrive from the engine; this module stays torch-free
    from moviechat_desktop.engine.store.chat_history import ChatRecord, ConversationSummary

log = logging.getLogger(__name__)

# Most specific first: the first isinstance match gives the dialog title.
_TITLES: tuple[tuple[type[BaseException], str], ...] = (
    (Cancelled, "Cancelled"),
    (EngineGaveUp, "The assistant stopped"),
    (EngineError, "The assistant's process failed"),
    (VideoError, "Cannot play this file"),
    (WeightsMissing, "Model weights are missing"),
    (WeightsCorrupt, "Model weights are damaged"),
    (CheckpointMismatch, "Model weights do not fit"),
    (UnsafeCheckpoint, "Unsafe weights file refused"),
    (DownloadError, "Download failed"),
    (OutOfGpuMemory, "Out of GPU memory"),
    (NotReady, "Not ready yet"),
    (Busy, "Busy"),
    (MovieChatError, "MovieChat"),
)


@dataclass(frozen=True)
class ErrorReport:
    """What the UI needs to show an error: a title, a one-paragraph message, its kind."""

    kind: str  # the exception's class name, e.g. "VideoError"
    title: str
    message: str
    cancelled: bool = False  # a Cancelled: never shown as an error
    needs_weights: bool = False  # offering the weights dialog would help
    unexpected: bool = False  # not a MovieChatError: a bug; the message says so

    @classmethod
    def from_exception(cls, err: BaseException) -> ErrorReport:
        kind = type(err).__name__
        if isinstance(err, MovieChatError):
            title = next(t for klass, t in _TITLES if isinstance(err, klass))
            return cls(
                kind=kind,
                title=title,
                message=str(err) or title,
                cancelled=isinstance(err, Cancelled),
                needs_weights=isinstance(err, WeightsMissing | WeightsCorrupt),
            )
        log.error("unexpected error", exc_info=(type(err), err, err.__traceback__))
        return cls(
            kind=kind,
            title="Unexpected error",
            message=f"Something went wrong inside MovieChat ({kind}: {err}). "
            "Details are in the log; please report it.",
            unexpected=True,
        )

    @classmethod
    def simple(cls, title: str, message: str, kind: str = "Notice") -> ErrorReport:
        return cls(kind=kind, title=title, message=message)


@dataclass(frozen=True)
class ConversationView:
    """The open film's current conversation and the list of its conversations.

    ``reason`` says why it was sent: "opened" (the user opened the film), "reopened" (new
    settings reopened it: the chat on screen is already right), "new", "switched" (another
    conversation was chosen) or "updated" (an answer was saved: only the list changed).
    ``records`` is empty for "reopened" and "updated": the chat on screen already has them.
    """

    film_path: str
    conversation_id: str | None
    records: tuple[ChatRecord, ...]
    conversations: tuple[ConversationSummary, ...]
    reason: str
