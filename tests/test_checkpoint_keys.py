"""The REAL checkpoints' keys (``checkpoint_keys.json``) fit our full-size modules exactly.

The full-size modules are built on the meta device from ``ModelConfig.real()``; each file's key
list becomes meta tensors of the listed shapes and goes through the same ``fill_*`` functions the
loader uses (mapping, ignore list, strict shape check, assignment). Afterwards no parameter of
ours is left on the meta device, i.e. unloaded.
"""

from __future__ import annotations

import json

import pytest
import torch

from moviechat_desktop.engine.errors import CheckpointMismatch
from moviechat_desktop.engine.model.checkpoints import (
    fill_frame_encoder,
    fill_video_qformer,
    llama_checkpoint_keys,
)
from moviechat_desktop.engine.model.config import ModelConfig
from moviechat_desktop.engine.model.encoder import FrameEncoder
from moviechat_desktop.engine.model.video_qformer import VideoQFormer

DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64}


@pytest.fixture(scope="module")
def sections(reference_dir) -> dict:
    data = json.loads((reference_dir / "checkpoint_keys.json").read_text())
    return data["checkpoints"]


def _section(sections: dict, prefix: str) -> dict:
    (name,) = [k for k in sections if k.startswith(prefix)]
    return sections[name]


def _meta_state(keys: dict) -> dict[str, torch.Tensor]:
    """A state dict of meta tensors with the listed shapes (no memory)."""
    return {
        k: torch.empty(v["shape"], dtype=DTYPES[v["dtype"]], device="meta") for k, v in keys.items()
    }


def _fill_and_check_all_assigned(module: torch.nn.Module, fill) -> None:
    """Run ``fill``; afterwards every parameter must be a new object (assigned from the file),
    none the module's own initial one (which would mean: left unloaded)."""
    before = list(module.parameters())  # keep them alive so ids stay unique
    initial = {id(p) for p in before}
    expected_keys = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    fill()
    unloaded = [k for k, p in module.named_parameters() if id(p) in initial]
    assert not unloaded, unloaded
    assert {k: tuple(v.shape) for k, v in module.state_dict().items()} == expected_keys


def _frame_encoder() -> FrameEncoder:
    config = ModelConfig.real()
    with torch.device("meta"):
        return FrameEncoder(config.vision, config.qformer)


def test_eva_and_blip2_fill_the_full_size_frame_encoder(sections):
    eva = _meta_state(_section(sections, "eva_vit_g")["keys"])
    blip2_section = _section(sections, "blip2_pretrained")
    blip2 = _meta_state(blip2_section["keys_expected"])
    ln_vision = _meta_state(_section(sections, "ln_vision")["keys"])
    assert set(ln_vision) <= set(blip2)  # ln_vision comes from the BLIP-2 file
    assert len(eva) == _section(sections, "eva_vit_g")["num_keys"]
    assert len(blip2) == blip2_section["num_keys"]

    encoder = _frame_encoder()
    _fill_and_check_all_assigned(encoder, lambda: fill_frame_encoder(encoder, eva, blip2))
    # Linear weights take the file's dtype (fp16 in the real EVA list) until .to(dtype).
    assert encoder.visual_encoder.encoder.layers[0].mlp.fc1.weight.dtype == torch.float16
    # The fused qkv bias is cat(q_bias, 0, v_bias) of the right width.
    bias = encoder.visual_encoder.encoder.layers[0].self_attn.qkv.bias
    assert bias.shape == (3 * ModelConfig.real().vision.hidden_size,)
    # 511 + 258 file keys: 39 × 2 biases fuse into 39 tensors; position_ids is ignored.
    depth = ModelConfig.real().vision.num_layers
    assert len(encoder.state_dict()) == len(eva) - depth + len(blip2) - 1


def test_videollama_fills_the_full_size_video_qformer(sections):
    section = _section(sections, "finetune-vicuna7b")
    used = _meta_state(section["keys_moviechat_uses"])
    extra = _meta_state(section["predicted_extra_buffer_keys_in_file"])
    assert len(used) == section["num_keys_used"]
    config = ModelConfig.real()
    with torch.device("meta"):
        video = VideoQFormer(
            config.video_qformer, config.llm_hidden_size, config.memory.max_frame_pos
        )
    _fill_and_check_all_assigned(video, lambda: fill_video_qformer(video, {**used, **extra}))
    assert video.llama_proj.weight.shape == used["llama_proj.weight"].shape


def test_a_wrong_dimension_in_a_real_key_list_is_reported(sections):
    eva = _meta_state(_section(sections, "eva_vit_g")["keys"])
    blip2 = _meta_state(_section(sections, "blip2_pretrained")["keys_expected"])
    blip2["query_tokens"] = torch.empty(1, 16, 768, device="meta")
    with pytest.raises(CheckpointMismatch, match=r"query_tokens \(file \[1, 16, 768\]"):
        fill_frame_encoder(_frame_encoder(), eva, blip2)


