"""The facade every front end calls: open a film, encode it into memory, ask questions.

The GUI (through one worker thread), the CLI, the tests and the benchmarks all go through
``Assistant``, so a question asked in the terminal takes exactly the GUI's path.

An ``Assistant`` is not thread-safe: exactly one thread owns it. Encoding is done one fragment
at a time (``encode_step``) so the owner can interleave questions and cancel between steps.
Heavy modules (torch, transformers, decord) are imported lazily: importing this module is cheap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from moviechat_desktop.engine.errors import MovieChatError, NotReady, VideoError
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.settings import AppSettings, load_settings

if TYPE_CHECKING:
    from moviechat_desktop.engine.device import DeviceChoice
    from moviechat_desktop.engine.llm import Conversation, GenerationSettings
    from moviechat_desktop.engine.memory import FilmMemory
    from moviechat_desktop.engine.model import MovieChatModel
    from moviechat_desktop.engine.video import FrameDecoder, SamplingPlan, VideoInfo

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

    @property
    def fraction(self) -> float:
        return 0.0 if self.fragments_total == 0 else self.fragments_done / self.fragments_total


@dataclass
class AnswerInfo:
    """What the last ``ask`` did, for ``--json`` and the benchmarks."""

    mode: str = "global"
    at_s: float | None = None
    memory_frames: int = 0  # frames fed to the video Q-Former
    first_token_s: float | None = None  # from the call to the first text chunk
    answer_s: float = 0.0  # from the call to the last chunk
    chunks: int = 0
    timings: dict[str, float] = field(default_factory=dict)


class Assistant:
    """Owns the model, the current film's sampling plan and memory, and the conversation."""

    def __init__(
        self, settings: AppSettings | None = None, model_dir: str | Path | None = None
    ) -> None:
        self.settings = settings or load_settings()
        chosen = model_dir if model_dir is not None else self.settings.model.model_dir
        self.model_dir: Path | None = Path(chosen) if chosen else None
        self._model: MovieChatModel | None = None
        self._video: VideoInfo | None = None
        self._plan: SamplingPlan | None = None
        self._memory: FilmMemory | None = None
        self._decoder: FrameDecoder | None = None
        self._conversation: Conversation | None = None
        self._encode_seconds = 0.0
        self._recent_fps = 0.0
        self.last_answer = AnswerInfo()
        self.load_seconds = 0.0
        self.device_choice: DeviceChoice | None = None

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
        from moviechat_desktop.engine.device import detect_device_choice
        from moviechat_desktop.engine.model import MovieChatModel
        from moviechat_desktop.engine.model_paths import ModelPaths

        start = time.perf_counter()
        if self.model_dir is not None:
            paths = ModelPaths.from_reference_dir(self.model_dir)
        else:
            from moviechat_desktop.engine.weights import resolve_model_paths

            paths = resolve_model_paths()
        choice = detect_device_choice(
            requested=self.settings.model.precision, device=self.settings.model.device
        )
        self._model = MovieChatModel.load(
            paths,
            device=choice.device,
            dtype=choice.dtype,
            quantization=choice.quantization_config(),
        )
        self.device_choice = choice
        self.load_seconds = time.perf_counter() - start
        log.info("model loaded in %.2f s on %s", self.load_seconds, self._model.device_label)

    # ------------------------------------------------------------------ film
    @property
    def video(self) -> VideoInfo | None:
        return self._video

    def open(self, path: str | Path) -> VideoInfo:
        """Probe ``path`` and prepare an empty memory for it. Raises ``VideoError``."""
        from moviechat_desktop.engine.video import plan_fps, plan_fragments, probe

        info = probe(path)
        sampling = self.settings.sampling
        if sampling.plan == "fps":
            plan = plan_fps(
                info, fps=sampling.fps, frames_per_fragment=sampling.frames_per_fragment
            )
        else:
            plan = plan_fragments(
                info,
                n_fragments=sampling.n_fragments,
                frames_per_fragment=sampling.frames_per_fragment,
            )
        self.close()
        self._video, self._plan = info, plan
        self.new_conversation()
        return info

    def close(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
        self._decoder = None
        self._video = self._plan = self._memory = None
        self._encode_seconds = 0.0
        self._recent_fps = 0.0

    def _require_film(self) -> tuple[VideoInfo, SamplingPlan]:
        if self._video is None or self._plan is None:
            raise NotReady("no film is open")
        return self._video, self._plan

    def _require_memory(self) -> FilmMemory:
        """The film's memory, created on first use (it needs the model's memory settings)."""
        if self._memory is None:
            from moviechat_desktop.engine.memory import FilmMemory

            self._require_film()
            self._memory = FilmMemory(self.model.config.memory)
        return self._memory

    def _done_fragments(self) -> list[int]:
        return [] if self._memory is None else list(self._memory.fragment_indices())

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
            finished=len(done) == len(self._plan.fragments),
        )

    def _next_fragment(self) -> int | None:
        _, plan = self._require_film()
        done = set(self._done_fragments())
        for fragment in plan.fragments:
            if fragment.index not in done:
                return fragment.index
        return None

    def encode_step(self, cancel: CancelToken | None = None) -> EncodeStatus:
        """Encode the next fragment not yet in memory; return the new status."""
        from moviechat_desktop.engine.video import FrameDecoder, normalize

        info, plan = self._require_film()
        index = self._next_fragment()
        if index is None:
            return self.status()
        if cancel is not None:
            cancel.raise_if_cancelled()
        model = self.model
        memory = self._require_memory()
        start = time.perf_counter()
        if self._decoder is None:
            self._decoder = FrameDecoder(info.path, size=model.config.image_size)
        fragment = plan.fragments[index]
        frames = self._decoder.decode(fragment.frame_indices)  # (n, S, S, 3) uint8
        tokens = model.encode_frames(normalize(frames))  # (n, Q, D) float32 on the host
        memory.add_fragment(
            index, tokens, fragment.timestamps, start_s=fragment.start_s, end_s=fragment.end_s
        )
        elapsed = time.perf_counter() - start
        self._encode_seconds += elapsed
        self._recent_fps = len(fragment.frame_indices) / elapsed if elapsed > 0 else 0.0
        return self.status()

    def encode(self, cancel: CancelToken | None = None, on_progress=None) -> EncodeStatus:
        """Encode every remaining fragment (blocking); ``on_progress(status)`` after each."""
        status = self.status()
        while not status.finished:
            status = self.encode_step(cancel)
            if on_progress is not None:
                on_progress(status)
        return status

    @property
    def encode_seconds(self) -> float:
        return self._encode_seconds

    def covers(self, at_s: float) -> bool:
        """True when a breakpoint question at ``at_s`` can be answered now."""
        if self._plan is None:
            return False
        needed = self._plan.fragment_at(at_s).index
        done = set(self._done_fragments())
        return all(i in done for i in range(needed + 1))

    # ------------------------------------------------------------------ questions
    def new_conversation(self) -> None:
        from moviechat_desktop.engine.llm import Conversation

        self._conversation = Conversation()

    @property
    def conversation(self) -> Conversation:
        if self._conversation is None:
            self.new_conversation()
        assert self._conversation is not None
        return self._conversation

    def generation_settings(self) -> GenerationSettings:
        from moviechat_desktop.engine.llm import GenerationSettings

        g = self.settings.generation
        return GenerationSettings(
            greedy=g.greedy,
            max_new_tokens=g.max_new_tokens,
            top_p=g.top_p,
            temperature=g.temperature,
        )

    def ask(
        self,
        question: str,
        mode: str = "global",
        at_s: float | None = None,
        settings: GenerationSettings | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[str]:
        """Answer ``question``; yields text chunks as they are generated.

        ``mode="global"`` asks about the whole film (everything encoded so far);
        ``mode="breakpoint"`` about the moment ``at_s``. Raises ``NotReady`` when the memory it
        needs does not exist yet. The finished answer joins the conversation.
        """
        import torch

        from moviechat_desktop.engine.video import frame_at

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
        with torch.inference_mode():
            if mode == "global":
                at_s = None
                frames = memory.global_frames()  # (L, Q, D)
            else:
                if at_s is None:
                    raise NotReady("a breakpoint question needs a time (at_s)")
                if not -END_SLACK_S <= at_s <= info.duration_s + END_SLACK_S:
                    raise VideoError(
                        f"{at_s:.1f} s is outside the film (0 to {info.duration_s:.1f} s)"
                    )
                # The player's clock may run a little past the last video frame (the
                # container can outlast the stream): clamp to the film.
                at_s = min(max(at_s, 0.0), info.duration_s)
                if not self.covers(at_s):
                    status = self.status()
                    raise NotReady(
                        f"the assistant has not watched up to {at_s:.1f} s yet "
                        f"({status.fragments_done}/{status.fragments_total} fragments encoded)"
                    )
                t0 = time.perf_counter()
                pixels = frame_at(info.path, at_s, size=model.config.image_size)  # (1, 3, S, S)
                current = model.encode_frames(pixels)  # (1, Q, D)
                timings["current_frame_s"] = time.perf_counter() - t0
                frames = memory.breakpoint_frames(at_s, current)
            t0 = time.perf_counter()
            visual = model.visual_tokens(frames)  # (1, Qv, H_llm)
            timings["video_qformer_s"] = time.perf_counter() - t0
        info_out = AnswerInfo(mode=mode, at_s=at_s, memory_frames=int(frames.shape[0]))
        info_out.timings = timings
        self.last_answer = info_out
        generation = settings or self.generation_settings()
        for chunk in model.stream_answer(visual, self.conversation, question, generation, cancel):
            if info_out.first_token_s is None:
                info_out.first_token_s = time.perf_counter() - start
            info_out.chunks += 1
            yield chunk
        info_out.answer_s = time.perf_counter() - start
