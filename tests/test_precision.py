"""The precision plan: the original's CUDA split applied (on the CPU: the plan is data), the
memory cache key per plan, and the CPU's decoder dtype decided from the RAM."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from moviechat_desktop.engine.model import device as dev
from moviechat_desktop.engine.model.device import choose_precision, detect_device_choice
from moviechat_desktop.engine.model.movie_chat import MovieChatModel
from moviechat_desktop.engine.model.paths import ModelPaths
from moviechat_desktop.engine.model.precision import PrecisionPlan
from moviechat_desktop.engine.store.fingerprint import model_identity

GIB = 2**30
CUDA_FP16 = PrecisionPlan.for_device("cuda", "float16")


@pytest.fixture(scope="module")
def split_model(reference_dir):
    """The tiny model loaded on the CPU under the CUDA fp16 plan."""
    paths = ModelPaths.from_reference_dir(reference_dir)
    return MovieChatModel.load(paths, device="cpu", dtype=torch.float16, plan=CUDA_FP16)


def _expected_vit_dtype(name: str, module: nn.Module, pname: str) -> torch.dtype:
    """The original's rule, written independently of ``precision.encoder_groups``."""
    if isinstance(module, nn.Linear | nn.Conv2d):
        fused_qv_bias = name.endswith("self_attn.qkv") and pname == "bias"
        return torch.float32 if fused_qv_bias else torch.float16
    return torch.float32  # LayerNorms (ln_vision too), class token, positions


def test_cuda_plan_gives_every_parameter_group_the_originals_dtype(split_model):
    vit = split_model.encoder.visual_encoder
    counts = {torch.float16: 0, torch.float32: 0}
    for name, module in vit.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            want = _expected_vit_dtype(name, module, pname)
            assert param.dtype == want, f"{name}.{pname}"
            counts[want] += 1
    # tiny ViT: 2 blocks × (qkv.w, proj.w/b, fc1.w/b, fc2.w/b) + patch conv w/b = 16 fp16;
    # 2 × (2 norms × 2 + qkv bias) + cls + pos + post_layernorm w/b = 14 fp32
    assert counts == {torch.float16: 16, torch.float32: 14}
    embeddings = vit.embeddings
    assert embeddings.class_embedding.dtype == embeddings.position_embedding.dtype == torch.float32
    assert vit.post_layernorm.weight.dtype == torch.float32  # ln_vision
    assert split_model.encoder.query_tokens.dtype == torch.float32
    assert {p.dtype for p in split_model.encoder.qformer.parameters()} == {torch.float32}
    assert {p.dtype for p in split_model.video_qformer.parameters()} == {torch.float32}
    assert split_model.video_qformer.llama_proj.weight.dtype == torch.float32
    assert {p.dtype for p in split_model.llm.hf.parameters()} == {torch.float16}
    assert split_model.dtype == torch.float16
    # on this CPU (no native half-precision arithmetic) the fp16 decoder computes in float32
    label = "cpu (vision float16/float32, decoder float16"
    assert split_model.device_label in (f"{label})", f"{label}, computed in float32)")


def test_split_model_computes_under_autocast_close_to_float32(split_model, reference_dir):
    """Frames go in as float32 and the ViT runs under fp16 autocast (here the CPU's);
    tokens come back float32 near the float32 reference."""
    from safetensors.torch import load_file

    ref = load_file(str(reference_dir / "reference_outputs.safetensors"))
    video = ref["input_video"][0].permute(1, 0, 2, 3)  # (40, 3, 56, 56)
    tokens = split_model.encode_frames(video[:8])
    assert tokens.dtype == torch.float32
    # fp16 matmuls on values up to ~7: measured max error 1.4e-2 on this machine
    torch.testing.assert_close(tokens, ref["frame_tokens"][:8], atol=5e-2, rtol=5e-2)
    visual = split_model.visual_tokens(ref["global_long_memory_after_fragment_4"])
    assert visual.dtype == torch.float32  # the video side is float32 without autocast
    torch.testing.assert_close(visual, ref["global_inputs_llama_ckptpos"], atol=5e-2, rtol=5e-2)


def test_plans_by_device():
    assert CUDA_FP16.encoder_autocast == "float16" and CUDA_FP16.video == "float32"
    assert PrecisionPlan.for_device("cuda", "float32") == PrecisionPlan.uniform("float32")
    cpu_bf16 = PrecisionPlan.for_device("cpu", "bfloat16")
    assert (cpu_bf16.vit_matmul, cpu_bf16.qformer, cpu_bf16.decoder) == (
        "float32",
        "float32",
        "bfloat16",
    )
    assert cpu_bf16.encoder_autocast is None
    choice = choose_precision(True, 80 * GIB, True)
    assert choice.plan == CUDA_FP16
    assert choose_precision(True, 14 * GIB, True).plan.decoder == "float16"  # int8 weights
    assert choose_precision(True, 14 * GIB, True).plan.quantization == "int8"


