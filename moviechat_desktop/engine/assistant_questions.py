"""The ``Assistant``'s answer to a question: its checks, the prompt within the decoder's
budget, the memory's frames (with the breakpoint picture), the streamed answer and the
``AnswerInfo`` of what it did.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from moviechat_desktop.engine.assistant_results import END_SLACK_S, MODES, AnswerInfo
from moviechat_desktop.engine.errors import Cancelled, MovieChatError, NotReady, VideoError
from moviechat_desktop.engine.progress import CancelToken
from moviechat_desktop.engine.video.grabber_opener import GrabberOpener

if TYPE_CHECKING:
    from moviechat_desktop.engine.dialogue.lines import Dialogue
    from moviechat_desktop.engine.model.llm import Conversation, GenerationSettings
    from moviechat_desktop.engine.model.prompt import BuiltPrompt


class AssistantQuestions:
    """Part of ``Assistant`` (engine/assistant.py), whose ``__init__`` sets the state used here."""

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
            at_s = self._moment_in_film(at_s, info.duration_s)
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
                    current = model.encode_frames(pixels)  # (1, Q, D)
                elif self.frame_transport is not None:
                    raise NotReady("a breakpoint question needs the picture at that moment")
                else:  # prepared when the player paused there, or now
                    current = self._breakpoint_picture(at_s)
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

    def prepare_breakpoint(self, at_s: float) -> bool:
        """Get the picture on screen at ``at_s`` ready for a breakpoint question: decoded at
        full size and encoded now — the player has just paused there — so that the question
        typed meanwhile pays neither (on a 1080p film with a keyframe every ~10 s the exact
        picture alone costs 0.4-1.3 s to decode). The next breakpoint question showing the same
        frame uses it; anything else replaces it. Returns False when there is nothing to
        prepare (no film, pictures uploaded by a client, no model loaded yet); raises what the
        question would (``VideoError`` outside the film, ``VideoDecodeError``)."""
        import torch

        info = self._video
        if info is None or self.frame_transport is not None or self._model is None:
            return False
        at_s = self._moment_in_film(at_s, info.duration_s)
        with torch.inference_mode():
            self._breakpoint_picture(at_s)
        return True

    @staticmethod
    def _moment_in_film(at_s: float, duration_s: float) -> float:
        """A breakpoint's time, checked (``VideoError`` outside the film) and clamped: the
        player's clock may run a little past the last video frame (the container can outlast
        the stream)."""
        from moviechat_desktop.engine.video.probe import format_time

        if not -END_SLACK_S <= at_s <= duration_s + END_SLACK_S:
            raise VideoError(
                f"{format_time(at_s)} is outside the film "
                f"({format_time(0.0)} to {format_time(duration_s)})"
            )
        return min(max(at_s, 0.0), duration_s)

    def _breakpoint_picture(self, at_s: float) -> Any:
        """The encoded picture on screen at ``at_s`` ``(1, Q, D)``: the prepared one when it
        shows the same frame to the same model, else decoded and encoded now (and kept)."""
        model = self.model
        info, _ = self._require_film()
        if self._grabber is None:
            self._grabber = GrabberOpener(info.path)
        grabber = self._grabber.get()  # opened when the film opened
        index = grabber.index_at(at_s)
        key = (str(info.path), index, model.config.image_size, id(model))
        prepared = self._prepared_picture
        if prepared is not None and prepared[0] == key:
            return prepared[1]
        current = model.encode_frames(grabber.grab_index(index, model.config.image_size, at_s))
        self._prepared_picture = (key, current)
        return current

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
