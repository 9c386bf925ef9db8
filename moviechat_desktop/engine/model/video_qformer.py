"""Memory frames → video Q-Former → ``llama_proj`` → visual tokens for the decoder.

The frames ``(T, Q, D)`` get row ``t`` of the hierarchical position table added to each of
their ``Q`` tokens, are flattened to one sequence ``(1, T·Q, D)`` (frame-major), and the
video Q-Former's learned queries attend to it. ``llama_proj`` maps the ``Qv`` outputs to the
decoder's width: ``(1, Qv, H)``.
"""

from __future__ import annotations

import torch
from torch import nn

from moviechat_desktop.engine.model.config import QFormerConfig
from moviechat_desktop.engine.model.encoder import build_qformer


class VideoQFormer(nn.Module):
    """The Video-LLaMA part of MovieChat; attribute names follow the checkpoint's keys."""

    def __init__(self, cfg: QFormerConfig, llm_hidden_size: int, max_frame_pos: int) -> None:
        super().__init__()
        if cfg.encoder_hidden_size != cfg.hidden_size:
            raise ValueError("the video Q-Former attends to frame tokens of its own width")
        self.video_qformer = build_qformer(cfg)
        self.video_query_tokens = nn.Parameter(
            torch.zeros(1, cfg.num_query_tokens, cfg.hidden_size)
        )
        # The trained 32-row table the 256 hierarchical positions are built from (positions.py).
        self.video_frame_position_embedding = nn.Embedding(max_frame_pos, cfg.hidden_size)
        self.llama_proj = nn.Linear(cfg.hidden_size, llm_hidden_size)
        self.eval()

    @staticmethod
    def qformer_input(frames: torch.Tensor, position_table: torch.Tensor) -> torch.Tensor:
        """``(T, Q, D)`` frames + rows ``0..T−1`` of the table → ``(1, T·Q, D)``."""
        if frames.dim() != 3:
            raise ValueError(f"expected frames (T, Q, D), got {tuple(frames.shape)}")
        count = frames.shape[0]
        if count == 0:
            raise ValueError("no frames to attend to")
        if count > position_table.shape[0]:
            raise ValueError(
                f"{count} frames exceed the {position_table.shape[0]} frame positions; "
                "compress the memory first"
            )
        positions = position_table[:count].to(frames)[:, None, :]  # (T, 1, D)
        return (frames + positions).reshape(1, -1, frames.shape[-1])  # (1, T·Q, D)

    def hidden(self, qformer_input: torch.Tensor) -> torch.Tensor:
        """The video Q-Former's ``last_hidden_state`` ``(1, Qv, D)`` for one flattened input."""
        queries = self.video_query_tokens.expand(qformer_input.shape[0], -1, -1)  # (1, Qv, D)
        out = self.video_qformer(query_embeds=queries, encoder_hidden_states=qformer_input)
        return out.last_hidden_state  # (1, Qv, D)

    def forward(self, frames: torch.Tensor, position_table: torch.Tensor) -> torch.Tensor:
        """``(T, Q, D)`` memory frames → ``(1, Qv, H)`` decoder inputs."""
        return self.llama_proj(self.hidden(self.qformer_input(frames, position_table)))
