"""The engine through its facade: load, open → memory ready, questions, reopen, memory growth.

Everything goes through ``Assistant``, the path the GUI and the CLI take. Answer timing uses a
forward hook on the decoder (``TokenClock``): each forward pass produces one generated token,
so the hook counts the generated tokens exactly (the ``###`` stop tokens included, which the
text never shows) and stamps when each one exists. On CUDA the hook synchronizes first;
generation synchronizes every step anyway (the stopping check reads the ids), so this costs
nothing measurable.
"""

from __future__ import annotations

import inspect
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from bench import system
from moviechat_desktop.engine.assistant import Assistant
from moviechat_desktop.engine.model.llm import GenerationSettings
from moviechat_desktop.engine.settings import AppSettings

log = logging.getLogger(__name__)

GLOBAL_QUESTION = "What happens in this film?"
BREAKPOINT_QUESTION = "What is happening at this moment?"
BREAKPOINT_AT = 0.5  # breakpoint questions ask about the middle of the film
KB = 1024.0


def cache_supported() -> bool:
    """True when ``Assistant`` takes ``use_cache`` (the per-film memory cache exists)."""
    return "use_cache" in inspect.signature(Assistant.__init__).parameters


def new_assistant(settings: AppSettings) -> Assistant:
    kwargs: dict[str, Any] = {"use_cache": True} if cache_supported() else {}
    return Assistant(settings=settings, model_dir=settings.model.model_dir or None, **kwargs)


class TokenClock:
    """Stamps the end of every forward pass of the decoder (one per generated token)."""

    def __init__(self, hf_model: Any) -> None:
        import torch

        self.times: list[float] = []
        self._sync = torch.cuda.synchronize if torch.cuda.is_available() else None
        self._handle = hf_model.register_forward_hook(self._stamp)

    def _stamp(self, module: Any, args: Any, output: Any) -> None:
        if self._sync is not None:
            self._sync()
        self.times.append(time.perf_counter())

    def close(self) -> None:
        self._handle.remove()


def load(settings: AppSettings) -> tuple[Assistant, dict[str, float], dict[str, Any]]:
    """A loaded Assistant, the load metrics and a description of the model."""
    assistant = new_assistant(settings)
    start = time.perf_counter()
    assistant.load_model()
    metrics = {
        "load_s": time.perf_counter() - start,
        "rss_after_load_mb": system.rss_bytes() / system.MB,
    }
    cuda = system.cuda_allocated_bytes()
    if cuda is not None:
        metrics["cuda_after_load_mb"] = cuda / system.MB
    model, choice = assistant.model, assistant.device_choice
    description = {
        "weights": str(assistant.model_dir) if assistant.model_dir else "installed real weights",
        "device_label": assistant.device_label,
        "device": model.device.type,
        "dtype": str(model.dtype).removeprefix("torch."),
        "quantization": choice.quantization if choice else None,
        "device_reason": choice.reason if choice else None,
        "image_size": model.config.image_size,
        "frame_tokens": [model.config.qformer.num_query_tokens, model.config.qformer.hidden_size],
        "llm_hidden_size": model.config.llm_hidden_size,
        "cache": cache_supported(),
    }
    return assistant, metrics, description


def memory_bytes_per_frame(assistant: Assistant) -> float:
    """What the memory itself stores per sampled frame (float32 on the host): the raw tokens
    ``(Q, D)`` plus its share of the fragment's consolidated frames."""
    config = assistant.model.config
    sampling = assistant.settings.sampling
    q, d = config.qformer.num_query_tokens, config.qformer.hidden_size
    share = config.memory.short_memory_merge / sampling.frames_per_fragment
    return q * d * 4 * (1 + share)


def open_and_encode(assistant: Assistant, path: Path, prefix: str = "") -> dict[str, float]:
    """Open ``path`` and encode until the memory is complete, sampling host/device memory."""
    start = time.perf_counter()
    assistant.open(path)
    opened = time.perf_counter()
    status = assistant.status()
    restored = status.frames_done  # frames whose fragments came from the cache
    out: dict[str, float] = {
        f"{prefix}open_s": opened - start,
        f"{prefix}cache_hit": float(status.finished),
    }
    first_s, base_frames, base_rss, base_cuda = None, 0, 0, None
    top_rss, top_cuda = 0, None
    while not status.finished:
        status = assistant.encode_step()
        if first_s is None:  # the first fragment warms the decoder and the allocator
            first_s = time.perf_counter() - start
            base_frames, base_rss = status.frames_done, system.rss_bytes()
            base_cuda = top_cuda = system.cuda_allocated_bytes()
            top_rss = base_rss
        else:
            top_rss = max(top_rss, system.rss_bytes())
            allocated = system.cuda_allocated_bytes()
            if allocated is not None and top_cuda is not None:
                top_cuda = max(top_cuda, allocated)
    ready = time.perf_counter()
    encoded = status.frames_done - restored
    out[f"{prefix}open_to_ready_s"] = ready - start
    if prefix:  # a reopen: how much of the film had to be encoded again
        out[f"{prefix}frames_encoded"] = float(encoded)
        return out
    later = status.frames_done - base_frames
    out.update(
        {
            "first_fragment_s": first_s if first_s is not None else ready - start,
            "encode_s": ready - opened,
            "encode_fps": encoded / (ready - opened) if encoded else 0.0,
            "host_growth_per_frame_kb": (top_rss - base_rss) / later / KB if later else 0.0,
            "memory_per_frame_kb": memory_bytes_per_frame(assistant) / KB,
        }
    )
    if base_cuda is not None and top_cuda is not None:
        out["cuda_growth_per_frame_kb"] = (top_cuda - base_cuda) / later / KB if later else 0.0
    return out


