"""A bfloat16 decoder on a CPU without native bf16 arithmetic: bf16 storage, float32 compute.

The CPU path keeps the real Vicuna in bfloat16 when float32 does not fit in RAM (device.py).
Measured on this project's 2-core AVX2 machine (bench/full_size.py): a bf16 matmul is 30x
(1 x 4096 @ 4096 x 11008, a decoding step) to 180x (200 x 4096 @ 4096 x 4096, a prefill)
slower than the same matmul in float32, because the CPU has neither AVX512-BF16 nor AMX. So on
such a CPU every ``nn.Linear`` of the decoder keeps its bf16 weight (half the RAM) and computes
in float32: the weight is widened for the call only (a memory-bound copy) and the output is
float32; the residual stream then stays float32 (type promotion), as the original's fp32
prompt embeddings did on its fp16 LLaMA (reference README finding 7).
"""

from __future__ import annotations

import functools
import types

import torch
from torch import nn
from torch.nn import functional


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU advertises bf16 arithmetic (AVX512-BF16 or AMX-BF16; Linux flags).
    Elsewhere (no /proc/cpuinfo) bf16 is assumed native, the safe side for speed claims."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            flags = fh.read()
    except OSError:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _float32_linear(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    bias = None if self.bias is None else self.bias.float()
    return functional.linear(x.float(), self.weight.float(), bias)


def _float32_embedding(self: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    return functional.embedding(ids, self.weight, self.padding_idx).float()


def compute_in_float32(model: nn.Module) -> int:
    """Make every non-float32 ``nn.Linear`` of ``model`` compute in float32 and every
    ``nn.Embedding`` return float32 (so the residual stream, the rotary tables and the KV cache
    are float32 from the first layer on); weights are kept as they are. Returns how many
    modules were changed."""
    changed = 0
    for module in model.modules():
        if module.__class__ is nn.Linear and module.weight.dtype != torch.float32:
            module.forward = types.MethodType(_float32_linear, module)
            changed += 1
        elif module.__class__ is nn.Embedding and module.weight.dtype != torch.float32:
            module.forward = types.MethodType(_float32_embedding, module)
            changed += 1
    return changed
