"""The Vicuna side of MovieChat: generation settings, conversation, embeddings.

The prompt's text and budget live in ``prompt.py``; the first question's prompt is the
original's (``inference.py``, Vicuna v0 style)::

    {SYSTEM}###Human: <Video><ImageHere></Video> {q1}###Assistant:

Our multi-turn addition appends each answered turn and the new question as text::

    {SYSTEM}###Human: <Video><ImageHere></Video> {q1}###Assistant: {a1}###Human: {q2}###Assistant:

``a1`` is the post-processed (stripped) answer. The prompt is split at ``<ImageHere>`` into
exactly two segments, each tokenized on its own (BOS only on the first); the visual tokens sit
between their embeddings. Streaming generation lives in ``streaming.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from moviechat_desktop.engine.dialogue.lines import DialogueLine
from moviechat_desktop.engine.model.prompt import (
    IMAGE_PLACEHOLDER,
    STOP_STRING,
    SYSTEM_PROMPT,
    dialogue_block,
    layout,
    neutralise,
    prompt_length,
)
from moviechat_desktop.engine.model.tokenizer import TextTokenizer

__all__ = [
    "IMAGE_PLACEHOLDER",
    "STOP_STRING",
    "SYSTEM_PROMPT",
    "Conversation",
    "GenerationSettings",
    "LanguageModel",
    "Turn",
    "postprocess",
]


@dataclass(frozen=True)
class GenerationSettings:
    """How an answer is generated (the original's ``Chat.answer`` defaults)."""

    greedy: bool = False  # False: nucleus sampling, as the original; True: argmax
    top_p: float = 0.9  # nucleus mass (sampling only)
    temperature: float = 1.0  # softmax temperature (sampling only)
    max_new_tokens: int = 300  # answer length cap
    max_length: int = 2000  # prompt + video + answer positions (budget: prompt.py)
    repetition_penalty: float = 1.0  # 1.0 = none
    seed: int | None = None  # seeds torch's RNG before sampling (reproducible answers)

    def __post_init__(self) -> None:
        if not 0 < self.max_new_tokens < self.max_length:
            raise ValueError("need 0 < max_new_tokens < max_length")
        if not 0 < self.top_p <= 1 or self.temperature <= 0 or self.repetition_penalty <= 0:
            raise ValueError("top_p must be in (0, 1]; temperature and repetition_penalty > 0")

    @classmethod
    def from_defaults(cls, defaults) -> GenerationSettings:
        """The settings of the user's ``[generation]`` table (``settings.GenerationDefaults``)."""
        return cls(
            greedy=defaults.greedy,
            max_new_tokens=defaults.max_new_tokens,
            top_p=defaults.top_p,
            temperature=defaults.temperature,
        )

    @property
    def prompt_budget(self) -> int:
        """Positions left for the prompt and the video: ``max_length − max_new_tokens``."""
        return self.max_length - self.max_new_tokens


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str


@dataclass
class Conversation:
    """The questions and answers so far about one film (see the module docstring's layout)."""

    turns: list[Turn] = field(default_factory=list)
    system: str = SYSTEM_PROMPT

    def prompt(
        self, question: str, skip_turns: int = 0, dialogue: Sequence[DialogueLine] = ()
    ) -> str:
        """The prompt text for ``question`` after the turns so far (the oldest ``skip_turns``
        left out) with ``dialogue`` beside the video, every text neutralised; it holds
        ``<ImageHere>`` exactly once. No budget here: ``prompt.build_prompt`` applies it."""
        turns = [(neutralise(t.question), neutralise(t.answer)) for t in self.turns[skip_turns:]]
        block = dialogue_block(dialogue)
        return layout(neutralise(self.system), turns, neutralise(question), block)

    def pairs(self) -> list[tuple[str, str]]:
        """The turns as ``(question, answer)`` pairs, oldest first."""
        return [(t.question, t.answer) for t in self.turns]

    def add(self, question: str, answer: str) -> None:
        self.turns.append(Turn(question, answer))

    def clear(self) -> None:
        self.turns.clear()

    def to_dict(self) -> dict:
        """A JSON-able form (for the chat history file)."""
        return {"system": self.system, "turns": [[t.question, t.answer] for t in self.turns]}

    @classmethod
    def from_dict(cls, data: dict) -> Conversation:
        """Inverse of ``to_dict``; ``ValueError`` if malformed."""
        try:
            turns = [Turn(str(q), str(a)) for q, a in data["turns"]]
            return cls(turns=turns, system=str(data.get("system", SYSTEM_PROMPT)))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not a conversation: {err!r}") from err


def postprocess(text: str) -> str:
    """The original's answer clean-up: cut at ``###``, keep what follows ``Assistant:``."""
    return text.split(STOP_STRING, maxsplit=1)[0].rsplit("Assistant:", maxsplit=1)[-1].strip()


class LanguageModel:
    """A Hugging Face causal LM (Vicuna) with its tokenizer, fed embeddings directly."""

    def __init__(self, hf_model, tokenizer: TextTokenizer) -> None:  # LlamaForCausalLM
        self.hf = hf_model
        self.tokenizer = tokenizer

    @property
    def device(self) -> torch.device:
        return self.hf.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.hf.get_input_embeddings().weight.dtype

    def embed_ids(self, ids: list[int]) -> torch.Tensor:
        """Token embeddings ``(1, n, H)`` of ``ids``."""
        tensor = torch.tensor([ids], dtype=torch.long, device=self.device)  # (1, n)
        return self.hf.get_input_embeddings()(tensor)

    def segment_ids(self, prompt: str) -> list[list[int]]:
        """The two segments' token ids (BOS only on the first)."""
        segments = prompt.split(IMAGE_PLACEHOLDER)
        if len(segments) != 2:
            raise ValueError(f"the prompt must hold {IMAGE_PLACEHOLDER} exactly once")
        return [self.tokenizer.encode(s, add_bos=i == 0) for i, s in enumerate(segments)]

    def prompt_embeds(self, prompt: str, visual: torch.Tensor) -> torch.Tensor:
        """``embed(seg0) ; visual (1, Qv, H) ; embed(seg1)`` → ``(1, L, H)``, not truncated."""
        first, second = self.segment_ids(prompt)
        visual = visual.to(self.device, self.dtype)
        return torch.cat([self.embed_ids(first), visual, self.embed_ids(second)], dim=1)

    def prompt_length(self, prompt: str, visual_tokens: int) -> int:
        return prompt_length(self.tokenizer, prompt, visual_tokens)
