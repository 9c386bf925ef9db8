"""Where the four parts of a MovieChat model live on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from moviechat_desktop.engine.errors import WeightsMissing

# File names of a directory laid out like ../shared/reference (the tiny test model).
REFERENCE_LAYOUT = {
    "config": "tiny_config.json",
    "eva_vit": "tiny_eva_vit.pth",
    "blip2_qformer": "tiny_blip2_qformer.pth",
    "videollama": "tiny_videollama.pth",
    "llama_dir": "tiny_llama",
}


# Files of a reference-layout directory holding the original's table (tiny sets, full size).
ORIGINAL_TABLE_FILES = (
    "reference_outputs.safetensors",
    "full_size_seed42_position_table.safetensors",
)


@dataclass(frozen=True)
class ModelPaths:
    """The four parts of the model (each a ``.pth`` or a converted ``.safetensors``).

    ``config`` is a ``tiny_config.json``-style file giving the dimensions; ``None`` means the
    real model's dimensions (EVA ViT-g, BERT-base Q-Formers, Vicuna-7B).
    """

    eva_vit: Path  # eva_vit_g: plain state dict
    blip2_qformer: (
        Path  # blip2_pretrained_flant5xxl: {'model': Qformer.*, query_tokens, ln_vision.*}
    )
    videollama: Path  # finetune-vicuna7b-v2: {'model': video_Qformer.*, llama_proj.*, ...}
    llama_dir: Path  # Hugging Face Llama directory (config.json + weights [+ tokenizer])
    config: Path | None = None
    # the original's init-time position table (``frame_position_embeddings``) for
    # ``model.position_table = "original"``; None: the one shipped for the real model
    original_positions: Path | None = None

    @classmethod
    def from_reference_dir(cls, directory: str | Path) -> ModelPaths:
        """Paths of a directory laid out exactly like the reference set; a ``.safetensors``
        file beside a ``.pth`` of the same stem is preferred (it never unpickles)."""
        directory = Path(directory)
        if not directory.is_dir():
            raise WeightsMissing(f"model directory not found: {directory}")
        found: dict[str, Path] = {}
        missing = []
        for field, name in REFERENCE_LAYOUT.items():
            path = directory / name
            converted = path.with_suffix(".safetensors")
            if name.endswith(".pth") and converted.is_file():
                path = converted
            if not path.exists():
                missing.append(name)
            found[field] = path
        if missing:
            raise WeightsMissing(f"model directory {directory} lacks: {', '.join(missing)}")
        tables = [directory / name for name in ORIGINAL_TABLE_FILES]
        original = next((t for t in tables if t.is_file()), None)
        return cls(**found, original_positions=original)
