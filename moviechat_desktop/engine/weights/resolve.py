"""``resolve_model_paths()``: the installed real model, or a message saying what is missing."""

from __future__ import annotations

from moviechat_desktop.engine.errors import WeightsCorrupt, WeightsMissing
from moviechat_desktop.engine.model.paths import ModelPaths
from moviechat_desktop.engine.weights.manifest import (
    Manifest,
    WeightPart,
    format_bytes,
    load_manifest,
)
from moviechat_desktop.engine.weights.status import PartStatus, weights_status

HOW_TO_GET = (
    "Get them with `moviechat-desktop weights download`, or in the app with "
    "Assistant ▸ Weights… (which can also use files you already have: "
    "`moviechat-desktop weights import PATH`)."
)


def _size(status: PartStatus) -> str:
    return ("" if status.size_exact else "~") + format_bytes(status.size)


def missing_message(statuses: list[PartStatus]) -> str:
    """One paragraph naming each missing part with its size, and how to get it."""
    lines = []
    for s in statuses:
        extra = f", {format_bytes(s.partial_bytes)} downloaded so far" if s.partial_bytes else ""
        lines.append(f"{s.title} ({_size(s)}{extra})")
    total = sum(s.size for s in statuses)
    return (
        f"The MovieChat model weights are not installed: missing {'; '.join(lines)} "
        f"— about {format_bytes(total)} in all. {HOW_TO_GET}"
    )


def offline_message(parts: list[WeightPart]) -> str:
    names = "; ".join(f"{p.title} ({p.size_label} from {p.source.describe()})" for p in parts)
    return (
        f"offline mode is on (HF_HUB_OFFLINE), so nothing can be downloaded. Missing: {names}. "
        "Unset HF_HUB_OFFLINE to download them, or use local files: "
        "`moviechat-desktop weights import PATH` (Assistant ▸ Weights… ▸ Use local files…)."
    )


def resolve_model_paths(manifest: Manifest | None = None) -> ModelPaths:
    """The installed parts of the real model, preferring converted ``.safetensors``.

    Raises ``WeightsMissing`` listing every missing part with its size and how to get it, or
    ``WeightsCorrupt`` when a part is present but failed a check.
    """
    manifest = manifest or load_manifest()
    statuses = weights_status(manifest)
    invalid = [s for s in statuses if s.state == "invalid"]
    if invalid:
        details = "; ".join(f"{s.title}: {s.detail}" for s in invalid)
        raise WeightsCorrupt(
            f"model weights failed a check and are not used — {details}. "
            "Run `moviechat-desktop weights verify`, then download or import them again."
        )
    missing = [s for s in statuses if not s.usable]
    if missing:
        raise WeightsMissing(missing_message(missing))
    found = {s.field: s.path for s in statuses if s.path is not None}
    return ModelPaths(
        eva_vit=found["eva_vit"],
        blip2_qformer=found["blip2_qformer"],
        videollama=found["videollama"],
        llama_dir=found["llama_dir"],
        config=manifest.model_config,
    )
