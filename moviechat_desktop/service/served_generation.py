"""The generation settings a client sends with a question, checked on the server.

The window's Settings (answer length, greedy, top-p, temperature) and ``ask``'s
``--greedy``/``--max-new-tokens`` travel with every question (``RemoteEngine.ask``). The server
takes them only inside the ranges the app itself allows (``engine.settings.RANGES``, the
Settings dialog's limits) and ``max_new_tokens`` only up to what its model takes beside the
video and the prompt (what ``ask --max-new-tokens`` checks locally): anything else is a 400
with the reason.
"""

from __future__ import annotations

from typing import Any

from moviechat_desktop.engine.settings import RANGES
from moviechat_desktop.service.remote_wire import WireError

MAX_REPETITION_PENALTY = 10.0
MAX_SEED = 2**63 - 1


def check_generation(settings: Any, answer_limit: int) -> Any:
    """``settings`` (a ``GenerationSettings``) when every value is in range; ``WireError``."""
    from moviechat_desktop.engine.model.llm import GenerationSettings

    context = GenerationSettings().max_length
    if not 1 <= settings.max_length <= context:
        raise WireError(f"generation settings: max_length must lie in 1..{context}")
    if not 1 <= settings.max_new_tokens <= answer_limit:
        raise WireError(
            f"generation settings: max_new_tokens {settings.max_new_tokens} is out of range: "
            f"this model takes 1 to {answer_limit} (its context is shared with the video and "
            "the prompt)"
        )
    for key in ("top_p", "temperature"):
        low, high = RANGES[("generation", key)]
        value = getattr(settings, key)
        if not low <= value <= high:
            raise WireError(f"generation settings: {key} must lie in {low:g}..{high:g}")
    if not 0 < settings.repetition_penalty <= MAX_REPETITION_PENALTY:
        raise WireError(
            f"generation settings: repetition_penalty must lie in (0, {MAX_REPETITION_PENALTY:g}]"
        )
    seed = settings.seed
    if seed is not None and (not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        raise WireError("generation settings: seed must be a whole number 0..2**63-1")
    return settings
