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
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moviechat_desktop.engine.errors import (
    Cancelled,
    MovieChatError,
    NotReady,
    VideoDecodeError,
    VideoError,
)
from moviechat_desktop.engine.memory.gaps import DecodeGaps
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.settings import AppSettings, load_settings
from moviechat_desktop.engine.video.grabber_opener import GrabberOpener

if TYPE_CHECKING:
    from moviechat_desktop.engine.dialogue.embedded import SubtitleTrack
    from moviechat_desktop.engine.dialogue.film_dialogue import FilmDialogue
    from moviechat_desktop.engine.dialogue.lines import Dialogue
    from moviechat_desktop.engine.dialogue.speech import SpeechModel
    from moviechat_desktop.engine.memory.film_memory import FilmMemory
    from moviechat_desktop.engine.model.device import DeviceChoice
    from moviechat_desktop.engine.model.llm import Conversation, GenerationSettings
    from moviechat_desktop.engine.model.movie_chat import MovieChatModel
    from moviechat_desktop.engine.model.paths import ModelPaths
    from moviechat_desktop.engine.model.prompt import BuiltPrompt
    from moviechat_desktop.engine.store.chat_history import ChatRecord, ConversationSummary
    from moviechat_desktop.engine.store.film_cache import ClearResult
    from moviechat_desktop.engine.store.film_store import FilmStore
    from moviechat_desktop.engine.video.frames import (
        FrameDecoder,
        SamplingPlan,
        VideoInfo,
    )
    from moviechat_desktop.engine.video.reference_frames import ReferenceFrameReader

log = logging.getLogger(__name__)

MODES = ("global", "breakpoint")
END_SLACK_S = 1.0  # a breakpoint this far past the last frame still means "the end"


@dataclass(frozen=True)
class EncodeStatus:
    """A small immutable snapshot of the encoding of the current film."""

    fragments_done: int
    fragments_total: int
    frames_done: int
    frames_total: int
    covered: tuple[tuple[float, float], ...]  # time ranges (s) already in memory, merged
    frames_per_s: float  # recent encoding speed (decode + model + memory)
    duration_s: float
    finished: bool
    # speech recognition (when speech is the dialogue source): seconds of the film recognised,
    # the film's length, and the recognised ranges for the timeline; 0/0/() otherwise
    speech_done_s: float = 0.0
    speech_total_s: float = 0.0
    speech_covered: tuple[tuple[float, float], ...] = ()
    speech_pending: bool = False  # speech is the source and chunks remain (background work)
    speech_error: str | None = None  # why recognition stopped (undecodable audio…)
    # parts of the film that could not be decoded (a damaged file): skipped, retried on reopen
    gaps: tuple[tuple[float, float], ...] = ()

    @property
    def fraction(self) -> float:
        return 0.0 if self.fragments_total == 0 else self.fragments_done / self.fragments_total


@dataclass
class AnswerInfo:
    """What the last ``ask`` did, for ``--json`` and the benchmarks."""

    mode: str = "global"
    at_s: float | None = None
    memory_frames: int = 0  # frames fed to the video Q-Former
    first_token_s: float | None = None  # from the call to the decoder's first token
    first_text_s: float | None = None  # from the call to the first text shown (chunk)
    tokens: int = 0  # tokens the decoder generated (the stop sequence included)
    answer_s: float = 0.0  # from the call to the last chunk
    chunks: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    dialogue_source: str = "none"  # where the film's dialogue came from (lines.SOURCES)
    dialogue_lines: int = 0  # dialogue lines that went into the prompt
    turns_dropped: int = 0  # earlier turns left out of the prompt for room
    prompt: str = ""  # the text given to the decoder, with the video placeholder
    gaps: tuple[tuple[float, float], ...] = ()  # damaged parts the answer could not see
    # the chat history's ids of the question and of the answer (None when not saved), whether
    # the answer was stopped, and the coverage note of a whole-film answer from part of it
    question_id: str | None = None
    answer_id: str | None = None
    stopped: bool = False
    coverage: str = ""


