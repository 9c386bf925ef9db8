"""Where and how the model runs: CUDA or CPU, the precision, and CUDA out-of-memory handling.

``choose_precision`` is pure logic (tested across GPU sizes and RAM sizes);
``detect_device_choice`` feeds it what this machine has. The resulting ``DeviceChoice.plan``
(``precision.PrecisionPlan``) says which dtype each part holds: on CUDA at fp16 the original's
split (EVA ViT-g Linear/Conv in fp16 with its norms, positions and q/v biases in fp32; both
Q-Formers and llama_proj in fp32; the frame encoder under fp16 autocast; Vicuna in fp16, or
8-bit / 4-bit through bitsandbytes when free memory is short).

GPU memory budget (bytes of *free* memory needed), from the parameter counts in the reference
``checkpoint_keys.json`` (parameters only, not buffers): EVA 985.9 M, of which 985.2 M in its
Linear/Conv layers (fp16 in the split) and 0.69 M norms/positions/q-v biases (fp32); image
Q-Former with query tokens and ln_vision 105.2 M and video Q-Former with llama_proj 22.1 M
(fp32); decoder 6.738 B, of which embed_tokens and lm_head (262 M) stay fp16 when the rest is
quantized. Vision side in the split: 1.970 GB + 0.512 GB = 2.48 GB. Headroom: the KV cache
for the 2000-token context plus 300 new tokens (2 × 32 layers × 4096 × 2 bytes × 2300 =
1.21 GB in fp16), 1 GiB for activations and CUDA workspaces (a batch of 8 frames through the
ViT, the decoder's prefill), then 10 % for allocator fragmentation:

=========  =======  ======================  ==========================================
precision  weights  free memory needed      typical card
=========  =======  ======================  ==========================================
fp16       16.0 GB  20.1 GB (18.7 GiB)      24 GB and up
int8       9.5 GB   12.9 GB (12.1 GiB)      16 GB
int4       6.6 GB   9.8 GB (9.1 GiB)        10–12 GB (a 12 GB card: 12.1 GiB misses int8)
fp32       31.4 GB  38.4 GB (35.7 GiB)      only when asked for
=========  =======  ======================  ==========================================

Below the int4 need the model runs on the CPU: the vision side in float32 (4.5 GB) and the
decoder in float32 (27.0 GB; 31.4 GB of weights in all) when the available RAM holds that
with 15 % to spare, else the decoder in bfloat16 (13.5 GB; 17.9 GB in all), chosen by itself
and said so; on a CPU without native bf16 that decoder computes in float32 (``upcast.py``).
A small decoder (the tiny test model) always stays float32. A precision asked for
explicitly is used as asked where the device can run it at all; ``oom_guard`` turns a CUDA
out-of-memory error into advice.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from moviechat_desktop.engine.errors import OutOfGpuMemory
from moviechat_desktop.engine.model.precision import PrecisionPlan

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
T = TypeVar("T")

PRECISIONS = ("auto", "fp16", "int8", "int4", "fp32", "bf16")
DTYPE_NAMES = {"fp16": "float16", "fp32": "float32", "bf16": "bfloat16"}

EVA_MATMUL_PARAMS = 985_201_792  # EVA's Linear/Conv weights and biases: fp16 in the split
EVA_OTHER_PARAMS = 692_736  # its LayerNorms, cls_token, pos_embed, q/v biases: always fp32
QFORMER_PARAMS = 105_165_056  # image Q-Former, query tokens, ln_vision: fp32
VIDEO_PARAMS = 22_104_064  # video Q-Former, video queries, frame positions, llama_proj: fp32
VISION_PARAMS = EVA_MATMUL_PARAMS + EVA_OTHER_PARAMS + QFORMER_PARAMS + VIDEO_PARAMS
LLAMA_PARAMS = 6_738_415_616
LLAMA_FP16_PARAMS = 2 * 32_000 * 4096  # embed_tokens and lm_head: never quantized
KV_CACHE_FP16 = 2 * 32 * 4096 * 2 * (2000 + 300)
ACTIVATIONS = 1 << 30
FRAGMENTATION = 1.10
INT4_BYTES_PER_PARAM = 4.5 / 8  # nf4 plus block scales, rounded up

CPU_NOTICE = (
    "No usable CUDA GPU: the assistant runs on the CPU. With the real model expect hours to "
    "encode a film, many minutes per answer, and about 33 GB of RAM (20 GB with a bfloat16 "
    "decoder)."
)
CPU_RAM_SPARE = 1.15  # weights × this must fit in the available RAM for a float32 decoder
CPU_OVERHEAD = 2 << 30  # python, torch, activations, the KV cache on the CPU
# A smaller decoder (the tiny test model) stays float32: halving it would save next to nothing.
BF16_MIN_DECODER_PARAMS = 1_000_000_000
BNB_HINT = "pip install 'moviechat-desktop[gpu]'"
OOM_ADVICE = (
    "Try a lower precision in Settings (int8 or int4), close other programs that use the GPU, "
    "or use a sparser sampling plan (fewer frames)."
)


def required_vram_bytes(precision: str) -> int:
    """Free GPU memory the real model needs at ``precision`` (see the module's table)."""
    width = {"fp16": 2, "bf16": 2, "fp32": 4, "int8": 2, "int4": 2}[precision]
    if precision == "fp32":
        vision = VISION_PARAMS * 4
    else:  # the original's split: only EVA's Linear/Conv layers in half precision
        vision = EVA_MATMUL_PARAMS * width + (VISION_PARAMS - EVA_MATMUL_PARAMS) * 4
    quantized = LLAMA_PARAMS - LLAMA_FP16_PARAMS
    if precision == "int8":
        decoder = quantized * 1 + LLAMA_FP16_PARAMS * 2
    elif precision == "int4":
        decoder = int(quantized * INT4_BYTES_PER_PARAM) + LLAMA_FP16_PARAMS * 2
    else:
        decoder = LLAMA_PARAMS * width
    kv = KV_CACHE_FP16 * (2 if precision == "fp32" else 1)
    return int((vision + decoder + kv + ACTIVATIONS) * FRAGMENTATION)


@dataclass(frozen=True)
class DeviceChoice:
    """Where the model runs and at which precision, and why (shown in Settings / the chat)."""

    device: str  # "cuda" or "cpu" (never an index: torch picks the current device)
    dtype_name: str  # "float16" | "bfloat16" | "float32": weights and compute of unquantized parts
    quantization: str | None  # None | "int8" | "int4": the decoder's bitsandbytes quantization
    reason: str
    notice: str | None = None  # a warning for the chat panel (e.g. the CPU is slow)

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.dtype_name)

    @property
    def plan(self) -> PrecisionPlan:
        """The dtype of each part of the model (``precision.PrecisionPlan``)."""
        return PrecisionPlan.for_device(self.device, self.dtype_name, self.quantization)

    @property
    def label(self) -> str:
        what = self.quantization or {"float16": "fp16", "bfloat16": "bf16"}.get(
            self.dtype_name, "fp32"
        )
        return f"{self.device.upper() if self.device == 'cuda' else 'CPU'} · {what}"

    def quantization_config(self) -> Any:
        """transformers' ``BitsAndBytesConfig`` for the decoder, or None."""
        if self.quantization is None:
            return None
        import torch
        from transformers import BitsAndBytesConfig

        if self.quantization == "int8":
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float16,
        )


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def cpu_ram_bytes(decoder_params: int, decoder_width: int) -> int:
    """RAM the model needs on the CPU: a float32 vision side, the decoder at ``decoder_width``
    bytes per parameter, and a fixed overhead."""
    return VISION_PARAMS * 4 + decoder_params * decoder_width + CPU_OVERHEAD