def ask_once(
    assistant: Assistant,
    clock: TokenClock,
    mode: str,
    at_s: float | None,
    generation: GenerationSettings,
) -> dict[str, float]:
    """One question in a fresh conversation (so every repeat has the same prompt)."""
    question = GLOBAL_QUESTION if mode == "global" else BREAKPOINT_QUESTION
    assistant.new_conversation()
    clock.times.clear()
    start = time.perf_counter()
    for _chunk in assistant.ask(question, mode=mode, at_s=at_s, settings=generation):
        pass
    end = time.perf_counter()
    info, stamps = assistant.last_answer, list(clock.times)
    if not stamps:
        raise RuntimeError("the decoder never ran while answering")
    n = len(stamps)
    if n > 1 and stamps[-1] > stamps[0]:
        rate = (n - 1) / (stamps[-1] - stamps[0])  # decoding speed after the first token
    else:
        rate = n / (end - start)
    return {
        "first_token_s": stamps[0] - start,
        "first_text_s": info.first_text_s if info.first_text_s is not None else end - start,
        "answer_s": end - start,
        "tokens": float(n),
        "tokens_per_s": rate,
        "memory_frames": float(info.memory_frames),
        "frame_s": info.timings.get("current_frame_s", 0.0),
    }


def ask_both(
    assistant: Assistant,
    generation: GenerationSettings,
    repeats: int,
    samples: dict[str, list[float]],
    prefix: str = "",
) -> dict[str, float]:
    """Global and breakpoint questions, ``repeats`` times each; medians (every run's value
    goes to ``samples``)."""
    video = assistant.video
    assert video is not None
    at_s = round(video.duration_s * BREAKPOINT_AT, 3)
    clock = TokenClock(assistant.model.llm.hf)
    out: dict[str, float] = {}
    try:
        for mode, at in (("global", None), ("breakpoint", at_s)):
            runs = [ask_once(assistant, clock, mode, at, generation) for _ in range(repeats)]
            for key in runs[0]:
                if mode == "global" and key == "frame_s":
                    continue  # only a breakpoint question grabs the frame on screen
                values = [r[key] for r in runs]
                out[f"{prefix}{mode}_{key}"] = statistics.median(values)
                if repeats > 1:
                    samples[f"{prefix}{mode}_{key}"] = values
            if mode == "breakpoint" and not prefix:
                # the film's first breakpoint question (its reader was opened with the film)
                out["breakpoint_first_question_first_token_s"] = runs[0]["first_token_s"]
    finally:
        clock.close()
    return out


def measure_film(
    assistant: Assistant,
    path: Path,
    generation: GenerationSettings,
    repeats: int,
    samples: dict[str, list[float]],
) -> tuple[dict[str, float], list[str]]:
    """Cold open → memory ready, questions, then the reopen (same questions)."""
    notes: list[str] = []
    metrics = open_and_encode(assistant, path)
    if metrics["cache_hit"]:
        notes.append(f"{path.name}: the first open hit a cache: the 'cold' numbers are warm")
    metrics.update(ask_both(assistant, generation, repeats, samples))
    if hasattr(assistant, "set_dialogue_source"):  # the same questions with subtitles
        from bench import dialogue_bench

        metrics.update(dialogue_bench.ask_with_dialogue(assistant, generation, repeats, samples))
    assistant.close()
    metrics.update(open_and_encode(assistant, path, prefix="reopen_"))
    if not cache_supported():
        notes.append("no film cache in this build: 'reopen' = a second open + encode + ask")
    elif not metrics["reopen_cache_hit"]:
        notes.append(f"{path.name}: reopening did not hit the film cache")
    metrics.update(ask_both(assistant, generation, repeats, samples, prefix="reopen_"))
    assistant.close()
    return metrics, notes
