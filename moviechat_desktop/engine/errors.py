"""One exception hierarchy for everything the engine can refuse or fail at.

The UI shows any ``MovieChatError`` with one function (its ``str`` is the message for the
user); the CLI prints it as one line and exits non-zero. ``Cancelled`` is never shown as an
error.
"""

from __future__ import annotations


class MovieChatError(Exception):
    """Base class: ``str(err)`` is a one-line, user-facing explanation."""


class Cancelled(MovieChatError):
    """The operation was cancelled by the user or by closing/replacing the film."""


class VideoError(MovieChatError):
    """A file cannot be used as a video (missing, unreadable, not a video, no frames…)."""


class VideoDecodeError(VideoError):
    """The file opened but frames could not be decoded (truncated or corrupt)."""


class WeightsMissing(MovieChatError):
    """Model weights are not installed (or only partly)."""


class WeightsCorrupt(MovieChatError):
    """A weights file failed verification (size or checksum mismatch)."""


class CheckpointMismatch(MovieChatError):
    """A checkpoint's keys or shapes do not match the modules it should load into."""


class UnsafeCheckpoint(MovieChatError):
    """A checkpoint would need to execute pickled code to load; it is refused."""


class DownloadError(MovieChatError):
    """A download failed (network, server error, offline mode)."""


class OutOfGpuMemory(MovieChatError):
    """CUDA ran out of memory; the message carries advice."""


class NotReady(MovieChatError):
    """A question was asked before the memory it needs exists (nothing encoded yet, or the
    breakpoint lies beyond what has been encoded)."""


class Busy(MovieChatError):
    """Another question is being answered."""


class CacheError(MovieChatError):
    """A memory cache or chat history file is corrupt or incompatible."""


class DialogueError(MovieChatError):
    """A film's dialogue cannot be read: a subtitle file that is not one (binary, empty,
    unknown format, undecodable, too large), a bitmap subtitle track, or an audio track that
    cannot be decoded for speech recognition."""
