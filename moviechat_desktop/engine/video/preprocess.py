"""Pixel preprocessing shared by the film frames and the breakpoint frame.

Both of the original's processors end in the same float32 computation, ``(u8 / 255 - mean) /
std`` per channel (CLIP's mean and std), which ``normalize`` reproduces bit for bit:

- film frames arrive already squashed to ``size x size`` by decord (``FrameDecoder``), so they
  only need ``normalize`` (the original's ``AlproVideoEvalProcessor`` never resizes);
- the breakpoint frame is a full-size picture: ``preprocess_image`` squashes it with Pillow's
  antialiased bicubic resize (as ``Blip2ImageEvalProcessor`` does; a torch bicubic differs by up
  to 3 levels) and then normalizes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def normalize(frames_uint8: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 RGB → (N, 3, H, W) float32 ``(u8/255 - mean) / std``.

    Runs on the tensor's own device, so a caller may move the (4x smaller) uint8 frames to the
    accelerator first and normalize there.
    """
    import torch

    frames = torch.as_tensor(frames_uint8)
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 frames shaped (N, H, W, 3), got {frames.dtype} {tuple(frames.shape)}"
        )
    x = frames.permute(0, 3, 1, 2).to(torch.float32) / 255.0  # (N, 3, H, W)
    mean = torch.tensor(MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def resize_bicubic(rgb: np.ndarray, size: int = 224) -> np.ndarray:
    """HxWx3 uint8 → size x size x 3 uint8 with Pillow's antialiased bicubic (aspect not kept)."""
    image = np.ascontiguousarray(rgb)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    resized = Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC)
    return np.array(resized, dtype=np.uint8)  # a writable copy


def preprocess_image(rgb: np.ndarray, size: int = 224) -> torch.Tensor:
    """HxWx3 uint8 RGB picture → (3, size, size) float32, as the original's breakpoint frame."""
    import torch

    resized = torch.from_numpy(resize_bicubic(rgb, size))  # (size, size, 3)
    return normalize(resized.unsqueeze(0))[0]  # (3, size, size)
