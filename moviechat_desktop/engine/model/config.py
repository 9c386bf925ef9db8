"""Every dimension and memory setting of a MovieChat model, as documented dataclasses.

``ModelConfig.real()`` describes the published model (EVA ViT-g, BERT-base Q-Formers,
Vicuna-7B). ``ModelConfig.from_reference_json(path)`` reads a ``tiny_config.json`` written by
the reference harness, so the tiny test model takes every dimension from its own file.
The decoder's own dimensions (layers, heads, vocabulary) come from the Hugging Face directory's
``config.json``; only its hidden size is needed here, as the output width of ``llama_proj``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moviechat_desktop.engine.errors import CheckpointMismatch, WeightsMissing


@dataclass(frozen=True)
class VisionConfig:
    """The EVA ViT frame encoder (loaded into transformers' ``Blip2VisionModel``)."""

    image_size: int = 224  # input side in pixels (frames are squashed to image_size²)
    patch_size: int = 14  # side of a square patch: (224/14)² = 256 patches + CLS = 257 tokens
    hidden_size: int = 1408  # token width
    num_layers: int = 39  # transformer blocks (EVA-CLIP-g has 40; BLIP-2 uses the first 39)
    num_heads: int = 16  # attention heads (head_dim 88)
    intermediate_size: int = 6144  # MLP width = int(1408 * 4.3637)
    layer_norm_eps: float = 1e-6  # eps of the block LayerNorms
    ln_vision_eps: float = 1e-5  # eps of BLIP-2's ``ln_vision`` after the last block

    @property
    def num_tokens(self) -> int:
        """Tokens per frame out of the ViT: the patches plus CLS."""
        return (self.image_size // self.patch_size) ** 2 + 1


@dataclass(frozen=True)
class QFormerConfig:
    """A BLIP-2 Q-Former (BERT layers with learned queries, loaded into ``Blip2QFormerModel``)."""

    num_query_tokens: int = 32  # learned queries = tokens out per input
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072  # width of the query feed-forward (intermediate_query)
    cross_attention_frequency: int = 2  # cross-attention in layers with index % freq == 0
    encoder_hidden_size: int = 1408  # width of what the queries attend to
    layer_norm_eps: float = 1e-12


@dataclass(frozen=True)
class MemoryConfig:
    """MovieChat's short/long-term memory and hierarchical frame positions (original defaults)."""

    frames_per_fragment: int = 8  # frames sampled per fragment (inference.py MAX_INT)
    short_memory_merge: int = 2  # a fragment's frames are merged down to this many
    long_memory_length: int = 256  # most frames fed to the video Q-Former (= n_position²)
    n_position: int = 16  # the 256-row table is built from the first 16 position rows
    alpha: float = 0.01  # mixing weight of the hierarchical position formula
    max_frame_pos: int = 32  # rows of the trained ``video_frame_position_embedding``


@dataclass(frozen=True)
class ModelConfig:
    """The whole model: frame encoder, both Q-Formers, projection width and memory settings."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    qformer: QFormerConfig = field(default_factory=QFormerConfig)
    video_qformer: QFormerConfig = field(
        default_factory=lambda: QFormerConfig(
            num_layers=2, cross_attention_frequency=1, encoder_hidden_size=768
        )
    )
    llm_hidden_size: int = 4096  # Vicuna-7B width = output width of ``llama_proj``
    memory: MemoryConfig = field(default_factory=MemoryConfig)

    @property
    def image_size(self) -> int:
        """Side in pixels of the frames the encoder takes."""
        return self.vision.image_size

    @property
    def num_positions(self) -> int:
        """Rows of the hierarchical position table (n_position²)."""
        return self.memory.n_position**2

    @classmethod
    def real(cls) -> ModelConfig:
        """The published MovieChat: EVA ViT-g 224 px, BERT-base Q-Formers, Vicuna-7B."""
        return cls()

    @classmethod
    def from_reference_json(cls, path: str | Path) -> ModelConfig:
        """Read a ``tiny_config.json`` (the reference harness's ``dims`` section)."""
        path = Path(path)
        if not path.is_file():
            raise WeightsMissing(f"model config not found: {path}")
        try:
            dims: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["dims"]
            vit, ln, qf, vqf = (
                dims["eva_vit"],
                dims["ln_vision"],
                dims["qformer"],
                dims["video_qformer"],
            )
            mem, proj = dims["memory"], dims["llama_proj"]
            return cls(
                vision=VisionConfig(
                    image_size=vit["img_size"],
                    patch_size=vit["patch_size"],
                    hidden_size=vit["embed_dim"],
                    num_layers=vit["depth"],
                    num_heads=vit["num_heads"],
                    intermediate_size=vit["mlp_hidden"],
                    layer_norm_eps=vit["norm_eps"],
                    ln_vision_eps=ln["eps"],
                ),
                qformer=QFormerConfig(
                    num_query_tokens=qf["num_query_token"],
                    hidden_size=qf["hidden_size"],
                    num_layers=qf["num_hidden_layers"],
                    num_heads=qf["num_attention_heads"],
                    intermediate_size=qf["intermediate_size"],
                    cross_attention_frequency=qf["cross_attention_freq"],
                    encoder_hidden_size=qf["encoder_width"],
                    layer_norm_eps=qf["layer_norm_eps"],
                ),
                video_qformer=QFormerConfig(
                    num_query_tokens=vqf["num_video_query_token"],
                    hidden_size=vqf["hidden_size"],
                    num_layers=vqf["num_hidden_layers"],
                    num_heads=vqf["num_attention_heads"],
                    intermediate_size=vqf["intermediate_size"],
                    cross_attention_frequency=vqf["cross_attention_freq"],
                    encoder_hidden_size=vqf["encoder_width"],
                    layer_norm_eps=vqf["layer_norm_eps"],
                ),
                llm_hidden_size=proj["out_features"],
                memory=MemoryConfig(
                    frames_per_fragment=mem["frames_per_fragment"],
                    short_memory_merge=mem["short_memory_merge"],
                    long_memory_length=mem["long_memory_length"],
                    n_position=mem["n_position"],
                    alpha=mem["alpha"],
                    max_frame_pos=mem["max_frame_pos"],
                ),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointMismatch(f"{path.name} is not a valid model config: {err!r}") from err
