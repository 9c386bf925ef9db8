"""What each number is called, its unit and meaning; the printed table and the JSON file."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Metric:
    key: str
    unit: str
    label: str
    cuda_only: bool = False


# Measured once per film (the table's columns are films).
FILM_METRICS: tuple[Metric, ...] = (
    Metric("plan_frames", "frames", "frames in the sampling plan"),
    Metric("decode_fps", "frames/s", "decode + preprocess (ours)"),
    Metric("bare_decord_fps", "frames/s", "bare decord, same frames"),
    Metric("decode_overhead_ratio", "x", "ours / bare decord time"),
    Metric("normalize_share_pct", "%", "normalize's share of our time"),
    Metric("open_s", "s", "open (probe + plan)"),
    Metric("first_fragment_s", "s", "open -> first fragment encoded"),
    Metric("encode_s", "s", "encode all fragments"),
    Metric("encode_fps", "frames/s", "encode (decode + model + memory)"),
    Metric("open_to_ready_s", "s", "open -> memory ready"),
    Metric("global_first_token_s", "s", "global: first token"),
    Metric("global_first_text_s", "s", "global: first text shown"),
    Metric("global_tokens_per_s", "tok/s", "global: decoding speed"),
    Metric("global_tokens", "tokens", "global: tokens generated"),
    Metric("global_answer_s", "s", "global: whole answer"),
    Metric("global_memory_frames", "frames", "global: frames to video Q-Former"),
    Metric("breakpoint_first_token_s", "s", "breakpoint: first token"),
    Metric("breakpoint_first_text_s", "s", "breakpoint: first text shown"),
    Metric("breakpoint_first_question_first_token_s", "s", "breakpoint: film's first, first token"),
    Metric("breakpoint_frame_s", "s", "breakpoint: grab + encode frame at t"),
    Metric("breakpoint_tokens_per_s", "tok/s", "breakpoint: decoding speed"),
    Metric("breakpoint_tokens", "tokens", "breakpoint: tokens generated"),
    Metric("breakpoint_answer_s", "s", "breakpoint: whole answer"),
    Metric("breakpoint_memory_frames", "frames", "breakpoint: frames to video Q-Former"),
    Metric("dialogue_global_first_token_s", "s", "with dialogue: global first token"),
    Metric("dialogue_global_lines", "lines", "with dialogue: global lines in prompt"),
    Metric("dialogue_global_prompt_ms", "ms", "with dialogue: global prompt assembly"),
    Metric("dialogue_global_tokens_per_s", "tok/s", "with dialogue: global decoding"),
    Metric("dialogue_breakpoint_first_token_s", "s", "with dialogue: breakpoint first token"),
    Metric("dialogue_breakpoint_lines", "lines", "with dialogue: breakpoint lines"),
    Metric("dialogue_breakpoint_prompt_ms", "ms", "with dialogue: breakpoint prompt"),
    Metric("reopen_cache_hit", "bool", "reopen: memory came from the cache"),
    Metric("reopen_open_s", "s", "reopen: open"),
    Metric("reopen_open_to_ready_s", "s", "reopen: open -> memory ready"),
    Metric("reopen_frames_encoded", "frames", "reopen: frames encoded again"),
    Metric("reopen_global_first_token_s", "s", "reopen: global first token"),
    Metric("reopen_global_tokens_per_s", "tok/s", "reopen: global decoding speed"),
    Metric("reopen_breakpoint_first_token_s", "s", "reopen: breakpoint first token"),
    Metric("reopen_breakpoint_tokens_per_s", "tok/s", "reopen: breakpoint decoding"),
    Metric("memory_per_frame_kb", "KiB", "memory tensors per frame (computed)"),
    Metric("host_growth_per_frame_kb", "KiB", "host RSS growth per encoded frame"),
    Metric("cuda_growth_per_frame_kb", "KiB", "device memory growth per frame", cuda_only=True),
    Metric("rss_peak_mb", "MiB", "peak RSS (this film)"),
    Metric("cuda_peak_mb", "MiB", "peak device memory (this film)", cuda_only=True),
)

# Measured once per run.
RUN_METRICS: tuple[Metric, ...] = (
    Metric("load_s", "s", "model load"),
    Metric("rss_after_load_mb", "MiB", "RSS after model load"),
    Metric("load_peak_rss_mb", "MiB", "peak RSS while loading"),
    Metric("cuda_after_load_mb", "MiB", "device memory after load", cuda_only=True),
    Metric("load_peak_cuda_mb", "MiB", "peak device memory while loading", cuda_only=True),
    Metric("ui_max_stall_loading_ms", "ms", "UI worst stall: loading (engine process)"),
    Metric("ui_max_stall_encoding_ms", "ms", "UI worst stall: encoding"),
    Metric("ui_max_stall_answering_ms", "ms", "UI worst stall: answering"),
    Metric("ui_p99_stall_ms", "ms", "UI stall, 99th percentile"),
    Metric("ui_probe_ticks", "ticks", "UI probe ticks"),
    Metric("ui_encode_s", "s", "UI run: open -> memory ready"),
    Metric("ui_peak_rss_mb", "MiB", "peak RSS during the UI run"),
    Metric("startup_ready_s", "s", "startup: model ready (fresh process)"),
    Metric("ui_max_stall_startup_ms", "ms", "UI worst stall: startup imports + load"),
    Metric("ui_stalls_over_budget_startup", "stalls", "UI stalls over 50 ms at startup"),
    Metric("ui_max_stall_encode_ms", "ms", "UI worst stall: encode (engine process)"),
    Metric("ui_stalls_over_budget_encode", "stalls", "UI stalls over 50 ms: encode (process)"),
    Metric("ui_max_stall_answer_ms", "ms", "UI worst stall: answer (engine process)"),
    Metric("ui_stalls_over_budget_answer", "stalls", "UI stalls over 50 ms: answer (process)"),
    Metric("quit_while_encoding_s", "s", "quit while encoding (engine process)"),
    Metric("cli_ask_cached_wall_s", "s", "CLI: cached ask, wall (fresh process)"),
    Metric("cli_ask_cached_cpu_s", "s", "CLI: cached ask, CPU"),
    Metric("cli_ask_warm_engine_wall_s", "s", "CLI: cached ask, warm engine, wall"),
    Metric("cli_ask_cold_engine_wall_s", "s", "CLI: cached ask starting the warm engine"),
    Metric("import_torch_alone_wall_s", "s", "CLI yardstick: import torch alone, wall"),
    Metric("import_torch_alone_cpu_s", "s", "CLI yardstick: import torch alone, CPU"),
    Metric("import_torch_s", "s", "CLI importtime: torch"),
    Metric("import_transformers_stack_s", "s", "CLI importtime: transformers stack"),
    Metric("prompt_film_lines", "lines", "prompt: dialogue lines of a 2-h film"),
    Metric("prompt_bm25_index_ms", "ms", "prompt: BM25 index of those lines"),
    Metric("prompt_global_first_ms", "ms", "prompt: global, first question (+index)"),
    Metric("prompt_global_ms", "ms", "prompt: global assembly (byte tokenizer)"),
    Metric("prompt_global_lines", "lines", "prompt: global lines that fit"),
    Metric("prompt_breakpoint_ms", "ms", "prompt: breakpoint assembly (byte tok.)"),
    Metric("prompt_breakpoint_lines", "lines", "prompt: breakpoint lines that fit"),
    Metric("real_prompt_global_ms", "ms", "prompt: global assembly (real tokenizer)"),
    Metric("real_prompt_breakpoint_ms", "ms", "prompt: breakpoint (real tokenizer)"),
    Metric("real_prompt_global_lines", "lines", "prompt: global lines (real tokenizer)"),
    Metric("subs_list_ms", "ms", "subtitles: list a film's tracks (ffprobe)"),
    Metric("subs_extract_ms", "ms", "subtitles: extract + parse a track"),
    Metric("subs_extract_cpu_ms", "ms", "subtitles: extract + parse, CPU time"),
    Metric("subs_extract_lines", "lines", "subtitles: lines in that track"),
    Metric("speech_tiny_first_chunk_s", "s", "speech, tiny test model: first chunk"),
    Metric("speech_tiny_chunk_s", "s", "speech, tiny test model: 30 s chunk"),
    Metric("speech_tiny_chunk_cpu_s", "s", "speech, tiny test model: chunk CPU time"),
    Metric("speech_tiny_rtf", "x", "speech, tiny test model: real-time factor"),
    Metric("speech_tiny_film_2h_min", "min", "speech, tiny test model: a 2-h film"),
    Metric("speech_small_first_chunk_s", "s", "speech, small-sized: first chunk"),
    Metric("speech_small_chunk_s", "s", "speech, small-sized: 30 s chunk"),
    Metric("speech_small_chunk_cpu_s", "s", "speech, small-sized: chunk CPU time"),
    Metric("speech_small_rtf", "x", "speech, small-sized: real-time factor"),
    Metric("speech_small_film_2h_min", "min", "speech, small-sized: a 2-h film"),
    Metric("chat_entries", "entries", "chat: conversation length"),
    Metric("chat_layout_ms", "ms", "chat: lay the conversation out"),
    Metric("chat_chunk_max_ms", "ms", "chat: show a streamed chunk (worst)"),
    Metric("chat_chunk_median_ms", "ms", "chat: show a streamed chunk (median)"),
    Metric("chat_settle_ms", "ms", "chat: settle a finished answer"),
    Metric("rss_peak_mb", "MiB", "peak RSS (whole run)"),
    Metric("cuda_peak_mb", "MiB", "peak device memory (whole run)", cuda_only=True),
)


def _fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "bool":
        return "yes" if value else "no"
    if not isinstance(value, int | float) or not math.isfinite(value):
        return str(value)
    if unit in ("frames", "tokens", "ticks", "MiB"):
        return f"{value:.0f}"
    if unit == "x":
        return f"{value:.2f}"
    if unit == "s":
        return f"{value:.3f}" if value < 10 else f"{value:.1f}"
    return f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def _short(name: str, width: int) -> str:
    return name if len(name) <= width else name[: width - 1] + "~"


def format_table(result: dict[str, Any]) -> str:
    """One table: per-film rows (a column per film), then the run's own rows."""
    films = result["films"]
    cuda = result["model"] is not None and result["model"].get("device") == "cuda"
    width = max(12, *(min(len(f["video"]["name"]), 22) for f in films)) if films else 12
    label_w = 40
    head = f"{'measure':<{label_w}} {'unit':<8} " + " ".join(
        f"{_short(f['video']['name'], width):>{width}}" for f in films
    )
    lines = [head, "-" * len(head)]
    describe = ["duration", "s"], ["picture", "px"]
    for (label, unit), field in zip(describe, ("duration_s", "size"), strict=True):
        cells = " ".join(f"{_fmt(f['video'][field], unit):>{width}}" for f in films)
        lines.append(f"{label:<{label_w}} {unit:<8} {cells}")
    for metric in FILM_METRICS:
        if metric.cuda_only and not cuda:
            continue
        values = [f["metrics"].get(metric.key) for f in films]
        if all(v is None for v in values):
            continue
        cells = " ".join(f"{_fmt(v, metric.unit):>{width}}" for v in values)
        lines.append(f"{metric.label:<{label_w}} {metric.unit:<8} {cells}")
    lines.append("-" * len(head))
    for metric in RUN_METRICS:
        if metric.cuda_only and not cuda:
            continue
        value = result["run_metrics"].get(metric.key)
        if value is None:
            continue
        cell = _fmt(value, metric.unit)
        lines.append(f"{metric.label:<{label_w}} {metric.unit:<8} {cell:>{width}}")
    return "\n".join(lines)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null (JSON has no NaN), Paths become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(result: dict[str, Any], path: Path | None, stamp: str, device: str) -> Path:
    """Write ``result`` atomically to ``path`` or ``bench/results/<stamp>-<device>.json``."""
    if path is None:
        path = RESULTS_DIR / f"{stamp}-{device}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_clean(result), indent=2, sort_keys=False) + "\n", "utf-8")
    os.replace(tmp, path)
    return path