def _cpu(
    requested: str,
    reason: str,
    available_ram: int | None = None,
    decoder_params: int = LLAMA_PARAMS,
) -> DeviceChoice:
    """The CPU choice: float32, or a bfloat16 decoder when asked for or when RAM is short."""
    if requested == "bf16":
        return DeviceChoice("cpu", "bfloat16", None, reason, CPU_NOTICE)
    need = int(cpu_ram_bytes(decoder_params, 4) * CPU_RAM_SPARE)
    big = decoder_params >= BF16_MIN_DECODER_PARAMS
    if requested == "auto" and big and available_ram is not None and available_ram < need:
        reason += (
            f"; {_gib(available_ram)} of RAM available, a float32 decoder needs about "
            f"{_gib(need)}: the decoder runs in bfloat16 (about "
            f"{_gib(cpu_ram_bytes(decoder_params, 2))})"
        )
        return DeviceChoice("cpu", "bfloat16", None, reason, CPU_NOTICE)
    return DeviceChoice("cpu", "float32", None, reason, CPU_NOTICE)


def choose_precision(
    cuda: bool,
    free_vram_bytes: int | None,
    bnb_available: bool,
    requested: str = "auto",
    *,
    available_ram: int | None = None,
    decoder_params: int = LLAMA_PARAMS,
) -> DeviceChoice:
    """Pick device, dtype and decoder quantization. Pure logic: no torch, no GPU needed.

    ``requested`` is the Settings value: "auto" | "fp16" | "int8" | "int4" | "fp32" | "bf16";
    an unknown value is treated as "auto" (a hand-edited settings file never stops the app).
    ``available_ram`` (bytes, None: unknown) and ``decoder_params`` (the decoder's size) decide
    the CPU's decoder dtype under "auto" (module docstring).
    """
    note = ""
    if requested not in PRECISIONS:
        note = f"unknown precision {requested!r} treated as auto; "
        requested = "auto"
    if not cuda:
        if requested in ("fp16", "int8", "int4"):
            note += f"{requested} needs a CUDA GPU; "
        dtype = "bf16" if requested == "bf16" else "fp32"
        reason = f"{note}no CUDA GPU: running on the CPU in {dtype}"
        return _cpu(requested, reason, available_ram, decoder_params)
    if requested in ("int8", "int4") and not bnb_available:
        note += f"{requested} needs bitsandbytes, which is not installed ({BNB_HINT}); "
        requested = "auto"
    if requested != "auto":
        quant = requested if requested in ("int8", "int4") else None
        dtype = DTYPE_NAMES.get(requested, "float16")
        reason = f"{note}{requested} as set in Settings"
        if free_vram_bytes is not None and free_vram_bytes < required_vram_bytes(requested):
            reason += (
                f" (needs about {_gib(required_vram_bytes(requested))} of GPU memory, "
                f"{_gib(free_vram_bytes)} is free: it may run out)"
            )
        return DeviceChoice("cuda", dtype, quant, reason)
    if free_vram_bytes is None:
        return DeviceChoice("cuda", "float16", None, f"{note}fp16 (free GPU memory unknown)")
    free = _gib(free_vram_bytes)
    if free_vram_bytes >= required_vram_bytes("fp16"):
        return DeviceChoice("cuda", "float16", None, f"{note}fp16: {free} of GPU memory free")
    options = ("int8", "int4") if bnb_available else ()
    for quant in options:
        if free_vram_bytes >= required_vram_bytes(quant):
            fp16_need = _gib(required_vram_bytes("fp16"))
            reason = f"{note}{quant} decoder: {free} free, fp16 needs {fp16_need}"
            return DeviceChoice("cuda", "float16", quant, reason)
    if not bnb_available:
        reason = (
            f"{note}{free} of GPU memory is not enough for fp16 "
            f"({_gib(required_vram_bytes('fp16'))}) and bitsandbytes (8-bit/4-bit) is not "
            f"installed ({BNB_HINT}): running on the CPU"
        )
    else:
        reason = (
            f"{note}{free} of GPU memory is less than even 4-bit needs "
            f"({_gib(required_vram_bytes('int4'))}): running on the CPU"
        )
    return _cpu("auto", reason, available_ram, decoder_params)