def test_vicuna_keys_fit_modern_llama(sections):
    from transformers import LlamaConfig, LlamaForCausalLM

    section = _section(sections, "Vicuna-7B")
    keys = section["keys_original_class"]
    assert len(keys) == section["num_keys_original_class"]
    kept = llama_checkpoint_keys(keys)
    assert len(kept) == section["modern_transformers"]["num_keys"]
    flagged = [k for k, v in keys.items() if v["expected_by_modern_transformers_LlamaForCausalLM"]]
    assert sorted(kept) == sorted(flagged)
    with torch.device("meta"):
        llama = LlamaForCausalLM(LlamaConfig(**section["config"]))
    ours = {k: list(v.shape) for k, v in llama.state_dict().items()}
    assert ours == {k: keys[k]["shape"] for k in kept}


# ---------------------------------------------------------------- EVA loader behaviour (tiny)
def _tiny_states(reference_dir):
    from moviechat_desktop.engine.model.checkpoint_io import read_checkpoint

    config = ModelConfig.from_reference_json(reference_dir / "tiny_config.json")
    eva = read_checkpoint(reference_dir / "tiny_eva_vit.pth")
    blip2 = read_checkpoint(reference_dir / "tiny_blip2_qformer.pth")
    with torch.device("meta"):
        encoder = FrameEncoder(config.vision, config.qformer)
    return config, eva, blip2, encoder


def test_blocks_beyond_the_configured_depth_are_not_used(reference_dir):
    """EVA-CLIP-g's file has a 40th block that BLIP-2 does not use; LAVIS drops it."""
    config, eva, blip2, encoder = _tiny_states(reference_dir)
    depth = config.vision.num_layers
    extra = {
        k.replace("blocks.0.", f"blocks.{depth}.", 1): v + 1
        for k, v in eva.items()
        if k.startswith("blocks.0.")
    }
    fill_frame_encoder(encoder, {**eva, **extra, "norm.weight": torch.ones(1)}, blip2)
    assert len(encoder.visual_encoder.encoder.layers) == depth
    torch.testing.assert_close(
        encoder.visual_encoder.encoder.layers[0].mlp.fc1.weight, eva["blocks.0.mlp.fc1.weight"]
    )


def test_a_smaller_position_grid_is_resized_like_lavis(reference_dir):
    config, eva, blip2, encoder = _tiny_states(reference_dir)
    width = config.vision.hidden_size
    grid = config.vision.image_size // config.vision.patch_size
    small = grid // 2
    channel = torch.arange(width, dtype=torch.float32)
    # A constant patch grid per channel stays constant under bicubic resizing.
    pos = torch.cat([torch.full((1, 1, width), -1.0), channel.expand(1, small * small, width)], 1)
    fill_frame_encoder(encoder, {**eva, "pos_embed": pos}, blip2)
    resized = encoder.visual_encoder.embeddings.position_embedding
    assert resized.shape == (1, grid * grid + 1, width)
    torch.testing.assert_close(resized[0, 0], torch.full((width,), -1.0))
    torch.testing.assert_close(resized[0, 1:], channel.expand(grid * grid, width))


# ---------------------------------------------------------------- the key rule (module docstring)
def test_key_rule_missing_unexpected_and_unused(reference_dir, caplog):
    """Missing needed key → error naming it; unknown key inside a module we build → error;
    keys of parts MovieChat does not use → listed in the log, loading goes on."""
    from moviechat_desktop.engine.model.checkpoint_io import read_checkpoint
    from moviechat_desktop.engine.model.checkpoints import fill_video_qformer

    config, eva, blip2, encoder = _tiny_states(reference_dir)
    unused = {
        "t5_proj.weight": torch.zeros(2, 2),  # BLIP-2's projection into Flan-T5
        "t5_model.encoder.block.0.weight": torch.zeros(2),  # a part we never build
        "Qformer.cls.predictions.bias": torch.zeros(3),  # the LM head MovieChat drops
        "Qformer.bert.encoder.layer.0.intermediate.dense.weight": torch.zeros(2),  # text side
    }
    with caplog.at_level("INFO"):
        fill_frame_encoder(encoder, eva, {**blip2, **unused})
    logged = caplog.text
    assert "5 keys not used by MovieChat" in logged and "t5_model.encoder.block.0.weight" in logged

    _, eva, blip2, encoder = _tiny_states(reference_dir)
    inside = "Qformer.bert.encoder.layer.0.attention.self.rotary.weight"
    with pytest.raises(CheckpointMismatch, match=rf"unexpected keys: .*{inside}"):
        fill_frame_encoder(encoder, eva, {**blip2, inside: torch.zeros(2)})

    _, eva, blip2, encoder = _tiny_states(reference_dir)
    del blip2["query_tokens"]
    with pytest.raises(CheckpointMismatch, match=r"missing keys: .*query_tokens"):
        fill_frame_encoder(encoder, eva, blip2)

    video = read_checkpoint(reference_dir / "tiny_videollama.pth")
    with torch.device("meta"):
        module = VideoQFormer(config.video_qformer, config.llm_hidden_size, 32)
    fill_video_qformer(
        module, {**video, "audio_Qformer.x": torch.zeros(1), "llama_model.w": torch.zeros(1)}
    )
    with torch.device("meta"):
        module = VideoQFormer(config.video_qformer, config.llm_hidden_size, 32)
    with pytest.raises(CheckpointMismatch, match=r"unexpected keys: .*llama_proj\.scale"):
        fill_video_qformer(module, {**video, "llama_proj.scale": torch.zeros(1)})
