"""THE one place that maps the original checkpoints' keys onto our modules.

Three files in their original formats (MAPPING.md has the measured rules):

* ``eva_vit_g.pth`` (plain state dict)          → ``FrameEncoder.visual_encoder`` (Blip2VisionModel)
* ``blip2_pretrained_flant5xxl.pth`` ``{'model'}`` → ``FrameEncoder.qformer``, ``query_tokens`` and
  ``ln_vision`` (= the ViT's ``post_layernorm``)
* ``finetune-vicuna7b-v2.pth`` ``{'model'}``     → ``VideoQFormer`` (video Q-Former, video queries,
  frame positions, ``llama_proj``)

The Vicuna decoder is a plain Hugging Face directory loaded by ``from_pretrained``; its loading
report is checked here against ``LLAMA_IGNORED``.

The key rule (every key of a file's state dict falls in exactly one case):

1. **needed**: a rule maps it onto a parameter or buffer of a module we build. A needed key the
   file lacks → ``CheckpointMismatch`` naming it in the file's own naming; a shape that differs
   → ``CheckpointMismatch`` too.
2. **inside a module we build but unknown** (under an ``*_OWNED`` prefix, matched by no rule and
   no ignore pattern, e.g. ``Qformer.bert.encoder.layer.0.attention.self.foo``) → error: the
   file is not what the module expects.
3. **part we do not use**: on an explicit, commented ignore list (heads MovieChat drops, the
   text-side Q-Former layers, buffers recomputed here, EVA blocks beyond the 39th), or outside
   every owned prefix of that file (``t5_proj.*``, an audio branch, anything else the training
   run saved) → listed (logged at INFO with the count and the first keys), never fatal.

What is outside the state dict (optimizer state, config objects, scaler, epoch) never reaches
this module: ``checkpoint_io`` skips and lists it. Nothing is ever loaded with ``strict=False``:
the mapped dict must fill every key of the module exactly.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from moviechat_desktop.engine.errors import CheckpointMismatch
from moviechat_desktop.engine.model.checkpoint_io import read_checkpoint
from moviechat_desktop.engine.model.config import VisionConfig
from moviechat_desktop.engine.model.encoder import FrameEncoder
from moviechat_desktop.engine.model.video_qformer import VideoQFormer

log = logging.getLogger(__name__)

_PLACEHOLDERS = {
    "n": r"\d+",
    "p": r"weight|bias",
    "lin": r"query|key|value",
    "sub": r"attention\.output|crossattention\.output|intermediate_query|output_query",
    "part": r"dense|LayerNorm",
    "fc": r"fc1|fc2",
    "norm": r"1|2",
}


class _Rule:
    """A two-way key rename, e.g. ``blocks.{n}.norm{norm}.{p}`` ↔ ``...layer_norm{norm}.{p}``."""

    def __init__(self, source: str, target: str) -> None:
        self.source, self.target = source, target
        self._src = self._compile(source)
        self._dst = self._compile(target)

    @staticmethod
    def _compile(template: str) -> re.Pattern[str]:
        pattern = re.escape(template)
        for name, regex in _PLACEHOLDERS.items():
            pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>{regex})")
        return re.compile(f"^{pattern}$")

    def forward(self, key: str) -> str | None:
        match = self._src.match(key)
        return self.target.format(**match.groupdict()) if match else None

    def inverse(self, key: str) -> str | None:
        match = self._dst.match(key)
        return self.source.format(**match.groupdict()) if match else None


def _qformer_rules(src: str, dst: str) -> list[_Rule]:
    """LAVIS BERT Q-Former (``{src}bert.``) → ``Blip2QFormerModel`` (``{dst}``)."""
    bert = f"{src}bert."
    return [
        _Rule(f"{bert}embeddings.LayerNorm.{{p}}", f"{dst}layernorm.{{p}}"),
        _Rule(
            f"{bert}encoder.layer.{{n}}.attention.self.{{lin}}.{{p}}",
            f"{dst}encoder.layer.{{n}}.attention.attention.{{lin}}.{{p}}",
        ),
        _Rule(
            f"{bert}encoder.layer.{{n}}.crossattention.self.{{lin}}.{{p}}",
            f"{dst}encoder.layer.{{n}}.crossattention.attention.{{lin}}.{{p}}",
        ),
        _Rule(
            f"{bert}encoder.layer.{{n}}.{{sub}}.{{part}}.{{p}}",
            f"{dst}encoder.layer.{{n}}.{{sub}}.{{part}}.{{p}}",
        ),
    ]


def _qformer_ignored(src: str) -> list[str]:
    """BERT parts MovieChat deletes (or never uses) after building a Q-Former."""
    bert = re.escape(f"{src}bert.")
    return [
        rf"^{re.escape(src)}cls\.",  # the LM head (Qformer.cls = None)
        rf"^{bert}embeddings\.(word_embeddings|position_embeddings)\.",  # text input: deleted
        rf"^{bert}embeddings\.position_ids$",  # a deterministic arange buffer
        rf"^{bert}encoder\.layer\.\d+\.(intermediate|output)\.",  # text FFN (only *_query kept)
    ]


_EVA_PREFIX = "visual_encoder."
EVA_RULES = [
    _Rule("cls_token", f"{_EVA_PREFIX}embeddings.class_embedding"),
    _Rule("pos_embed", f"{_EVA_PREFIX}embeddings.position_embedding"),
    _Rule("patch_embed.proj.{p}", f"{_EVA_PREFIX}embeddings.patch_embedding.{{p}}"),
    _Rule(
        "blocks.{n}.norm{norm}.{p}", f"{_EVA_PREFIX}encoder.layers.{{n}}.layer_norm{{norm}}.{{p}}"
    ),
    _Rule("blocks.{n}.attn.qkv.weight", f"{_EVA_PREFIX}encoder.layers.{{n}}.self_attn.qkv.weight"),
    _Rule(
        "blocks.{n}.attn.proj.{p}", f"{_EVA_PREFIX}encoder.layers.{{n}}.self_attn.projection.{{p}}"
    ),
    _Rule("blocks.{n}.mlp.{fc}.{p}", f"{_EVA_PREFIX}encoder.layers.{{n}}.mlp.{{fc}}.{{p}}"),
]
# q_bias and v_bias become one fused bias cat(q_bias, 0, v_bias): k has no bias in EVA.
_EVA_QKV_BIAS = re.compile(r"^blocks\.(\d+)\.attn\.(q|v)_bias$")
_EVA_FUSED_BIAS = re.compile(
    rf"^{re.escape(_EVA_PREFIX)}encoder\.layers\.(\d+)\.self_attn\.qkv\.bias$"
)
EVA_IGNORED = [
    # A final norm / head of the EVA-CLIP model: BLIP-2 takes the last block's raw tokens.
    r"^(norm|fc_norm|head)\.",
]

BLIP2_RULES = [
    *_qformer_rules("Qformer.", "qformer."),
    _Rule("query_tokens", "query_tokens"),
    _Rule("ln_vision.{p}", f"{_EVA_PREFIX}post_layernorm.{{p}}"),
]
# Prefixes of the modules built from each file: an unknown key under one is an error.
BLIP2_OWNED = ("Qformer.", "query_tokens", "ln_vision.")
VIDEOLLAMA_OWNED = (
    "video_Qformer.",
    "video_query_tokens",
    "video_frame_position_embedding.",
    "llama_proj.",
)
BLIP2_IGNORED = [
    *_qformer_ignored("Qformer."),
    r"^t5_proj\.",  # BLIP-2's projection into Flan-T5: MovieChat uses Video-LLaMA's llama_proj
]

VIDEOLLAMA_RULES = [
    *_qformer_rules("video_Qformer.", "video_qformer."),
    _Rule("video_query_tokens", "video_query_tokens"),
    _Rule("video_frame_position_embedding.weight", "video_frame_position_embedding.weight"),
    _Rule("llama_proj.{p}", "llama_proj.{p}"),
]
VIDEOLLAMA_IGNORED = [
    *_qformer_ignored("video_Qformer."),
    # Persistent buffers Video-LLaMA's runner also saved (reference README, section A.3):
    r"^Qformer\.bert\.embeddings\.position_ids$",
    r"^llama_model\.model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$",
    r"^audio_",  # Video-LLaMA's audio branch, if the file was saved with it
]

# The Vicuna directory: 4.28-era files carry per-layer rotary buffers that transformers 5.x
# recomputes itself (one non-persistent model.rotary_emb); everything else must match.
LLAMA_IGNORED = [r"^(model\.)?layers\.\d+\.self_attn\.rotary_emb\.inv_freq$"]


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(re.search(p, key) for p in patterns)


def map_keys(
    state: Mapping[str, torch.Tensor],
    rules: list[_Rule],
    ignored: list[str],
    owned: tuple[str, ...] = ("",),
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Rename ``state`` by ``rules``; return (mapped, unused source keys, unknown source keys).

    Unused: on the ``ignored`` list, or outside every ``owned`` prefix (parts of the file we do
    not build). Unknown: under an owned prefix but matched by no rule (an error for callers).
    """
    mapped: dict[str, torch.Tensor] = {}
    skipped, unknown = [], []
    for key, tensor in state.items():
        if _matches(key, ignored) or not key.startswith(owned):
            skipped.append(key)
            continue
        for rule in rules:
            target = rule.forward(key)
            if target is not None:
                mapped[target] = tensor
                break
        else:
            unknown.append(key)
    return mapped, skipped, unknown