class Assistant:
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
        self._speech_turn = False  # background_step alternates memory and speech
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

    def _open_dialogue(self, info: VideoInfo, added: Any, added_path: Path | None) -> None:
        from moviechat_desktop.engine.dialogue.film_dialogue import FilmDialogue

        self._dialogue = FilmDialogue(
            info,
            self.film_id,
            self.settings.dialogue,
            speech_model=self._speech_model,
            load_speech_model=self._load_speech_model,
            added=added,
            added_path=added_path if added is not None else None,
        )
        self._dialogue.current()  # settle the source now, so status() stays cheap

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

    def _record(
        self,
        role: str,
        text: str,
        mode: str,
        at_s: float | None,
        settings: GenerationSettings | None = None,
        **v2: Any,
    ) -> str | None:
        """Save one message (``v2``: ``replaces``, ``stopped``, ``coverage``); its id."""
        if self._store is not None and self._conversation_id is not None:
            extra = None if settings is None else dataclasses.asdict(settings)
            return self._store.record(
                self._conversation_id, role, text, mode=mode, at_s=at_s, settings=extra, **v2
            )
        return None

    @property
    def film_id(self) -> str | None:
        """The open film's content fingerprint (None when none is open or it is unreadable)."""
        return None if self._store is None else self._store.film_id

    @property
    def cache_restored(self) -> int:
        """How many fragments the last ``open`` (or model load) took from the cache."""
        return 0 if self._store is None else self._store.restored

    @property
    def conversation_id(self) -> str | None:
        return self._conversation_id

    @property
    def history_error(self) -> str | None:
        """Why the last chat message could not be saved (disk full…); None when it was."""
        return None if self._store is None else self._store.history_error

    def conversation_records(self, conversation_id: str | None = None) -> list[ChatRecord]:
        """The messages of a conversation of the open film (default: the current one)."""
        if self._store is None or self._store.history is None:
            return []
        return self._store.history.conversation(conversation_id or self._conversation_id or "")

    def conversations(self) -> list[ConversationSummary]:
        """The open film's conversations, oldest first (the current one once it has a message)."""
        if self._store is None or self._store.history is None:
            return []
        return self._store.history.conversations()

    def open_conversation(self, conversation_id: str) -> None:
        """Continue an earlier conversation of the open film (its follow-ups build on it)."""
        from moviechat_desktop.engine.store.chat_history import to_conversation

        records = self.conversation_records(conversation_id)
        if not records:
            raise NotReady(f"no conversation {conversation_id!r} about this film")
        self._conversation_id, self._conversation = conversation_id, to_conversation(records)

    def export_markdown(self, conversation_id: str | None = None) -> str:
        """A conversation of the open film as Markdown (default: the current one)."""
        from moviechat_desktop.engine.store.chat_history import export_markdown

        video, _ = self._require_film()
        return export_markdown(self.conversation_records(conversation_id), video.path.name)

    def clear_cache(self) -> ClearResult:
        """Delete every cached memory no process is using (the open film's entry is kept)."""
        from moviechat_desktop.engine.store.film_cache import FilmCache

        return FilmCache.from_settings(self.settings.cache).clear()

    def missing_fragments(self) -> list[int]:
        """Indices of the open film's fragments not in memory yet, in order."""
        _, plan = self._require_film()
        done = set(self._done_fragments())
        return [f.index for f in plan.fragments if f.index not in done]

    def _done_fragments(self) -> list[int]:
        return [] if self._memory is None else list(self._memory.fragment_indices())

    # ------------------------------------------------------------------ dialogue
    @property
    def settings(self) -> AppSettings:
        return self._settings

    @settings.setter
    def settings(self, value: AppSettings) -> None:
        """New settings (the window replaces them): the open film's dialogue follows at once
        (e.g. "Use dialogue" switched off hides its lines and pauses speech recognition)."""
        self._settings = value
        film_dialogue = getattr(self, "_dialogue", None)
        if film_dialogue is not None:
            film_dialogue.settings = value.dialogue

    @property
    def dialogue(self) -> Dialogue:
        """The open film's dialogue now (``Dialogue.none()`` when none, off, or no film)."""
        from moviechat_desktop.engine.dialogue.lines import Dialogue

        if self._dialogue is None:
            return Dialogue.none("No film is open")
        return self._dialogue.current()

    def set_dialogue_source(
        self, source: str = "auto", file: str | Path | None = None, track: int | None = None
    ) -> Dialogue:
        """Choose where the open film's dialogue comes from; return the dialogue now.

        ``source``: "auto" (the player's track, an added file, a sidecar, the default embedded
        track, speech), or one of "file", "sidecar", "embedded", "speech", "none". ``file``: a
        subtitle file the user added (remembered for the film). ``track``: the subtitle track
        the player shows, as an index among the container's subtitle streams in ffprobe's
        order (-1: the player shows none; None: unchanged). Raises ``DialogueError`` when the
        choice cannot be used (the file or track is unreadable, no sidecar exists…).
        """
        if self._dialogue is None:
            raise NotReady("no film is open")
        return self._dialogue.choose(source, file=file, track=track)

    def subtitle_tracks(self) -> list[SubtitleTrack]:
        """The open film's subtitle streams (``.text`` False for bitmap ones), ffprobe's order."""
        return [] if self._dialogue is None else list(self._dialogue.tracks())

    def use_dialogue(self, film_dialogue: Any) -> None:
        """Take the open film's dialogue from ``film_dialogue`` (``FilmDialogue``'s methods):
        a film opened with ``open_uploaded`` on a server, whose client sends the dialogue
        (``service/served_dialogue.py``)."""
        self._require_film()
        self._dialogue = film_dialogue

    def dialogue_step(self, cancel: CancelToken | None = None) -> bool:
        """Recognise the next ~30 s of speech when speech is the source; False when none left.

        Raises ``DialogueError`` once when the audio cannot be decoded (False after that).
        """
        if self._dialogue is None:
            return False
        return self._dialogue.step(cancel)

    def _load_speech_model(self) -> SpeechModel:
        from moviechat_desktop.engine.dialogue.speech import SpeechModel, resolve_speech_model

        folder = resolve_speech_model(self.settings.dialogue.speech_model)
        if self._speech_model is None or self._speech_model.folder != folder:
            self._speech_model = SpeechModel(folder, device=self.settings.model.device)
        return self._speech_model

    # ------------------------------------------------------------------ encoding
    def status(self) -> EncodeStatus:
        if self._video is None or self._plan is None:
            return EncodeStatus(0, 0, 0, 0, (), 0.0, 0.0, False)
        done = self._done_fragments()
        frames_done = sum(len(self._plan.fragments[i].frame_indices) for i in done)
        return EncodeStatus(
            fragments_done=len(done),
            fragments_total=len(self._plan.fragments),
            frames_done=frames_done,
            frames_total=self._plan.total_frames,
            covered=() if self._memory is None else tuple(self._memory.covered_ranges()),
            frames_per_s=self._recent_fps,
            duration_s=self._video.duration_s,
            finished=len(done) + len(self._gaps) >= len(self._plan.fragments),
            gaps=self._gaps.ranges(),
            **self._speech_status(),
        )

    def _speech_status(self) -> dict[str, Any]:
        if self._dialogue is None:
            return {}
        pending = self._dialogue.speech_pending()  # settles the source on the first call
        if self._dialogue.speech is None:
            return {}
        progress = self._dialogue.speech_progress()
        return {
            "speech_done_s": progress.done_s,
            "speech_total_s": progress.total_s,
            "speech_covered": progress.covered,
            "speech_pending": pending,
            "speech_error": progress.error,
        }

    def background_step(self, cancel: CancelToken | None = None) -> EncodeStatus:
        """One unit of the open film's background work, on the engine's schedule: a memory
        fragment (when the model is loaded) and a ~30 s speech chunk (when speech is the
        dialogue source) take turns. A speech failure is kept in the status
        (``speech_error``) and never stops the memory; a fragment's failure raises."""
        from moviechat_desktop.engine.errors import DialogueError

        status = self.status()
        memory_due = self.model_loaded and not status.finished
        if memory_due and not (status.speech_pending and self._speech_turn):
            self._speech_turn = True
            return self.encode_step(cancel)
        self._speech_turn = False
        if status.speech_pending:
            try:
                self.dialogue_step(cancel)
            except DialogueError as err:
                log.warning("speech recognition stopped: %s", err)
        return self.status()

    def _next_fragment(self) -> int | None:
        _, plan = self._require_film()
        done = set(self._done_fragments()) | self._gaps.indices
        for fragment in plan.fragments:
            if fragment.index not in done:
                return fragment.index
        return None

    def encode_step(self, cancel: CancelToken | None = None) -> EncodeStatus:
        """Encode the next fragment not yet in memory; return the new status."""
        from moviechat_desktop.engine.video.plan_reader import open_plan_reader

        info, plan = self._require_film()
        if self.frame_transport is not None:
            raise NotReady("this film's frames come from the client (encode_frames_for)")
        index = self._next_fragment()
        if index is None:
            return self.status()
        if cancel is not None:
            cancel.raise_if_cancelled()
        model = self.model
        start = time.perf_counter()
        if self._decoder is None:
            exact = self.settings.sampling.exact_frames
            self._decoder = open_plan_reader(info, model.config.image_size, exact)
        fragment = plan.fragments[index]
        try:
            frames = self._decoder.decode(fragment.frame_indices)  # (n, S, S, 3) uint8
        except VideoDecodeError as err:  # damaged here: skip it, as VLC does (memory/gaps.py)
            self._gaps.add(index, fragment.start_s, fragment.end_s, str(err))
            if len(self._gaps) == len(plan.fragments):  # nothing decodes: DESIGN §7's refusal
                raise VideoDecodeError(
                    f"'{info.path.name}' is damaged: none of its pictures can be decoded."
                ) from err
            return self.status()
        self._encode_fragment(index, frames, start)
        return self.status()

    def encode_frames_for(self, index: int, frames_uint8: Any) -> EncodeStatus:
        """Encode fragment ``index`` of the plan from frames decoded elsewhere (a client):
        ``(n, S, S, 3)`` uint8 RGB, ``n`` the fragment's planned frame count, ``S`` the
        model's input size. A fragment already in memory is left as it is."""
        import numpy as np
        import torch

        _, plan = self._require_film()
        if not 0 <= index < len(plan.fragments):
            raise MovieChatError(f"fragment {index} is outside 0..{len(plan.fragments) - 1}")
        size = self.model.config.image_size
        expected = (len(plan.fragments[index].frame_indices), size, size, 3)
        frames = np.asarray(frames_uint8)
        if frames.dtype != np.uint8 or frames.shape != expected:
            raise MovieChatError(
                f"fragment {index} needs uint8 frames shaped {expected}, "
                f"got {frames.dtype} {frames.shape}"
            )
        if index not in set(self._done_fragments()):
            self._encode_fragment(index, torch.from_numpy(frames), time.perf_counter())
        return self.status()

    def _encode_fragment(self, index: int, frames: Any, start: float) -> None:
        """Frames ``(n, S, S, 3)`` uint8 of fragment ``index`` → tokens into memory and cache."""
        from moviechat_desktop.engine.video.preprocess import normalize

        _, plan = self._require_film()
        model = self.model
        memory = self._require_memory()
        fragment = plan.fragments[index]
        # the uint8 frames go to the device (4x fewer bytes than float32) and are normalized there
        tokens = model.encode_frames(normalize(frames.to(model.device)))  # (n, Q, D) on the host
        memory.add_fragment(
            index, tokens, fragment.timestamps, start_s=fragment.start_s, end_s=fragment.end_s
        )
        if self._store is not None:
            self._store.save_fragment(memory, index)
        elapsed = time.perf_counter() - start
        self._encode_seconds += elapsed
        self._recent_fps = len(fragment.frame_indices) / elapsed if elapsed > 0 else 0.0
        return self.status()

    def encode(self, cancel: CancelToken | None = None, on_progress=None) -> EncodeStatus:
        """Encode every remaining fragment (blocking); ``on_progress(status)`` after each."""
        from moviechat_desktop.engine.progress import encode_to_the_end

        return encode_to_the_end(self, cancel, on_progress)

    @property
    def encode_seconds(self) -> float:
        return self._encode_seconds

    def covers(self, at_s: float) -> bool:
        """True when a breakpoint question at ``at_s`` can be answered now."""
        if self._plan is None:
            return False
        needed = self._plan.fragment_at(at_s).index
        done = set(self._done_fragments()) | self._gaps.indices  # a damaged part counts as seen
        return all(i in done for i in range(needed + 1))

    # ------------------------------------------------------------------ questions
    def new_conversation(self, conversation_id: str | None = None) -> None:
        """Start a new conversation; earlier ones stay in the film's history. ``conversation_id``
        names it (a client that started it elsewhere, e.g. before a server restart)."""
        from moviechat_desktop.engine.model.llm import Conversation
        from moviechat_desktop.engine.store.chat_history import new_conversation_id

        self._conversation = Conversation()
        self._conversation_id = conversation_id or new_conversation_id()

    @property
    def conversation(self) -> Conversation:
        if self._conversation is None:
            self.new_conversation()
        assert self._conversation is not None
        return self._conversation

    @staticmethod
    def _supplied_frame(frame: Any, size: int) -> Any:
        """A client's breakpoint picture ``(S, S, 3)`` uint8 → ``(1, 3, S, S)`` normalized."""
        import numpy as np
        import torch

        from moviechat_desktop.engine.video.preprocess import normalize

        picture = np.asarray(frame)
        if picture.dtype != np.uint8 or picture.shape != (size, size, 3):
            raise MovieChatError(
                f"the breakpoint picture must be uint8 shaped {(size, size, 3)}, "
                f"got {picture.dtype} {picture.shape}"
            )
        return normalize(torch.from_numpy(picture).unsqueeze(0))

    def answer_length_limit(self) -> int:
        """The most ``max_new_tokens`` that fit beside the video and the fixed prompt in the
        decoder's context, read from the model's config and tokenizer files (no weights are
        loaded, no film needs to be open). Raises ``WeightsMissing``."""
        from moviechat_desktop.engine.model.llm import GenerationSettings
        from moviechat_desktop.engine.model.prompt import answer_limit_for

        if self._answer_limit is None:
            self._answer_limit = answer_limit_for(
                self._resolve_paths(), GenerationSettings().max_length
            )
        return self._answer_limit

    def _question_dialogue(self) -> Dialogue:
        """The open film's dialogue for a prompt: none when switched off in the settings."""
        from moviechat_desktop.engine.dialogue.lines import Dialogue

        if not self.settings.dialogue.enabled:
            return Dialogue.none("Dialogue is switched off in Settings")
        return self.dialogue

    def _prompt_for(
        self,
        question: str,
        mode: str,
        at_s: float | None,
        generation: GenerationSettings,
        conversation: Conversation | None = None,
    ) -> tuple[Dialogue, BuiltPrompt]:
        """The film's dialogue and the prompt for ``question`` after ``conversation`` (default:
        the current one) within the decoder's budget (``PromptTooLong`` when it cannot fit):
        cheap, no video work."""
        from moviechat_desktop.engine.dialogue.selection import candidate_lines

        dialogue = self._question_dialogue()
        lines = candidate_lines(dialogue, question, mode, at_s)
        context = self.conversation if conversation is None else conversation
        prompt = self.model.build_prompt(context, question, generation, lines)
        return dialogue, prompt

    def generation_settings(self) -> GenerationSettings:
        from moviechat_desktop.engine.model.llm import GenerationSettings

        return GenerationSettings.from_defaults(self.settings.generation)

    def ask(
        self,
        question: str,
        mode: str = "global",
        at_s: float | None = None,
        settings: GenerationSettings | None = None,
        cancel: CancelToken | None = None,
        *,
        record_question: bool = True,
        frame: Any = None,
    ) -> Iterator[str]:
        """Answer ``question``; yields text chunks as they are generated.

        ``mode="global"`` asks about the whole film (everything encoded so far);
        ``mode="breakpoint"`` about the moment ``at_s``. Raises ``NotReady`` when the memory it
        needs does not exist yet. The finished answer joins the conversation.
        ``record_question=False``: the question is already in the chat history (an engine
        process died before answering it and it is asked again): only the answer is saved.
        ``frame``: the breakpoint picture, already squashed to the model's input size
        (``(S, S, 3)`` uint8), when the film file is elsewhere (``open_uploaded``).
        A stopped answer (``Cancelled``, or the caller closing the stream) is saved with the
        text written so far, marked stopped; it stays out of the model's context.
        """
        yield from self._answer(
            question, mode, at_s, settings, cancel, record_question=record_question, frame=frame
        )

    def regenerate(
        self,
        question_id: str,
        settings: GenerationSettings | None = None,
        cancel: CancelToken | None = None,
        *,
        frame: Any = None,
    ) -> Iterator[str]:
        """Answer question ``question_id`` of the current conversation again (same mode and
        time), streaming. The new answer replaces the old one on the conversation's branch
        (both stay in the history); the turns after it drop out of the branch and of the
        model's context, which is the branch up to the question. ``NotReady`` when the
        question is not on the current branch or the history is off."""
        from moviechat_desktop.engine.store.chat_history import to_conversation

        branch, index = self._question_on_branch(question_id)
        question = branch[index]
        after = branch[index + 1] if index + 1 < len(branch) else None
        options: dict[str, Any] = {"question_id": question.id}
        if after is not None and after.role == "assistant":
            options["replaces_answer"] = after.id
            options["record_question"] = False
        elif after is None:  # its answer was never saved: answer it now
            options["record_question"] = False
        else:  # unanswered, with turns after it: ask it again in its place
            options["replaces_question"] = question.id
        yield from self._answer(
            question.text,
            question.mode,
            question.at_s,
            settings,
            cancel,
            frame=frame,
            context=to_conversation(branch[:index]),
            **options,
        )

    def edit_question(
        self,
        question_id: str,
        text: str,
        settings: GenerationSettings | None = None,
        cancel: CancelToken | None = None,
        *,
        frame: Any = None,
    ) -> Iterator[str]:
        """Ask ``text`` in place of question ``question_id`` of the current conversation (its
        mode and time are kept), streaming the answer. The edited question replaces the old
        one on the branch (both stay in the history); the old question's answer and the turns
        after it drop out of the branch and of the model's context. ``NotReady`` as for
        ``regenerate``."""
        from moviechat_desktop.engine.store.chat_history import to_conversation

        branch, index = self._question_on_branch(question_id)
        old = branch[index]
        yield from self._answer(
            text,
            old.mode,
            old.at_s,
            settings,
            cancel,
            frame=frame,
            context=to_conversation(branch[:index]),
            replaces_question=old.id,
        )

    def _question_on_branch(self, question_id: str) -> tuple[list[ChatRecord], int]:
        """The current conversation's branch and the index of question ``question_id`` on it
        (or of the question that replaced it since)."""
        from moviechat_desktop.engine.store.chat_history import current_branch, find_on_branch

        self._require_film()
        if self._store is None or self._store.history is None:
            raise NotReady("regenerating or editing needs the chat history, which is off")
        if not isinstance(question_id, str) or not question_id:
            raise MovieChatError("no question was named")
        records = self.conversation_records()
        branch = current_branch(records)
        index = find_on_branch(branch, question_id, records)
        if index < 0 or branch[index].role != "user":
            raise NotReady("that question is not part of the current conversation")
        return branch, index

    def _coverage(self, mode: str) -> str:
        """The coverage note of a whole-film answer while the film is partly watched."""
        from moviechat_desktop.engine.store.chat_history import coverage_note

        status = self.status()
        if mode != "global" or status.finished or status.fragments_total == 0:
            return ""
        watched = status.covered[0][1] if status.covered and status.covered[0][0] <= 0.5 else 0.0
        return coverage_note(status.fraction, watched)

    def _last_question_id(self) -> str | None:
        """The id of the current branch's last question (asked again after a crash)."""
        from moviechat_desktop.engine.store.chat_history import current_branch

        branch = current_branch(self.conversation_records())
        return next((r.id for r in reversed(branch) if r.role == "user"), None)

    def _answer(
        self,
        question: str,
        mode: str,
        at_s: float | None,
        settings: GenerationSettings | None,
        cancel: CancelToken | None,
        *,
        record_question: bool = True,
        frame: Any = None,
        context: Conversation | None = None,
        question_id: str | None = None,
        replaces_question: str | None = None,
        replaces_answer: str | None = None,
    ) -> Iterator[str]:
        """``ask``'s work; ``context`` the turns the answer follows (default: the current
        conversation), ``replaces_*`` what the new question or answer replaces."""
        import torch

        from moviechat_desktop.engine.video.frames import format_time

        self.last_answer = AnswerInfo(mode=mode, at_s=at_s)
        question = question.strip()
        if not question:
            raise MovieChatError("the question is empty")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        info, _ = self._require_film()
        if not self._done_fragments():
            raise NotReady("nothing of the film has been encoded yet")
        memory = self._require_memory()
        model = self.model
        start = time.perf_counter()
        timings: dict[str, float] = {}
        if mode == "global":
            at_s = None
        else:
            if at_s is None:
                raise NotReady("a breakpoint question needs a time (at_s)")
            if not -END_SLACK_S <= at_s <= info.duration_s + END_SLACK_S:
                raise VideoError(
                    f"{format_time(at_s)} is outside the film "
                    f"({format_time(0.0)} to {format_time(info.duration_s)})"
                )
            # The player's clock may run a little past the last video frame (the
            # container can outlast the stream): clamp to the film.
            at_s = min(max(at_s, 0.0), info.duration_s)
            if not self.covers(at_s):
                status = self.status()
                raise NotReady(
                    f"the assistant has not watched up to {format_time(at_s)} yet "
                    f"({status.fragments_done}/{status.fragments_total} fragments encoded)"
                )
        # The budget is checked before any video work (PromptTooLong).
        generation = settings or self.generation_settings()
        t0 = time.perf_counter()
        conversation = self.conversation if context is None else context
        dialogue, prompt = self._prompt_for(question, mode, at_s, generation, conversation)
        timings["prompt_s"] = time.perf_counter() - t0
        with torch.inference_mode():
            if mode == "global":
                frames = memory.global_frames()  # (L, Q, D)
            else:
                assert at_s is not None
                t0 = time.perf_counter()
                if frame is not None:
                    pixels = self._supplied_frame(frame, model.config.image_size)
                elif self.frame_transport is not None:
                    raise NotReady("a breakpoint question needs the picture at that moment")
                else:
                    if self._grabber is None:
                        self._grabber = GrabberOpener(info.path)
                    grabber = self._grabber.get()  # opened when the film opened
                    pixels = grabber.grab(at_s, size=model.config.image_size)
                current = model.encode_frames(pixels)  # (1, Q, D)
                timings["current_frame_s"] = time.perf_counter() - t0
                frames = memory.breakpoint_frames(at_s, current)
            t0 = time.perf_counter()
            visual = model.visual_tokens(frames)  # (1, Qv, H_llm)
            timings["video_qformer_s"] = time.perf_counter() - t0
        info_out = AnswerInfo(mode=mode, at_s=at_s, memory_frames=int(frames.shape[0]))
        info_out.timings = timings
        info_out.dialogue_source = dialogue.source
        info_out.dialogue_lines = prompt.dialogue_lines
        info_out.turns_dropped = prompt.turns_dropped
        info_out.prompt = prompt.text
        info_out.gaps = self._gaps.ranges(until_s=at_s)
        info_out.coverage = coverage = self._coverage(mode)
        self.last_answer = info_out
        self._conversation = conversation  # the branch this answer continues
        if record_question:
            info_out.question_id = self._record(
                "user", question, mode, at_s, replaces=replaces_question
            )
        else:
            info_out.question_id = question_id or self._last_question_id()
        streams: list[Any] = []
        stream = model.stream_answer(
            visual,
            conversation,
            question,
            generation,
            cancel,
            prompt=prompt,
            on_stream=streams.append,
        )

        def token_times() -> None:
            first_at = streams[0].first_token_at if streams else None
            if first_at is not None and info_out.first_token_s is None:
                info_out.first_token_s = first_at - start
            info_out.tokens = len(streams[0].token_ids) if streams else 0

        written: list[str] = []
        try:
            for chunk in stream:
                if info_out.first_text_s is None:
                    info_out.first_text_s = time.perf_counter() - start
                token_times()
                info_out.chunks += 1
                written.append(chunk)
                yield chunk
        except (Cancelled, GeneratorExit):  # stopped: keep what was written, marked so
            info_out.stopped = True
            info_out.answer_s = time.perf_counter() - start
            info_out.answer_id = self._record(
                "assistant", "".join(written).strip(), mode, at_s, generation,
                replaces=replaces_answer, stopped=True, coverage=coverage,
            )  # fmt: skip
            raise
        info_out.answer_s = time.perf_counter() - start
        token_times()
        info_out.answer_id = self._record(
            "assistant", conversation.turns[-1].answer, mode, at_s, generation,
            replaces=replaces_answer, coverage=coverage,
        )  # fmt: skip