def test_cache_key_never_mixes_precision_plans(reference_dir):
    from moviechat_desktop.engine.model.config import ModelConfig

    paths = ModelPaths.from_reference_dir(reference_dir)
    config = ModelConfig.from_reference_json(paths.config)
    labels = {
        PrecisionPlan.uniform("float32").encoder_label,
        PrecisionPlan.for_device("cpu", "bfloat16").encoder_label,
        CUDA_FP16.encoder_label,
        PrecisionPlan.for_device("cuda", "bfloat16").encoder_label,
        "float16",  # the key of caches made before the split (everything in fp16)
    }
    # the CPU's bf16 decoder leaves the encoder in float32: its caches are the float32 ones
    assert len(labels) == 4
    keys = {str(model_identity(paths, config, label)) for label in labels}
    assert len(keys) == 4
    assert PrecisionPlan.uniform("float32").encoder_label == "float32"  # old CPU caches hit


def test_vram_table_counts_the_split():
    assert dev.VISION_PARAMS == 985_894_528 + 105_165_056 + 22_104_064
    fp16 = dev.required_vram_bytes("fp16")
    all_half = int(
        (dev.VISION_PARAMS * 2 + dev.LLAMA_PARAMS * 2 + dev.KV_CACHE_FP16 + dev.ACTIVATIONS)
        * dev.FRAGMENTATION
    )
    extra = (dev.VISION_PARAMS - dev.EVA_MATMUL_PARAMS) * 2 * dev.FRAGMENTATION
    assert fp16 - all_half == pytest.approx(extra, abs=2)
    assert 20.0e9 < fp16 < 20.2e9  # the module docstring's table


# ------------------------------------------------------------------ the CPU's decoder dtype
@pytest.mark.parametrize(
    ("ram_gib", "requested", "params", "dtype"),
    [
        (24, "auto", dev.LLAMA_PARAMS, "bfloat16"),  # this machine: float32 does not fit
        (64, "auto", dev.LLAMA_PARAMS, "float32"),
        (None, "auto", dev.LLAMA_PARAMS, "float32"),  # unknown RAM: as before
        (24, "fp32", dev.LLAMA_PARAMS, "float32"),  # asked for: as asked
        (24, "bf16", dev.LLAMA_PARAMS, "bfloat16"),
        (1, "auto", 95_472, "float32"),  # the tiny decoder always fits
    ],
)
def test_cpu_decoder_dtype_follows_the_ram(ram_gib, requested, params, dtype):
    ram = None if ram_gib is None else ram_gib * GIB
    choice = choose_precision(
        False, None, False, requested, available_ram=ram, decoder_params=params
    )
    assert (choice.device, choice.dtype_name) == ("cpu", dtype)
    assert choice.plan.vit_matmul == "float32" and choice.plan.decoder == dtype
    if requested == "auto" and dtype == "bfloat16":
        assert "24.0 GiB of RAM available" in choice.reason
        assert "the decoder runs in bfloat16" in choice.reason


def test_detect_uses_the_decoders_own_size(monkeypatch, reference_dir):
    monkeypatch.setattr(dev, "available_ram_bytes", lambda: 8 * GIB)
    tiny = detect_device_choice(device="cpu", llama_dir=str(reference_dir / "tiny_llama"))
    assert tiny.dtype_name == "float32"
    real = detect_device_choice(device="cpu", llama_dir=None)  # the real Vicuna's size
    assert real.dtype_name == "bfloat16" and "8.0 GiB of RAM" in real.reason
    assert dev.decoder_param_count(str(reference_dir / "tiny_llama")) < 200_000


# ------------------------------------------------------------------ bf16 decoder on this CPU
def test_bf16_decoder_computes_in_float32_on_a_cpu_without_bf16(reference_dir, monkeypatch):
    """Weights stay bfloat16 (half the RAM); every matmul runs in float32 (upcast.py): the
    logits stay within bf16's rounding of the weights, not bf16 arithmetic's."""
    from safetensors.torch import load_file

    from moviechat_desktop.engine.model import movie_chat

    monkeypatch.setattr(movie_chat, "cpu_has_native_bf16", lambda: False)
    ref = load_file(str(reference_dir / "reference_outputs.safetensors"))
    paths = ModelPaths.from_reference_dir(reference_dir)
    model = MovieChatModel.load(paths, device="cpu", dtype=torch.bfloat16)
    assert model.decoder_upcast and model.plan.decoder == "bfloat16"
    assert model.plan.vit_matmul == "float32"  # the vision side stays float32 on the CPU
    assert model.device_label == "cpu (vision float32, decoder bfloat16, computed in float32)"
    hf = model.llm.hf
    assert {p.dtype for p in hf.parameters()} == {torch.bfloat16}
    with torch.inference_mode():
        out = hf(inputs_embeds=ref["llm_fixed_input_embeds"].to(torch.bfloat16))
    assert out.logits.dtype == torch.float32
    err = (out.logits - ref["llm_fixed_input_logits"]).abs().max().item()
    assert err < 0.1, err  # measured below
    print(f"bf16-weight / fp32-compute logits max |err| = {err:.3g}")
