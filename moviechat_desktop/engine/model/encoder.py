"""The per-frame encoder: EVA ViT → ``ln_vision`` → BLIP-2 Q-Former → query tokens.

Built from transformers' own classes (measured to reproduce the original exactly, see
MAPPING.md): the EVA ViT is a ``Blip2VisionModel`` whose ``post_layernorm`` plays BLIP-2's
``ln_vision`` (its eps is set to 1e-5; the block norms keep 1e-6), and the Q-Former is a
``Blip2QFormerModel`` fed the learned ``query_tokens`` as ``query_embeds``. Weights are mapped
from the original checkpoints in ``checkpoints.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from moviechat_desktop.engine.model.config import QFormerConfig, VisionConfig


def build_qformer(cfg: QFormerConfig) -> nn.Module:
    """A ``Blip2QFormerModel`` with MovieChat's pruned BERT layout (no text input), eval mode."""
    from transformers import Blip2QFormerConfig, Blip2QFormerModel

    qformer = Blip2QFormerModel(
        Blip2QFormerConfig(
            hidden_size=cfg.hidden_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            intermediate_size=cfg.intermediate_size,
            cross_attention_frequency=cfg.cross_attention_frequency,
            encoder_hidden_size=cfg.encoder_hidden_size,
            layer_norm_eps=cfg.layer_norm_eps,
            hidden_act="gelu",  # exact erf GELU, as BERT
            use_qformer_text_input=False,  # True would create modules no checkpoint fills
        )
    )
    return qformer.eval()


class FrameEncoder(nn.Module):
    """Pixels ``(N, 3, S, S)`` (normalized) → tokens ``(N, Q, D)``; one batch per call."""

    def __init__(self, vision: VisionConfig, qformer: QFormerConfig) -> None:
        super().__init__()
        from transformers import Blip2VisionConfig, Blip2VisionModel

        if qformer.encoder_hidden_size != vision.hidden_size:
            raise ValueError("the Q-Former must attend to tokens of the ViT's width")
        self.vision_config = vision
        self.visual_encoder = Blip2VisionModel(
            Blip2VisionConfig(
                hidden_size=vision.hidden_size,
                intermediate_size=vision.intermediate_size,
                num_hidden_layers=vision.num_layers,
                num_attention_heads=vision.num_heads,
                image_size=vision.image_size,
                patch_size=vision.patch_size,
                qkv_bias=True,  # q and v biases; k has none (zeros in the fused bias)
                layer_norm_eps=vision.layer_norm_eps,
                hidden_act="gelu",
            )
        )
        # post_layernorm is BLIP-2's ln_vision: the config has one eps for every norm, so the
        # last one is fixed here (1e-6 everywhere gives a 1.1e-5 error, MAPPING.md).
        self.visual_encoder.post_layernorm.eps = vision.ln_vision_eps
        self.qformer = build_qformer(qformer)
        self.query_tokens = nn.Parameter(
            torch.zeros(1, qformer.num_query_tokens, qformer.hidden_size)
        )
        self.eval()

    def vision_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the ViT's last-block output and ``ln_vision`` of it, both ``(N, 1+P, W)``."""
        size = self.vision_config.image_size
        if pixels.dim() != 4 or pixels.shape[1] != 3 or tuple(pixels.shape[2:]) != (size, size):
            raise ValueError(f"expected pixels (N, 3, {size}, {size}), got {tuple(pixels.shape)}")
        vit = self.visual_encoder
        embeddings = vit.embeddings(pixels)  # (N, 1+P, W): CLS + patches + positions
        raw = vit.encoder(inputs_embeds=embeddings).last_hidden_state  # (N, 1+P, W)
        return raw, vit.post_layernorm(raw)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        _, image_embeds = self.vision_features(pixels)  # (N, 1+P, W)
        queries = self.query_tokens.expand(image_embeds.shape[0], -1, -1)  # (N, Q, D)
        out = self.qformer(query_embeds=queries, encoder_hidden_states=image_embeds)
        return out.last_hidden_state  # (N, Q, D)
