"""The facade every front end calls: open a film, encode it into memory, ask questions.

The GUI (through one worker thread), the CLI, the tests and the benchmarks all go through
``Assistant``, so a question asked in the terminal takes exactly the GUI's path.

An ``Assistant`` is not thread-safe: exactly one thread owns it. Encoding is done one fragment
at a time (``encode_step``) so the owner can interleave questions and cancel between steps.
Heavy modules (torch, transformers, decord) are imported lazily: importing this module is cheap.

Persistence (DESIGN §6): ``open`` fingerprints the film, restores whatever memory the cache
holds for it (``film_cache``) and the film's latest conversation (``chat_history``);
``encode_step`` saves each fragment as it completes; ``ask`` appends the question and, once
complete, the answer to the film's chat history.

The class is put together from parts, one module each: ``assistant_encoding`` (the memory,
fragment by fragment), ``assistant_dialogue`` (the film's dialogue), ``assistant_chat``
(conversations and the chat history), ``assistant_questions`` (answering). This module holds
the model, opening and closing a film and its memory cache; ``assistant_results`` the
``EncodeStatus`` and ``AnswerInfo`` it reports (importable from here as before).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moviechat_desktop.engine.assistant_chat import AssistantChat
from moviechat_desktop.engine.assistant_dialogue import AssistantDialogue
from moviechat_desktop.engine.assistant_encoding import AssistantEncoding
from moviechat_desktop.engine.assistant_questions import AssistantQuestions
from moviechat_desktop.engine.assistant_results import (
    END_SLACK_S,
    MODES,
    AnswerInfo,
    EncodeStatus,
)
from moviechat_desktop.engine.errors import MovieChatError, NotReady
from moviechat_desktop.engine.memory.gaps import DecodeGaps
from moviechat_desktop.engine.settings import AppSettings, load_settings
from moviechat_desktop.engine.video.grabber_opener import GrabberOpener

if TYPE_CHECKING:
    from moviechat_desktop.engine.dialogue.film_dialogue import FilmDialogue
    from moviechat_desktop.engine.dialogue.speech import SpeechModel
    from moviechat_desktop.engine.memory.film_memory import FilmMemory
    from moviechat_desktop.engine.model.device import DeviceChoice
    from moviechat_desktop.engine.model.llm import Conversation
    from moviechat_desktop.engine.model.movie_chat import MovieChatModel
    from moviechat_desktop.engine.model.paths import ModelPaths
    from moviechat_desktop.engine.store.film_cache import ClearResult
    from moviechat_desktop.engine.store.film_store import FilmStore
    from moviechat_desktop.engine.video.frames import (
        FrameDecoder,
        SamplingPlan,
        VideoInfo,
    )
    from moviechat_desktop.engine.video.reference_frames import ReferenceFrameReader

log = logging.getLogger(__name__)

__all__ = ["END_SLACK_S", "MODES", "AnswerInfo", "Assistant", "EncodeStatus"]


class Assistant(AssistantQuestions, AssistantChat, AssistantEncoding, AssistantDialogue):
    """Owns the model, the current film's sampling plan and memory, and the conversation.

    ``use_cache=False`` neither reads nor writes the memory cache; ``keep_history=False``
    neither restores nor records conversations.
    """

    def __init__(
        self,
        settings: AppSettings | None = None,
        model_dir: str | Path | None = None,
        use_cache: bool = True,
        keep_history: bool = True,
    ) -> None:
        self.settings = settings or load_settings()
        self.use_cache = use_cache
        self.keep_history = keep_history
        chosen = model_dir if model_dir is not None else self.settings.model.model_dir
        self.model_dir: Path | None = Path(chosen) if chosen else None
        self._model: MovieChatModel | None = None
        self._video: VideoInfo | None = None
        self._plan: SamplingPlan | None = None
        self._memory: FilmMemory | None = None
        # the plan's frames: exact (FrameDecoder) or nearest reference pictures (plan_reader.py)
        self._decoder: FrameDecoder | ReferenceFrameReader | None = None
        # breakpoint frames: a full-size reader opened in the background when a film opens
        self._grabber: GrabberOpener | None = None
        # the breakpoint picture encoded ahead (prepare_breakpoint): (key, (1, Q, D) tokens)
        self._prepared_picture: tuple[tuple, Any] | None = None
        self._gaps = DecodeGaps()  # fragments that could not be decoded (memory/gaps.py)
        self._conversation: Conversation | None = None
        self._encode_seconds = 0.0
        self._recent_fps = 0.0
        self.last_answer = AnswerInfo()
        self.load_seconds = 0.0
        self.device_choice: DeviceChoice | None = None
        self._model_paths: ModelPaths | None = None
        self._store: FilmStore | None = None
        self._conversation_id: str | None = None
        self._answer_limit: int | None = None
        self._dialogue: FilmDialogue | None = None
        self._speech_model: SpeechModel | None = None  # faster-whisper, shared by all films
        # How the open film's frames arrive when a client uploads them (the server side of the
        # remote engine), e.g. "uploaded-jpeg-q90"; None when decoded here from the film file.
        # Part of the memory cache key: uploaded and locally decoded memories never mix.
        self.frame_transport: str | None = None

    # ------------------------------------------------------------------ model
    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> MovieChatModel:
        if self._model is None:
            self.load_model()
        assert self._model is not None
        return self._model

    @property
    def device_label(self) -> str:
        if self._model is None:
            return "model not loaded"
        return self._model.device_label

    def load_model(self) -> None:
        """Load the model (slow). Raises ``WeightsMissing`` when no weights are installed."""
        if self._model is not None:
            return
        start = time.perf_counter()
        paths = self._resolve_paths()  # before importing torch: missing weights are told at once
        from moviechat_desktop.engine.model.device import detect_device_choice
        from moviechat_desktop.engine.model.movie_chat import MovieChatModel

        choice = detect_device_choice(
            requested=self.settings.model.precision,
            device=self.settings.model.device,
            llama_dir=str(paths.llama_dir),
        )
        if choice.device == "cpu" and choice.dtype_name == "bfloat16":
            log.warning("%s", choice.reason)  # said once, where the user can see why
        self._model = MovieChatModel.load(
            paths,
            device=choice.device,
            dtype=choice.dtype,
            quantization=choice.quantization_config(),
            plan=choice.plan,
            position_table=self._position_table_setting(),
        )
        self.device_choice = choice
        self._model_paths = paths
        self.load_seconds = time.perf_counter() - start
        log.info("model loaded in %.2f s on %s", self.load_seconds, self._model.device_label)
        self._recheck_cache()

    def use_model_of(self, other: Assistant) -> None:
        """Share ``other``'s model, loading it first (a server holds one model for all the
        films it has open, one ``Assistant`` per film)."""
        other.load_model()
        self._model, self.device_choice = other._model, other.device_choice
        self._model_paths, self.load_seconds = other._model_paths, other.load_seconds
        self.model_dir = other.model_dir
        self._recheck_cache()

    def _position_table_setting(self) -> str:
        """``model.position_table``; an unknown value is "trained" (a hand-edited file never
        stops the app)."""
        from moviechat_desktop.engine.model.positions import POSITION_TABLES

        value = self.settings.model.position_table
        if value not in POSITION_TABLES:
            log.warning("model.position_table %r unknown; using 'trained'", value)
            return "trained"
        return value

    def _resolve_paths(self) -> ModelPaths:
        """Where the weights are (cheap: no loading). ``WeightsMissing``/``WeightsCorrupt``."""
        from moviechat_desktop.engine.model.paths import ModelPaths

        if self._model_paths is not None:
            return self._model_paths
        if self.model_dir is not None:
            return ModelPaths.from_reference_dir(self.model_dir)
        from moviechat_desktop.engine.weights import resolve_model_paths

        return resolve_model_paths()

    # ------------------------------------------------------------------ film
    @property
    def video(self) -> VideoInfo | None:
        return self._video

    def open(self, path: str | Path, subtitles: str | Path | None = None) -> VideoInfo:
        """Probe ``path`` and prepare an empty memory for it. Raises ``VideoError``.

        ``subtitles``: a subtitle file the user added (``DialogueError`` when it cannot be
        read; then nothing changes, the previous film stays open).
        """
        from moviechat_desktop.engine.dialogue.subtitle_file import read_subtitle_file
        from moviechat_desktop.engine.video.frames import probe

        info = probe(path)
        plan = self.plan_for(info)
        added = None
        if subtitles is not None:
            subtitles = Path(subtitles).expanduser()
            added = read_subtitle_file(subtitles, info.duration_s, info.fps)
        self.close()
        self._video, self._plan = info, plan
        self._open_store(info)
        self._grabber = GrabberOpener(info.path)  # for the first breakpoint question
        self._open_dialogue(info, added, subtitles)
        return info

    def plan_for(self, info: VideoInfo) -> SamplingPlan:
        """The sampling plan of a film under the current sampling settings."""
        from moviechat_desktop.engine.video.sampling import plan_for_settings

        return plan_for_settings(info, self.settings.sampling)

    def open_uploaded(
        self, info: VideoInfo, plan: SamplingPlan, film_id: str, transport: str
    ) -> VideoInfo:
        """Open a film this process cannot read: a client decodes ``plan`` itself and sends the
        frames (``encode_frames_for``) and the breakpoint pictures (``ask(frame=...)``).
        ``film_id`` is the client's content fingerprint; ``transport`` names how the frames
        travel (it joins the memory cache key)."""
        self.close()
        self.frame_transport = transport
        self._video, self._plan = info, plan
        self._open_store(info, film_id=film_id)
        return info

    def close(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
        self._decoder = None
        if self._grabber is not None:
            self._grabber.close()
        self._grabber = None
        self._prepared_picture = None
        if self._store is not None:
            self._store.close()
        self._store = None
        self._video = self._plan = self._memory = None
        self._dialogue = None
        self.frame_transport = None
        self._gaps.clear()
        self._encode_seconds = 0.0
        self._recent_fps = 0.0

    def shutdown(self) -> None:
        """Release the film and the model (the ``EngineClient`` API's end of life)."""
        self.close()
        self._model = None

    def _require_film(self) -> tuple[VideoInfo, SamplingPlan]:
        if self._video is None or self._plan is None:
            raise NotReady("no film is open")
        return self._video, self._plan

    def _require_memory(self) -> FilmMemory:
        """The film's memory, created on first use (it needs the model's memory settings)."""
        if self._memory is None:
            from moviechat_desktop.engine.memory.film_memory import FilmMemory

            self._require_film()
            self._memory = FilmMemory(self.model.config.memory)
        return self._memory

    # ------------------------------------------------------------------ persistence
    def _open_store(self, info: VideoInfo, film_id: str | None = None) -> None:
        """Fingerprint the film, restore its cached memory and its latest conversation."""
        from moviechat_desktop.engine.store.chat_history import to_conversation
        from moviechat_desktop.engine.store.film_store import FilmStore

        self._store = FilmStore(info.path, keep_history=self.keep_history, film_id=film_id)
        self._attach_cache()
        self._conversation_id, records = self._store.latest_conversation()
        self._conversation = to_conversation(records)

    def _attach_cache(self) -> None:
        from moviechat_desktop.engine.memory.film_memory import FilmMemory
        from moviechat_desktop.engine.store.film_store import encoder_identity

        if not self.use_cache or self._store is None or self._plan is None:
            return
        try:
            paths = self._resolve_paths()
            identity, config = encoder_identity(paths, self.settings.model, self._model)
        except (MovieChatError, OSError) as err:  # no weights yet: retried by load_model
            log.debug("no memory cache before the model is available: %s", err)
            return
        if self.frame_transport is not None:
            identity = {**identity, "frames": self.frame_transport}
        entry = self._store.entry
        if entry is not None and entry.key.model != identity:
            # the model runs in another dtype than predicted: the restored tokens do not fit
            log.info("memory cache switched to the loaded model's identity")
            self._memory = None
        if self._memory is None:
            self._memory = FilmMemory(config.memory)
        self._store.attach_cache(
            identity, self.settings.sampling, self.settings.cache, self._plan, self._memory
        )

    def _recheck_cache(self) -> None:
        """After loading the model: attach or correct the open film's cache entry."""
        if self._store is not None:
            self._attach_cache()

    @property
    def film_id(self) -> str | None:
        """The open film's content fingerprint (None when none is open or it is unreadable)."""
        return None if self._store is None else self._store.film_id

    @property
    def cache_restored(self) -> int:
        """How many fragments the last ``open`` (or model load) took from the cache."""
        return 0 if self._store is None else self._store.restored

    def clear_cache(self) -> ClearResult:
        """Delete every cached memory no process is using (the open film's entry is kept)."""
        from moviechat_desktop.engine.store.film_cache import FilmCache

        return FilmCache.from_settings(self.settings.cache).clear()