def _resize_pos_embed(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """Bicubically resize the patch positions of ``pos`` ``(1, 1+g², W)`` to ``grid²``, as LAVIS."""
    old = round((pos.shape[1] - 1) ** 0.5)
    cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
    patch_pos = patch_pos.float().reshape(1, old, old, -1).permute(0, 3, 1, 2)  # (1, W, g, g)
    patch_pos = nn.functional.interpolate(
        patch_pos, size=(grid, grid), mode="bicubic", align_corners=False
    )
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)  # (1, G², W)
    log.info("EVA position embedding resized from %dx%d to %dx%d", old, old, grid, grid)
    return torch.cat([cls_pos, patch_pos.to(pos.dtype)], dim=1)


def map_eva_vit(
    state: Mapping[str, torch.Tensor], vision: VisionConfig
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """``eva_vit_g.pth`` → ``FrameEncoder`` keys (see ``map_keys`` for the result)."""
    extra_blocks = re.compile(r"^blocks\.(\d+)\.")
    plain: dict[str, torch.Tensor] = {}
    biases: dict[str, dict[str, torch.Tensor]] = {}
    unused_blocks = []
    for key, tensor in state.items():
        in_block = extra_blocks.match(key)
        if in_block and int(in_block.group(1)) >= vision.num_layers:
            # EVA-CLIP-g has 40 blocks; BLIP-2 uses the 39th's output (LAVIS drops the rest).
            unused_blocks.append(key)
        elif match := _EVA_QKV_BIAS.match(key):
            biases.setdefault(match.group(1), {})[match.group(2)] = tensor
        else:
            plain[key] = tensor
    if unused_blocks:
        log.info(
            "eva_vit: %d keys of blocks beyond %d not used", len(unused_blocks), vision.num_layers
        )
    mapped, skipped, unknown = map_keys(plain, EVA_RULES, EVA_IGNORED)
    for block, qv in biases.items():
        if set(qv) != {"q", "v"}:
            continue  # reported as missing by check_state (the fused bias stays absent)
        fused = torch.cat([qv["q"], torch.zeros_like(qv["q"]), qv["v"]])  # (3W,)
        mapped[f"{_EVA_PREFIX}encoder.layers.{block}.self_attn.qkv.bias"] = fused
    pos_key = f"{_EVA_PREFIX}embeddings.position_embedding"
    if pos_key in mapped and mapped[pos_key].shape[1] != vision.num_tokens:
        pos = mapped[pos_key]
        if pos.dim() == 3 and round((pos.shape[1] - 1) ** 0.5) ** 2 == pos.shape[1] - 1:
            mapped[pos_key] = _resize_pos_embed(pos, vision.image_size // vision.patch_size)
    return mapped, skipped + unused_blocks, unknown


def _source_name(
    key: str, rule_sets: Iterable[tuple[str, list[_Rule]]], eva_bias_present: set[str]
) -> str:
    """How a module key is called in the original file that should hold it (for messages)."""
    for file_name, rules in rule_sets:
        if rules is EVA_RULES and (match := _EVA_FUSED_BIAS.match(key)):
            names = [f"blocks.{match.group(1)}.attn.{b}_bias" for b in "qv"]
            absent = [n for n in names if n not in eva_bias_present] or names
            return f"{file_name}: {' / '.join(absent)}"
        for rule in rules:
            source = rule.inverse(key)
            if source is not None:
                return f"{file_name}: {source}"
    return key


def _log_ignored(name: str, keys: list[str]) -> None:
    if keys:
        log.info(
            "%s: %d keys not used by MovieChat (parts it does not build): %s",
            name,
            len(keys),
            _listing(keys),
        )


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def check_state(
    module: nn.Module,
    mapped: Mapping[str, torch.Tensor],
    unknown: list[str],
    what: str,
    *,
    rule_sets: Iterable[tuple[str, list[_Rule]]] = (),
    source_keys: Iterable[str] = (),
) -> None:
    """Raise ``CheckpointMismatch`` unless ``mapped`` fills every key of ``module`` with the
    right shape and nothing is left over (``unknown``: source keys no rule or ignore took)."""
    expected = module.state_dict()
    rule_sets = list(rule_sets)
    present = set(source_keys)
    missing = [_source_name(k, rule_sets, present) for k in expected if k not in mapped]
    unexpected = list(unknown) + [k for k in mapped if k not in expected]
    shapes = [
        f"{_source_name(k, rule_sets, present)} (file {list(t.shape)}, model "
        f"{list(expected[k].shape)})"
        for k, t in mapped.items()
        if k in expected and tuple(t.shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {_listing(shapes)}")
    if problems:
        raise CheckpointMismatch(f"{what} does not fit the model: " + "; ".join(problems))


def fill_frame_encoder(
    encoder: FrameEncoder,
    eva_state: Mapping[str, torch.Tensor],
    blip2_state: Mapping[str, torch.Tensor],
    eva_name: str = "eva_vit_g.pth",
    blip2_name: str = "blip2_pretrained_flant5xxl.pth",
) -> None:
    """Fill ``encoder`` (a ``FrameEncoder``, possibly on the meta device) from the two state
    dicts, or raise ``CheckpointMismatch`` (names are for messages)."""
    eva, eva_ignored, eva_unknown = map_eva_vit(eva_state, encoder.vision_config)
    blip2, blip2_ignored, blip2_unknown = map_keys(
        blip2_state, BLIP2_RULES, BLIP2_IGNORED, BLIP2_OWNED
    )
    _log_ignored(eva_name, eva_ignored)
    _log_ignored(blip2_name, blip2_ignored)
    merged = {**eva, **blip2}  # disjoint: the two rule sets target different modules
    check_state(
        encoder,
        merged,
        [f"{eva_name}: {k}" for k in eva_unknown] + [f"{blip2_name}: {k}" for k in blip2_unknown],
        f"{eva_name} + {blip2_name}",
        rule_sets=((eva_name, EVA_RULES), (blip2_name, BLIP2_RULES)),
        source_keys=eva_state,
    )
    encoder.load_state_dict(merged, strict=True, assign=True)
    encoder.visual_encoder.post_layernorm.eps = encoder.vision_config.ln_vision_eps


def load_frame_encoder(encoder: FrameEncoder, eva_path: Path, blip2_path: Path) -> None:
    """``fill_frame_encoder`` from the two checkpoint files (read safely)."""
    fill_frame_encoder(
        encoder,
        read_checkpoint(eva_path),
        read_checkpoint(blip2_path),
        Path(eva_path).name,
        Path(blip2_path).name,
    )


def fill_video_qformer(
    video_qformer: VideoQFormer,
    state: Mapping[str, torch.Tensor],
    name: str = "finetune-vicuna7b-v2.pth",
) -> None:
    """Fill ``video_qformer`` (a ``VideoQFormer``) from the Video-LLaMA state dict."""
    mapped, ignored, unknown = map_keys(
        state, VIDEOLLAMA_RULES, VIDEOLLAMA_IGNORED, VIDEOLLAMA_OWNED
    )
    _log_ignored(name, ignored)
    check_state(
        video_qformer,
        mapped,
        [f"{name}: {k}" for k in unknown],
        name,
        rule_sets=((name, VIDEOLLAMA_RULES),),
    )
    video_qformer.load_state_dict(mapped, strict=True, assign=True)


def load_video_qformer(video_qformer: VideoQFormer, videollama_path: Path) -> None:
    """``fill_video_qformer`` from the checkpoint file (read safely)."""
    fill_video_qformer(video_qformer, read_checkpoint(videollama_path), Path(videollama_path).name)


def _mismatch_text(entry: object) -> str:
    """``(key, file_shape, model_shape)`` (transformers' report) as readable text."""
    if isinstance(entry, tuple) and len(entry) == 3:
        key, file_shape, model_shape = entry
        return f"{key} (file {list(file_shape)}, model {list(model_shape)})"
    return str(entry)


def check_llama_loading(info: Mapping[str, Iterable[str]], where: str) -> None:
    """Fail on a ``from_pretrained(..., output_loading_info=True)`` report with problems."""
    missing = sorted(info.get("missing_keys", ()))
    unexpected = sorted(
        k for k in info.get("unexpected_keys", ()) if not _matches(k, LLAMA_IGNORED)
    )
    mismatched = sorted(_mismatch_text(k) for k in info.get("mismatched_keys", ()))
    errors = [str(e) for e in info.get("error_msgs", ())]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_listing(mismatched)}")
    if errors:
        problems.append(f"errors: {_listing(errors, 3)}")
    if problems:
        raise CheckpointMismatch(
            f"decoder in {where} does not fit its config: " + "; ".join(problems)
        )


def llama_checkpoint_keys(keys: Iterable[str]) -> list[str]:
    """The keys of a Vicuna directory that a modern ``LlamaForCausalLM`` must hold."""
    return [k for k in keys if not _matches(k, LLAMA_IGNORED)]
