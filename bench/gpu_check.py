"""The GPU check, for the day a CUDA GPU is lent (run through ``scripts/gpu_check.sh``).

Imports only the engine's model code (no video decoding, no Qt, no VLC): frames come from the
reference tensors or are random. In one run, under 8 minutes, printed as one table:

1. environment: torch, transformers, the GPU, bitsandbytes;
2. the tiny reference model on the device under the original's precision plan: the dtype of
   every parameter group, frame tokens / visual tokens / logits against the float32 reference
   (tolerances as in ``tests/test_parity_pipeline.py``: 5e-2, 5e-2, 1e-1), and the
   ``position_table = "original"`` visual tokens;
3. the FULL-SIZE model built at random init directly on the device (no 15 GB of files), in
   the original's precision: frame encoder (ViT + ln_vision + Q-Former) and ViT-alone
   frames/s, the video Q-Former on a full 256-frame memory, the decoder's prefill of a
   MovieChat-sized prompt and its greedy tokens/s;
4. int8 / int4 decoding only when bitsandbytes is importable (it cannot be carried to the lent
   machine within its 64 MiB limit), else skipped with that reason.

``--dry-run`` runs the same steps on the CPU with the CUDA plan applied there (the plan is
data; the CPU's own fp16 autocast stands in) and the full-size model cut to one layer per
stack, to prove the script itself before a GPU is spent on it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "tests" / "data" / "reference"
BUDGET_S = 8 * 60
FORBIDDEN = ("decord", "vlc", "PySide6", "cv2")

rows: list[tuple[str, str, str]] = []  # (section, what, value)
started = time.perf_counter()


def row(section: str, what: str, value: Any) -> None:
    if isinstance(value, float):
        value = f"{value:.4g}"
    rows.append((section, what, str(value)))
    print(f"[{time.perf_counter() - started:6.1f} s] {section}: {what} = {value}", flush=True)


def left_s() -> float:
    return BUDGET_S - (time.perf_counter() - started)


def timed(fn: Callable[[], Any], device, min_s: float = 1.0, max_iter: int = 50) -> float:
    """Seconds per call of ``fn`` (warm-up first; synchronised on CUDA)."""
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    start, n = time.perf_counter(), 0
    while n < max_iter and (n == 0 or time.perf_counter() - start < min_s):
        fn()
        sync()
        n += 1
    return (time.perf_counter() - start) / n


# ------------------------------------------------------------------ 1. environment
def environment(device) -> None:
    import torch
    import transformers

    row("env", "python", sys.version.split()[0])
    row("env", "torch / transformers", f"{torch.__version__} / {transformers.__version__}")
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        row("env", "device", f"{props.name}, {props.total_memory / 2**30:.0f} GiB")
    else:
        row("env", "device", "cpu (dry run)")
    from moviechat_desktop.engine.model.device import bitsandbytes_available

    row("env", "bitsandbytes", "available" if bitsandbytes_available() else "absent")


# ------------------------------------------------------------------ 2. tiny parity
def _max_err(a, b) -> float:
    return float((a.float().cpu() - b.float().cpu()).abs().max())


def tiny_parity(device, plan) -> bool:
    import torch
    from safetensors.torch import load_file
    from torch import nn

    from moviechat_desktop.engine.model.movie_chat import MovieChatModel
    from moviechat_desktop.engine.model.paths import ModelPaths

    ref = load_file(str(REFERENCE / "reference_outputs.safetensors"))
    paths = ModelPaths.from_reference_dir(REFERENCE)
    model = MovieChatModel.load(paths, device=device, dtype=torch.float16, plan=plan)
    ok = True
    # every parameter group against the original's rule, written out here independently
    wrong = []
    for name, module in model.encoder.visual_encoder.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            matmul = isinstance(module, nn.Linear | nn.Conv2d)
            qv_bias = name.endswith("self_attn.qkv") and pname == "bias"
            want = torch.float16 if matmul and not qv_bias else torch.float32
            if param.dtype != want:
                wrong.append(f"{name}.{pname}")
    for what, params, want in (
        ("qformer", model.encoder.qformer.parameters(), torch.float32),
        ("video", model.video_qformer.parameters(), torch.float32),
        ("decoder", model.llm.hf.parameters(), torch.float16),
    ):
        wrong += [what for p in params if p.dtype != want][:1]
    row("tiny", "dtype plan", "ok" if not wrong else f"WRONG: {', '.join(wrong[:4])}")
    ok &= not wrong
    video = ref["input_video"][0].permute(1, 0, 2, 3)  # (40, 3, 56, 56)
    tokens = model.encode_frames(video)
    err = _max_err(tokens, ref["frame_tokens"])
    row("tiny", "frame tokens max |err| (tol 5e-2)", err)
    ok &= err <= 5e-2
    memory = ref["global_long_memory_after_fragment_4"]
    err = _max_err(model.visual_tokens(memory), ref["global_inputs_llama_ckptpos"])
    row("tiny", "visual tokens max |err| (tol 5e-2)", err)
    ok &= err <= 5e-2
    original = model.visual_tokens(memory, ref["frame_position_embeddings"])
    err = _max_err(original, ref["global_inputs_llama"])
    row("tiny", "original-table visual tokens |err| (tol 5e-2)", err)
    ok &= err <= 5e-2
    embeds = ref["llm_fixed_input_embeds"].to(device, torch.float16)
    with torch.inference_mode():
        logits = model.llm.hf(inputs_embeds=embeds).logits
    err = _max_err(logits, ref["llm_fixed_input_logits"])
    row("tiny", "logits max |err| (tol 1e-1)", err)
    ok &= err <= 1e-1
    row("tiny", "parity", "PASS" if ok else "FAIL")
    del model
    return ok


# ------------------------------------------------------------------ 3. full size
def full_size(device, plan, dry_run: bool) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from moviechat_desktop.engine.model.config import ModelConfig, QFormerConfig, VisionConfig
    from moviechat_desktop.engine.model.encoder import FrameEncoder
    from moviechat_desktop.engine.model.positions import hierarchical_position_table
    from moviechat_desktop.engine.model.video_qformer import VideoQFormer

    real = ModelConfig.real()
    vision, qformer = real.vision, real.qformer
    llama_layers = 32
    if dry_run:  # one layer per stack: every tensor keeps its real width
        vision = VisionConfig(num_layers=1)
        qformer = QFormerConfig(num_layers=2)
        llama_layers = 1
    row(
        "full",
        "layers (ViT / Q-Former / Vicuna)",
        f"{vision.num_layers} / {qformer.num_layers} / {llama_layers}",
    )
    start = time.perf_counter()
    with torch.device(device):
        encoder = FrameEncoder(vision, qformer)
        video = VideoQFormer(real.video_qformer, real.llm_hidden_size, real.memory.max_frame_pos)
    encoder = plan.apply_to_encoder(encoder).eval().requires_grad_(False)
    video = plan.apply_to_video(video).eval().requires_grad_(False)
    cfg = LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=llama_layers,
        num_attention_heads=32,
        vocab_size=32000,
        rms_norm_eps=1e-6,
        max_position_embeddings=2048,
    )
    with torch.device(device):
        decoder = LlamaForCausalLM._from_config(cfg, dtype=getattr(torch, plan.decoder))
    decoder = decoder.eval().requires_grad_(False)
    row("full", "built at random init (s)", time.perf_counter() - start)
    if device.type == "cuda":
        row("full", "GPU memory allocated (GiB)", torch.cuda.memory_allocated(device) / 2**30)

    batch = 2 if dry_run else 32
    pixels = torch.randn(batch, 3, 224, 224, device=device)
    with torch.inference_mode():

        def encode() -> None:
            with plan.encoder_autocast_context(device.type):
                encoder(pixels)

        def vit_only() -> None:
            with plan.encoder_autocast_context(device.type):
                encoder.vision_features(pixels)

        row("full", f"frame encoder frames/s (batch {batch})", batch / timed(encode, device))
        row("full", f"ViT alone frames/s (batch {batch})", batch / timed(vit_only, device))
        frames = 8 if dry_run else 256  # a full long memory
        memory = torch.randn(frames, 32, 768, device=device)
        table = hierarchical_position_table(torch.randn(32, 768)).to(device)
        seconds = timed(lambda: video(memory, table), device)
        row("full", f"video Q-Former + llama_proj on {frames} frames (ms)", 1000 * seconds)

        prompt_len = 32 if dry_run else 250  # ~ system + video + question + a turn
        embeds = torch.randn(1, prompt_len, 4096, device=device, dtype=decoder.dtype) * 0.02
        seconds = timed(lambda: decoder(inputs_embeds=embeds), device, max_iter=10)
        row("full", f"decoder prefill of {prompt_len} positions (ms)", 1000 * seconds)
        new = 4 if dry_run else 64

        def generate(count: int) -> Callable[[], None]:
            def run() -> None:
                decoder.generate(
                    inputs_embeds=embeds,
                    attention_mask=torch.ones(1, prompt_len, dtype=torch.long, device=device),
                    max_new_tokens=count,
                    min_new_tokens=count,
                    do_sample=False,
                    pad_token_id=0,
                )

            return run

        one = timed(generate(1), device, min_s=0.0, max_iter=2)
        many = timed(generate(new), device, min_s=0.0, max_iter=2)
        per_token = (many - one) / (new - 1)
        rate = f"{1 / per_token:.4g}" if per_token > 0 else "n/a (timing noise)"
        row("full", f"decoder tokens/s ({new} vs 1 greedy tokens)", rate)
    # the models are freed when this function returns


def quantized(device) -> None:
    from moviechat_desktop.engine.model.device import bitsandbytes_available

    if device.type != "cuda":
        row("int8/int4", "skipped", "dry run (bitsandbytes needs CUDA)")
        return
    if not bitsandbytes_available():
        row(
            "int8/int4",
            "skipped",
            "bitsandbytes is not installed here and its wheel is larger than the 64 MiB "
            "that can be carried to this machine",
        )
        return
    row(
        "int8/int4",
        "skipped",
        "bitsandbytes present, but quantizing a random 7B needs a "
        "save/load round trip that does not fit the 8-minute budget; measure with bench.run",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MovieChat GPU check (one table).")
    parser.add_argument("--dry-run", action="store_true", help="CPU rehearsal of the script")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    import torch

    from moviechat_desktop.engine.model.precision import PrecisionPlan

    if args.dry_run:
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here (use --dry-run to rehearse on the CPU)", file=sys.stderr)
        return 1
    else:
        device = torch.device("cuda")
    plan = PrecisionPlan.for_device("cuda", "float16")  # the original's, also in a dry run
    torch.manual_seed(0)
    environment(device)
    ok = tiny_parity(device, plan)
    if left_s() > 60:
        full_size(device, plan, args.dry_run)
    else:
        row("full", "skipped", "out of time")
    quantized(device)
    loaded = [m for m in FORBIDDEN if m in sys.modules]
    row("imports", "video/Qt/VLC modules loaded", ", ".join(loaded) or "none")
    row("total", "seconds", time.perf_counter() - started)
    width = max(len(f"{s}: {w}") for s, w, _ in rows)
    print("\nMovieChat GPU check" + (" (DRY RUN on the CPU)" if args.dry_run else ""))
    for section, what, value in rows:
        print(f"  {section + ': ' + what:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if ok and not loaded else 1


if __name__ == "__main__":
    sys.exit(main())
