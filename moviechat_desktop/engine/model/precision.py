"""Which dtype each part of the model holds, and how each stage computes: the precision plan.

The original on CUDA (reference README, section A and finding 7; ``create_eva_vit_g(precision=
'fp16')`` and ``maybe_autocast``):

* EVA ViT-g: the weights and biases of its ``nn.Linear`` and ``nn.Conv2d`` layers in float16;
  its LayerNorms, ``cls_token``, ``pos_embed``, ``q_bias``/``v_bias`` (our fused ``qkv.bias``)
  and ``ln_vision`` (our ``post_layernorm``) stay float32;
* the image Q-Former, its query tokens, the video Q-Former, video queries, frame positions and
  ``llama_proj`` stay float32 (never converted);
* the frame encoder (ViT + ``ln_vision`` + Q-Former) runs under fp16 autocast, which is also
  what makes float16 weights with float32 biases and norms work together;
* Vicuna is loaded in float16 (or 8-bit/4-bit by bitsandbytes; unchanged here).

Decision where the original is unclear: the video Q-Former and ``llama_proj`` compute in
float32 without autocast (the issue's reading; finding 7 infers a float32 ``inputs_llama`` on
GPU), and the visual tokens are cast to the decoder's dtype before entering it (transformers
5's LlamaRMSNorm does not cast an fp32 residual stream down as 4.28's did).

On the CPU the vision side is float32 whatever the decoder's dtype (a bfloat16 decoder on a CPU
is chosen only to fit in RAM; the ViT is small next to it and float32 is exact and faster on
CPUs without native bf16). The plan is plain data, so tests apply the CUDA plan on the CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

# Parameter groups, named for tests and messages.
GROUPS = ("vit_matmul", "vit_other", "qformer", "video", "decoder")


@dataclass(frozen=True)
class PrecisionPlan:
    """dtype names per parameter group and the frame encoder's autocast dtype (None: none)."""

    vit_matmul: str  # the ViT's Linear / Conv2d weights and biases (not the q/v bias)
    vit_other: str  # its LayerNorms (ln_vision included), class token, positions, q/v bias
    qformer: str  # image Q-Former + query tokens
    video: str  # video Q-Former, video queries, frame positions, llama_proj
    decoder: str  # Vicuna's unquantized weights
    encoder_autocast: str | None = None  # the frame encoder computes under autocast(this)
    quantization: str | None = None  # the decoder's bitsandbytes mode, if any

    @classmethod
    def uniform(cls, dtype_name: str) -> PrecisionPlan:
        return cls(dtype_name, dtype_name, dtype_name, dtype_name, dtype_name)

    @classmethod
    def for_device(
        cls, device_type: str, dtype_name: str, quantization: str | None = None
    ) -> PrecisionPlan:
        """The plan for a ``DeviceChoice``: the original's split on CUDA at half precision,
        all float32 at float32, and a float32 vision side on the CPU."""
        if device_type == "cuda" and dtype_name in ("float16", "bfloat16"):
            return cls(
                vit_matmul=dtype_name,
                vit_other="float32",
                qformer="float32",
                video="float32",
                decoder=dtype_name,
                encoder_autocast=dtype_name,
                quantization=quantization,
            )
        if device_type == "cuda":
            return cls.uniform(dtype_name)
        return cls("float32", "float32", "float32", "float32", dtype_name)

    @property
    def encoder_label(self) -> str:
        """What the frame tokens depend on (part of the memory cache key). A plan computing
        everything in one dtype is labelled by that dtype alone ("float32"), as caches made
        before the plan existed were."""
        if self.vit_matmul == self.vit_other == self.qformer and self.encoder_autocast is None:
            return self.vit_matmul
        return (
            f"vit {self.vit_matmul} (norms, positions, q/v bias {self.vit_other}), "
            f"q-former {self.qformer}, autocast {self.encoder_autocast or 'none'}"
        )

    @property
    def label(self) -> str:
        """For people: e.g. ``"vision float16/float32, decoder float16"``."""
        if len({self.vit_matmul, self.vit_other, self.qformer, self.video, self.decoder}) == 1:
            return self.decoder + (f", decoder {self.quantization}" if self.quantization else "")
        vision = "/".join(dict.fromkeys((self.vit_matmul, self.vit_other, self.qformer)))
        decoder = self.quantization or self.decoder
        return f"vision {vision}, decoder {decoder}"

    # ------------------------------------------------------------------ applying it
    def apply_to_encoder(self, encoder: nn.Module) -> nn.Module:
        """Convert a ``FrameEncoder``'s parameters group by group (in place; returned)."""
        import torch

        for group, param in encoder_groups(encoder):
            param.data = param.data.to(getattr(torch, getattr(self, group)))
        return encoder

    def apply_to_video(self, video_qformer: nn.Module) -> nn.Module:
        import torch

        return video_qformer.to(getattr(torch, self.video))

    def encoder_autocast_context(self, device_type: str) -> contextlib.AbstractContextManager:
        """``torch.autocast`` for the frame encoder, or a null context."""
        if self.encoder_autocast is None:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(device_type, dtype=getattr(torch, self.encoder_autocast))

    def encoder_input_dtype(self) -> torch.dtype:
        """Pixels enter the ViT in float32 under autocast (the original), else its dtype."""
        import torch

        return getattr(torch, "float32" if self.encoder_autocast else self.vit_matmul)


def encoder_groups(encoder: nn.Module) -> Iterator[tuple[str, torch.nn.Parameter]]:
    """``(group, parameter)`` for every parameter of a ``FrameEncoder`` (see ``PrecisionPlan``)."""
    from torch import nn

    vit = encoder.visual_encoder
    seen: set[int] = set()
    for name, module in vit.named_modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            for pname, param in module.named_parameters(recurse=False):
                seen.add(id(param))
                qv_bias = pname == "bias" and name.endswith("self_attn.qkv")
                yield ("vit_other" if qv_bias else "vit_matmul"), param
    for param in vit.parameters():
        if id(param) not in seen:
            yield "vit_other", param
    yield "qformer", encoder.query_tokens
    for param in encoder.qformer.parameters():
        yield "qformer", param