def available_ram_bytes() -> int | None:
    """RAM available to a new allocation now (Linux ``MemAvailable``; psutil elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # not installed, or no such figure on this platform
        return None


def decoder_param_count(llama_dir: str | None) -> int:
    """The decoder's parameter count from its ``config.json`` (LLaMA layout); the real
    Vicuna-7B's when there is no directory or it cannot be read."""
    import json
    from pathlib import Path

    if not llama_dir:
        return LLAMA_PARAMS
    try:
        cfg = json.loads((Path(llama_dir) / "config.json").read_text("utf-8"))
        hidden, layers = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"])
        inter, vocab = int(cfg["intermediate_size"]), int(cfg["vocab_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return LLAMA_PARAMS
    per_layer = 4 * hidden * hidden + 3 * hidden * inter + 2 * hidden
    return 2 * vocab * hidden + layers * per_layer + hidden


@functools.cache
def bitsandbytes_available() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # not installed, or installed without a usable CUDA runtime
        return False
    return True


def detect_device_choice(
    requested: str = "auto", device: str = "auto", llama_dir: str | None = None
) -> DeviceChoice:
    """``choose_precision`` for this machine. ``device`` is "auto" | "cuda" | "cpu";
    ``llama_dir`` is the decoder's directory (its size decides the CPU's decoder dtype)."""
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "cpu" or not has_cuda:
        choice = choose_precision(
            False,
            None,
            False,
            requested,
            available_ram=available_ram_bytes(),
            decoder_params=decoder_param_count(llama_dir),
        )
        if device == "cuda" and not has_cuda:
            choice = DeviceChoice(
                choice.device,
                choice.dtype_name,
                None,
                f"CUDA was asked for but is not available; {choice.reason}",
                choice.notice,
            )
        return choice
    try:
        free, _total = torch.cuda.mem_get_info()
    except RuntimeError as err:  # a broken driver reports here
        log.warning("cannot read free GPU memory: %s", err)
        free = None
    return choose_precision(True, free, bitsandbytes_available(), requested)


# --------------------------------------------------------------------------- out of memory
def is_cuda_oom(err: BaseException) -> bool:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and "out of memory" in text and "cuda" in text


def release_cuda_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        torch.cuda.empty_cache()
    except Exception as err:  # never hide the original error behind a cleanup failure
        log.warning("torch.cuda.empty_cache failed: %s", err)


class oom_guard(contextlib.ContextDecorator):
    """Turn CUDA out-of-memory inside the block into ``OutOfGpuMemory`` with advice.

    ``with oom_guard("encoding"): ...`` or ``@oom_guard("answering")``. The CUDA cache is
    emptied first so the app can carry on (with a lower precision, or after closing other GPU
    programs). Other exceptions pass through untouched.
    """

    def __init__(self, what: str = "this step") -> None:
        self.what = what

    def __enter__(self) -> oom_guard:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> Literal[False]:
        if exc is None or not is_cuda_oom(exc):
            return False
        release_cuda_cache()
        raise OutOfGpuMemory(f"The GPU ran out of memory while {self.what}. {OOM_ADVICE}") from exc


def oom_guarded(items: Iterable[T], what: str = "this step") -> Iterator[T]:
    """Iterate ``items`` (e.g. a token stream) with every step under ``oom_guard``."""
    iterator = iter(items)
    while True:
        with oom_guard(what):
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item
