"""The Vicuna side of MovieChat: prompt layout, conversation, generation settings, embeddings.

Prompt (``inference.py``, Vicuna v0 style), for the first question::

    {SYSTEM}###Human: <Video><ImageHere></Video> {q1}###Assistant:

Our multi-turn addition appends each answered turn and the new question as text::

    {SYSTEM}###Human: <Video><ImageHere></Video> {q1}###Assistant: {a1}###Human: {q2}###Assistant:

``a1`` is the post-processed (stripped) answer. The prompt is split at ``<ImageHere>`` into
exactly two segments, each tokenized on its own (BOS only on the first); the visual tokens sit
between their embeddings. Streaming generation lives in ``streaming.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from moviechat_desktop.engine.model.tokenizer import TextTokenizer

SYSTEM_PROMPT = (
    "You are able to understand the visual content that the user provides."
    "Follow the instructions carefully and explain your answers in details."
)
IMAGE_PLACEHOLDER = "<ImageHere>"
STOP_STRING = "###"


@dataclass(frozen=True)
class GenerationSettings:
    """How an answer is generated (the original's ``Chat.answer`` defaults)."""

    greedy: bool = False  # False: nucleus sampling, as the original; True: argmax
    top_p: float = 0.9  # nucleus mass (sampling only)
    temperature: float = 1.0  # softmax temperature (sampling only)
    max_new_tokens: int = 300  # answer length cap
    max_length: int = 2000  # prompt + answer cap: the prompt is LEFT-truncated to fit
    repetition_penalty: float = 1.0  # 1.0 = none
    seed: int | None = None  # seeds torch's RNG before sampling (reproducible answers)

    def __post_init__(self) -> None:
        if not 0 < self.max_new_tokens < self.max_length:
            raise ValueError("need 0 < max_new_tokens < max_length")
        if not 0 < self.top_p <= 1 or self.temperature <= 0 or self.repetition_penalty <= 0:
            raise ValueError("top_p must be in (0, 1]; temperature and repetition_penalty > 0")

    @property
    def prompt_budget(self) -> int:
        """Most prompt positions kept: ``max_length − max_new_tokens`` (the original's rule)."""
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

    def prompt(self, question: str, skip_turns: int = 0) -> str:
        """The prompt text for ``question`` after the turns so far (the oldest ``skip_turns``
        left out); it holds ``<ImageHere>`` exactly once."""
        if IMAGE_PLACEHOLDER in question:
            question = question.replace(IMAGE_PLACEHOLDER, "")
        exchanges = [
            f"{turn.question}###Assistant: {turn.answer}" for turn in self.turns[skip_turns:]
        ]
        exchanges.append(f"{question}###Assistant:")
        return f"{self.system}###Human: <Video>{IMAGE_PLACEHOLDER}</Video> " + "###Human: ".join(
            exchanges
        )

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


def left_truncate(embeds: torch.Tensor, settings: GenerationSettings) -> torch.Tensor:
    """Drop the oldest positions of ``embeds`` ``(1, L, H)`` beyond ``settings.prompt_budget``
    (the original: ``begin = max(0, L + max_new_tokens − max_length)``)."""
    begin = max(0, embeds.shape[1] - settings.prompt_budget)
    return embeds[:, begin:]  # (1, min(L, budget), H)


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
        return sum(len(ids) for ids in self.segment_ids(prompt)) + visual_tokens
