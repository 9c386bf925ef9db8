"""Streaming generation: ``generate`` runs in a thread, text chunks come out as they form.

Stopping: at EOS, at ``max_new_tokens``, when the generated ids end with one of the
tokenizer's ``###`` id sequences (the original's ``StoppingCriteriaSub``), when the decoded text
contains ``###`` (however the tokens split it), or within a token of a cancel. The stop
string is never shown: text that could be the start of ``###`` is held back until the next
token settles it, and so are trailing whitespace and an incomplete UTF-8 character.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator

import torch

from moviechat_desktop.engine.errors import Cancelled
from moviechat_desktop.engine.model.llm import (
    STOP_STRING,
    GenerationSettings,
    LanguageModel,
    postprocess,
)
from moviechat_desktop.engine.model.tokenizer import TextTokenizer
from moviechat_desktop.engine.progress import CancelToken

log = logging.getLogger(__name__)
_END = None  # queue sentinel


def visible_text(text: str, final: bool) -> str:
    """What of the decoded ``text`` may be shown now: before ``###``, stripped, minus any tail
    that the next token could still turn into ``###`` (unless ``final``)."""
    cut = text.find(STOP_STRING)
    if cut >= 0:
        text, final = text[:cut], True
    text = text.lstrip()
    if not final:
        text = text.rstrip("\ufffd")  # an incomplete multi-byte character
        for k in range(len(STOP_STRING) - 1, 0, -1):
            if text.endswith(STOP_STRING[:k]):
                text = text[:-k]
                break
    return text.rstrip()


def _stop_criteria(tokenizer: TextTokenizer, stop_flags: list[threading.Event | CancelToken]):
    from transformers import StoppingCriteria, StoppingCriteriaList

    sequences = [list(s) for s in tokenizer.stop_id_sequences if s]

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
            # With inputs_embeds the ids are the generated tokens only (batch of 1).
            ids = input_ids[0].tolist()
            stop = (
                any(
                    flag.is_set() if isinstance(flag, threading.Event) else flag.cancelled
                    for flag in stop_flags
                )
                or any(ids[-len(s) :] == s for s in sequences)
                or STOP_STRING in tokenizer.decode(ids)
            )
            return torch.full(
                (input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device
            )

    return StoppingCriteriaList([_Stop()])


class _QueueStreamer:
    """A transformers streamer that forwards each step's new token ids to a queue and stamps
    (``time.perf_counter``) when the decoder produced its first one."""

    def __init__(self, sink: queue.Queue) -> None:
        self.sink = sink
        self.first_token_at: float | None = None

    def put(self, value: torch.Tensor) -> None:
        if value.dim() == 2:  # the prompt ids (empty with inputs_embeds): not part of the answer
            return
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.sink.put(value.view(-1)[:1].tolist())  # batch of 1

    def end(self) -> None:
        self.sink.put(_END)


class AnswerStream:
    """Iterate to get text chunks; afterwards ``answer`` (post-processed) and ``token_ids``.
    ``first_token_at``: ``time.perf_counter()`` when the decoder produced its first token
    (set during iteration, before that token's text, if any, is shown; None until then).

    Iteration raises ``Cancelled`` if ``cancel`` fired, or the generation thread's error.
    Closing the iterator early stops generation and joins the thread.
    """

    def __init__(
        self,
        llm: LanguageModel,
        embeds: torch.Tensor,
        settings: GenerationSettings,
        cancel: CancelToken | None = None,
    ) -> None:
        self.llm, self.embeds, self.settings, self.cancel = llm, embeds, settings, cancel
        self.token_ids: list[int] = []
        self.text = ""
        self.answer: str | None = None
        self.first_token_at: float | None = None
        self._stop = threading.Event()

    def _generation_config(self):
        from transformers import GenerationConfig

        s, hf = self.settings, self.llm.hf
        sampling = {"top_p": s.top_p, "temperature": s.temperature} if not s.greedy else {}
        pad = hf.generation_config.pad_token_id
        return GenerationConfig(
            max_new_tokens=s.max_new_tokens,
            do_sample=not s.greedy,
            num_beams=1,
            repetition_penalty=s.repetition_penalty,
            length_penalty=1.0,
            eos_token_id=self.llm.tokenizer.eos_id,
            pad_token_id=self.llm.tokenizer.eos_id if pad is None else pad,
            **sampling,
        )

    def _run(
        self, sink: queue.Queue, failure: list[BaseException], streamer: _QueueStreamer
    ) -> None:
        flags: list[threading.Event | CancelToken] = [self._stop]
        if self.cancel is not None:
            flags.append(self.cancel)
        try:
            with torch.inference_mode():
                if self.settings.seed is not None:
                    torch.manual_seed(self.settings.seed)
                self.llm.hf.generate(
                    inputs_embeds=self.embeds,
                    attention_mask=torch.ones(
                        self.embeds.shape[:2], dtype=torch.long, device=self.embeds.device
                    ),
                    generation_config=self._generation_config(),
                    stopping_criteria=_stop_criteria(self.llm.tokenizer, flags),
                    streamer=streamer,
                )
        except BaseException as err:  # re-raised in the consuming thread
            failure.append(err)
        finally:
            sink.put(_END)

    def __iter__(self) -> Iterator[str]:
        if self.cancel is not None and self.cancel.cancelled:  # stopped before it began
            raise Cancelled("answer cancelled")
        sink: queue.Queue = queue.Queue()
        failure: list[BaseException] = []
        streamer = _QueueStreamer(sink)
        thread = threading.Thread(
            target=self._run,
            args=(sink, failure, streamer),
            name="moviechat-generate",
            daemon=True,
        )
        thread.start()
        shown = 0
        try:
            while (ids := sink.get()) is not _END:
                if self.cancel is not None and self.cancel.cancelled:
                    break  # nothing more is shown after a stop (the thread ends within a token)
                if self.first_token_at is None:
                    self.first_token_at = streamer.first_token_at
                self.token_ids.extend(ids)
                self.text = self.llm.tokenizer.decode(self.token_ids)
                visible = visible_text(self.text, final=False)
                if len(visible) > shown:
                    yield visible[shown:]
                    shown = len(visible)
        finally:
            self._stop.set()
            thread.join()
        if failure:
            raise failure[0]
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled("answer cancelled")
        visible = visible_text(self.text, final=True)
        if len(visible) > shown:
            yield visible[shown:]
        self.answer = postprocess(self.text)
        log.debug("answer: %d tokens", len(self.token_ids))
