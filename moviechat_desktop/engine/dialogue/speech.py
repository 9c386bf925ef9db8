"""Speech recognition with faster-whisper: which model, on which device, one chunk at a time.

The model is the weights manager's optional part ``whisper-<size>`` for
``settings.dialogue.speech_model`` (``tiny`` … ``large-v3``; ``small`` by default), or a folder
holding a CTranslate2 Whisper model (``model.bin``, ``config.json``, ``tokenizer.json``) when the
setting is a path. It runs as int8 on a CPU and float16 on CUDA, greedy on a CPU (beam 5 on
CUDA), with faster-whisper's voice-activity filter so silence costs nothing. ``SpeechModel`` is
loaded once per Assistant and shared by every film.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moviechat_desktop.engine.errors import DialogueError, MovieChatError, WeightsMissing

if TYPE_CHECKING:
    import numpy as np

    from moviechat_desktop.engine.progress import CancelToken

log = logging.getLogger(__name__)

SIZES = ("tiny", "base", "small", "medium", "large-v3")
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json")


def whisper_part_id(speech_model: str) -> str:
    """The weights part for a model size: ``"small"`` → ``"whisper-small"``."""
    if speech_model not in SIZES:
        raise DialogueError(
            f"unknown speech model {speech_model!r}: choose one of {', '.join(SIZES)} "
            "or a folder holding a CTranslate2 Whisper model"
        )
    return f"whisper-{speech_model}"


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in MODEL_FILES)


def resolve_speech_model(speech_model: str) -> Path:
    """The folder of the configured Whisper model; ``WeightsMissing`` says how to get it."""
    candidate = Path(speech_model).expanduser()
    if speech_model not in SIZES and (candidate.is_absolute() or candidate.exists()):
        if _is_model_dir(candidate):
            return candidate
        raise WeightsMissing(
            f"{candidate} is not a CTranslate2 Whisper model folder "
            f"(it needs {', '.join(MODEL_FILES)})"
        )
    from moviechat_desktop.engine.weights import load_manifest
    from moviechat_desktop.engine.weights.status import part_status

    part = load_manifest().part(whisper_part_id(speech_model))
    status = part_status(part)
    if status.usable and status.path is not None:
        return status.path
    so_far = ""
    if status.partial_bytes:
        from moviechat_desktop.engine.weights import format_bytes

        so_far = f", {format_bytes(status.partial_bytes)} downloaded so far"
    problem = f" ({status.detail})" if status.state == "invalid" else ""
    raise WeightsMissing(
        f"speech recognition needs the {part.title} model ({part.size_label}{so_far}){problem}: "
        f"get it with `moviechat-desktop weights download --part {part.id}` or in the app "
        "with Assistant ▸ Weights…"
    )


def speech_unavailable(speech_model: str) -> str | None:
    """Why speech recognition cannot run now (a sentence), or None when it can."""
    try:
        resolve_speech_model(speech_model)
    except MovieChatError as err:
        return str(err)
    return None


@dataclass(frozen=True)
class Segment:
    start_s: float  # within the audio given
    end_s: float
    text: str


class SpeechModel:
    """A loaded faster-whisper model (loading takes seconds: done on the first chunk)."""

    def __init__(self, folder: Path, device: str = "auto") -> None:
        self.folder = folder
        self.device = _pick_device(device)
        self.compute_type = "float16" if self.device == "cuda" else "int8"
        self.beam_size = 5 if self.device == "cuda" else 1
        self._model: Any = None
        self.load_seconds = 0.0

    def identity(self) -> dict[str, Any]:
        """What the recognised lines depend on (for the transcript cache key)."""
        from moviechat_desktop.engine.store.fingerprint import file_fingerprint

        try:
            weights = file_fingerprint(self.folder / "model.bin")
        except OSError as err:
            raise DialogueError(f"cannot read the speech model in {self.folder}: {err}") from err
        return {"model": weights, "beam_size": self.beam_size, "compute": self.compute_type}

    def _load(self) -> Any:
        if self._model is None:
            from faster_whisper import WhisperModel

            start = time.perf_counter()
            try:
                self._model = WhisperModel(
                    str(self.folder),
                    device=self.device,
                    compute_type=self.compute_type,
                    local_files_only=True,
                )
            except (RuntimeError, ValueError, OSError) as err:
                raise DialogueError(
                    f"the speech model in {self.folder} cannot be loaded: {err}"
                ) from err
            self.load_seconds = time.perf_counter() - start
            log.info("speech model %s loaded in %.2f s", self.folder.name, self.load_seconds)
        return self._model

    def transcribe(
        self,
        audio: np.ndarray,
        language: str | None,
        cancel: CancelToken | None = None,
        max_new_tokens: int | None = None,
        **extra: Any,
    ) -> tuple[list[Segment], str]:
        """Recognise ``audio`` (16 kHz mono float32); ``(segments, language used)``.

        ``extra``: more faster-whisper options (the benchmark's ``temperature=0.0``)."""
        model = self._load()
        options: dict[str, Any] = {
            "language": language,
            "beam_size": self.beam_size,
            "vad_filter": True,
            "condition_on_previous_text": False,
        }
        if max_new_tokens is not None:
            options["max_new_tokens"] = max_new_tokens
        options.update(extra)
        try:
            segments, info = model.transcribe(audio, **options)
            found = []
            for segment in segments:  # a generator: recognition happens while iterating
                if cancel is not None:
                    cancel.raise_if_cancelled()
                found.append(Segment(float(segment.start), float(segment.end), segment.text))
        except (RuntimeError, ValueError) as err:
            raise DialogueError(f"speech recognition failed: {err}") from err
        return found, str(info.language or language or "")


def _pick_device(requested: str) -> str:
    if requested == "cpu":
        return "cpu"
    try:
        import ctranslate2

        has_cuda = ctranslate2.get_cuda_device_count() > 0
    except (ImportError, RuntimeError):
        has_cuda = False
    return "cuda" if has_cuda else "cpu"
