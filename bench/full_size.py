"""Full-size rehearsal: the real model's files at the REAL shapes and formats, random values,
through ``weights import``, loaded and asked on this machine.

    .venv/bin/python -m bench.full_size                  # real sizes (~16 GB on disk)
    .venv/bin/python -m bench.full_size --scale 0.05     # fewer layers, same tensor shapes
    .venv/bin/python -m bench.full_size --keep --workdir /big/disk/rehearsal

What it writes (from the reference key list ``tests/data/reference/checkpoint_keys.json``):

* ``eva_vit_g.pth``: a plain fp16 state dict, as LAVIS ships it;
* ``blip2_pretrained_flant5xxl.pth``: ``{'model', 'optimizer', 'config', 'scaler', 'epoch'}``
  with float32 tensors, the text-side Q-Former layers and ``t5_proj`` MovieChat does not use,
  and an ``argparse.Namespace`` config (skipped by our reader, never run);
* ``finetune-vicuna7b-v2.pth``: Video-LLaMA's training checkpoint (the 59 keys MovieChat uses,
  the 4.28-era buffers, Adam moments of ``llama_proj``);
* ``MovieChat-vicuna/``: ``config.json``, ``generation_config.json``, fp16 safetensors shards
  with an index, and a SentencePiece tokenizer in Vicuna's file layout.

``--scale`` keeps every tensor's shape and shrinks the layer counts (ViT 39, Q-Former 12,
Vicuna 32 layers times the scale, at least 1; 2 for the Q-Former, whose cross-attention is every
2nd layer) so the whole path can be proven on a small machine; a manifest with those depths is
written beside the files. Then, in this order: ``moviechat-desktop weights import`` (a child
process), the model loaded on the CPU (the app's own choice of precision, e.g. a bfloat16
decoder when RAM is short), a real clip encoded with a reduced plan (``--fragments`` x
``--frames``), one breakpoint and one global question with ``--max-new-tokens`` greedy tokens,
and a bf16-vs-fp32 matmul probe (this CPU's bf16 speed). All user dirs point into the work
dir; its files are deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KEYS_FILE = ROOT / "tests" / "data" / "reference" / "checkpoint_keys.json"
DEFAULT_VIDEO = ROOT / ".cache" / "test-videos" / "bigbuckbunny.mp4"
VICUNA_SECTION = (
    "Vicuna-7B HF directory (LlamaForCausalLM.from_pretrained(llama_model, "
    "torch_dtype=torch.float16))"
)
SHARD_BYTES = 2 * 10**9  # fp16 shards of about 2 GB, as converted Vicuna repositories have
GLOBAL_QUESTION = "What happens in this video?"
BREAKPOINT_QUESTION = "What is happening right now?"
REAL_DEPTHS = {"vit": 39, "qformer": 12, "llama": 32}


# ------------------------------------------------------------------ shapes
def depths(scale: float) -> dict[str, int]:
    if not 0 < scale <= 1:
        raise SystemExit("--scale must be in (0, 1]")
    return {
        "vit": max(1, round(REAL_DEPTHS["vit"] * scale)),
        "qformer": max(2, round(REAL_DEPTHS["qformer"] * scale)),
        "llama": max(1, round(REAL_DEPTHS["llama"] * scale)),
    }


def _layer(key: str) -> int | None:
    """The block/layer index in a key (``blocks.7.``, ``layer.7.``, ``layers.7.``), if any."""
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if part in ("blocks", "layer", "layers") and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def _kept(keys: dict[str, Any], limit: int) -> dict[str, Any]:
    return {k: v for k, v in keys.items() if (_layer(k) is None or _layer(k) < limit)}


def _tensor(key: str, shape: list[int], dtype, gen):
    import torch

    name = key.rsplit(".", 1)[-1]
    if "position_ids" in key:
        return torch.arange(shape[-1]).expand(shape).clone()
    if "inv_freq" in key:
        return 1.0 / (10000 ** (torch.arange(0, 2 * shape[0], 2).float() / (2 * shape[0])))
    lowered = key.lower()
    if ("norm" in lowered or "layernorm" in lowered) and name == "weight":
        return torch.ones(shape, dtype=dtype)
    if name == "bias" or name.endswith("_bias"):
        return torch.zeros(shape, dtype=dtype)
    out = torch.empty(shape, dtype=dtype)
    return out.normal_(0.0, 0.02, generator=gen)


def _state(keys: dict[str, Any], dtype, gen, prefix: str = "") -> dict[str, Any]:
    return {
        prefix + k: _tensor(k, v["shape"], None if "position_ids" in k else dtype, gen)
        for k, v in keys.items()
    }


# ------------------------------------------------------------------ writing the files
def write_files(out: Path, scale: float) -> dict[str, Any]:
    """Write the four parts into ``out`` (see the module docstring); return what was written."""
    import torch
    from safetensors.torch import save_file

    d = depths(scale)
    sections = json.loads(KEYS_FILE.read_text())["checkpoints"]
    gen = torch.Generator().manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)

    eva = _kept(sections["eva_vit_g.pth"]["keys"], d["vit"])
    torch.save(_state(eva, torch.float16, gen), out / "eva_vit_g.pth")

    blip = _kept(sections["blip2_pretrained_flant5xxl.pth"]["keys_expected"], d["qformer"])
    model = _state(blip, torch.float32, gen)
    for n in range(d["qformer"]):  # text-side layers LAVIS keeps and MovieChat deletes
        base = f"Qformer.bert.encoder.layer.{n}."
        model[base + "intermediate.dense.weight"] = torch.zeros(3072, 768)
        model[base + "output.dense.weight"] = torch.zeros(768, 3072)
    model["t5_proj.weight"] = torch.zeros(4096, 768)
    model["t5_proj.bias"] = torch.zeros(4096)
    config = argparse.Namespace(model={"arch": "blip2_t5", "vit_precision": "fp16"}, seed=42)
    torch.save(
        {"model": model, "optimizer": None, "config": config, "scaler": None, "epoch": 9},
        out / "blip2_pretrained_flant5xxl.pth",
    )
    del model

    video = sections["finetune-vicuna7b-v2.pth (Video-LLaMA)"]
    keys = dict(video["keys_moviechat_uses"])
    keys.update(_kept(video["predicted_extra_buffer_keys_in_file"], d["llama"]))
    state = _state(keys, torch.float32, gen)
    moments = {
        i: {"step": torch.tensor(1000.0), "exp_avg": torch.zeros_like(t), "exp_avg_sq": t.abs()}
        for i, t in enumerate([state["llama_proj.weight"], state["llama_proj.bias"]])
    }
    optimizer = {"state": moments, "param_groups": [{"lr": 1e-5, "params": [0, 1]}]}
    torch.save(
        {
            "model": state,
            "optimizer": optimizer,
            "config": argparse.Namespace(run={"max_epoch": 5}),
            "scaler": {"scale": 65536.0},
            "epoch": 4,
        },
        out / "finetune-vicuna7b-v2.pth",
    )
    del state

    llama_dir = out / "MovieChat-vicuna"
    llama_dir.mkdir(exist_ok=True)
    vicuna = sections[VICUNA_SECTION]
    cfg = {
        **vicuna["config"],
        "num_hidden_layers": d["llama"],
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "torch_dtype": "float16",
    }
    (llama_dir / "config.json").write_text(json.dumps(cfg, indent=2))
    gen_cfg = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    (llama_dir / "generation_config.json").write_text(json.dumps(gen_cfg))
    llama_keys = _kept(vicuna["keys_original_class"], d["llama"])
    shards: list[dict[str, Any]] = [{}]
    size = 0
    for key, spec in llama_keys.items():
        tensor = _tensor(key, spec["shape"], torch.float16, gen)
        nbytes = tensor.numel() * tensor.element_size()
        if size + nbytes > SHARD_BYTES and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(llama_dir / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (llama_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    write_tokenizer(llama_dir)
    if scale < 1:
        write_scaled_manifest(out, d)
    return {"depths": d, "shards": len(shards)}


def write_tokenizer(folder: Path) -> None:
    """A SentencePiece tokenizer trained here, in Vicuna's file layout."""
    import sentencepiece as spm

    corpus = [
        "You are able to understand the visual content that the user provides."
        "Follow the instructions carefully and explain your answers in details.",
        f"###Human: <Video></Video> {GLOBAL_QUESTION}###Assistant: {BREAKPOINT_QUESTION}",
        "A rabbit walks through a forest; birds fly, 1 2 3 4 5 6 7 8 9 0 # ## ###.",
    ] * 50
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    token = {"__type": "AddedToken", "lstrip": False, "normalized": False, "rstrip": False}
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": {**token, "content": "<s>"},
        "eos_token": {**token, "content": "</s>"},
        "unk_token": {**token, "content": "<unk>"},
        "clean_up_tokenization_spaces": False,
        "model_max_length": 2048,
        "tokenizer_class": "LlamaTokenizer",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(special))


def write_scaled_manifest(out: Path, d: dict[str, int]) -> None:
    """The shipped manifest with the scaled depths, plus a model config giving them."""
    manifest = json.loads((ROOT / "configs" / "weights_manifest.json").read_text())
    limit = {"eva_vit": d["vit"], "blip2_qformer": d["qformer"], "vicuna": d["llama"]}
    for part in manifest["parts"]:
        if part.get("expect_config"):
            part["expect_config"]["num_hidden_layers"] = d["llama"]
        depth = limit.get(part["id"])
        if depth is not None and isinstance(part.get("expect_keys"), dict):
            part["expect_keys"] = _kept(part["expect_keys"], depth)
    manifest["model_config"] = "scaled_config.json"
    (out / "scaled_manifest.json").write_text(json.dumps(manifest, indent=2))
    qformer = {
        "num_query_token": 32,
        "hidden_size": 768,
        "num_hidden_layers": d["qformer"],
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "cross_attention_freq": 2,
        "encoder_width": 1408,
        "layer_norm_eps": 1e-12,
    }
    dims = {
        "eva_vit": {
            "img_size": 224,
            "patch_size": 14,
            "embed_dim": 1408,
            "depth": d["vit"],
            "num_heads": 16,
            "mlp_hidden": 6144,
            "norm_eps": 1e-6,
        },
        "ln_vision": {"eps": 1e-5},
        "qformer": qformer,
        "video_qformer": {
            **qformer,
            "num_hidden_layers": 2,
            "cross_attention_freq": 1,
            "encoder_width": 768,
            "num_video_query_token": 32,
        },
        "llama_proj": {"in_features": 768, "out_features": 4096},
        "memory": {
            "frames_per_fragment": 8,
            "short_memory_merge": 2,
            "long_memory_length": 256,
            "n_position": 16,
            "alpha": 0.01,
            "max_frame_pos": 32,
        },
    }
    (out / "scaled_config.json").write_text(json.dumps({"dims": dims}, indent=2))


# ------------------------------------------------------------------ measuring
def _disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _children_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _self_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bf16_probe() -> dict[str, float]:
    """Decoder-shaped matmuls: a prefill (200 x 4096 @ 4096 x 4096) and a decode step
    (1 x 4096 @ 4096 x 11008) in float32 and bfloat16."""
    import torch

    out: dict[str, float] = {}
    for label, rows, cols in (("prefill", 200, 4096), ("step", 1, 11008)):
        for dtype in (torch.float32, torch.bfloat16):
            a, b = torch.randn(rows, 4096, dtype=dtype), torch.randn(4096, cols, dtype=dtype)
            a @ b
            start, n = time.perf_counter(), 0
            while time.perf_counter() - start < 1.0:
                a @ b
                n += 1
            out[f"{label}_{str(dtype).removeprefix('torch.')}_ms"] = (
                1000 * (time.perf_counter() - start) / n
            )
    out["prefill_bf16_over_fp32"] = out["prefill_bfloat16_ms"] / out["prefill_float32_ms"]
    out["step_bf16_over_fp32"] = out["step_bfloat16_ms"] / out["step_float32_ms"]
    return out


def run_model(
    video: Path, fragments: int, frames: int, max_new_tokens: int, precision: str = "auto"
) -> dict[str, Any]:
    """Load the imported model on the CPU, encode ``video``, ask both questions."""
    from moviechat_desktop.engine.assistant import Assistant
    from moviechat_desktop.engine.model.llm import GenerationSettings
    from moviechat_desktop.engine.settings import load_settings

    settings = load_settings()
    settings.model.device = "cpu"
    settings.model.precision = precision
    settings.sampling.n_fragments = fragments
    settings.sampling.frames_per_fragment = frames
    settings.dialogue.enabled = False
    assistant = Assistant(settings, use_cache=False, keep_history=False)
    result: dict[str, Any] = {}
    start = time.perf_counter()
    assistant.load_model()
    result["load_s"] = time.perf_counter() - start
    result["device"] = assistant.device_label
    result["precision_reason"] = assistant.device_choice.reason
    result["peak_rss_after_load_mib"] = _self_peak_mib()
    info = assistant.open(video)
    start = time.perf_counter()
    status = assistant.encode()
    encode_s = time.perf_counter() - start
    sampled = fragments * frames
    result["encode_s"] = encode_s
    result["frames_encoded"] = sampled
    result["s_per_frame"] = encode_s / sampled
    result["fragments_done"] = status.fragments_done
    generation = GenerationSettings(greedy=True, max_new_tokens=max_new_tokens)
    for mode, question, at_s in (
        ("breakpoint", BREAKPOINT_QUESTION, info.duration_s / 2),
        ("global", GLOBAL_QUESTION, None),
    ):
        assistant.new_conversation()
        start = time.perf_counter()
        for _ in assistant.ask(question, mode=mode, at_s=at_s, settings=generation):
            pass
        answer = assistant.last_answer
        total = time.perf_counter() - start
        first = answer.first_token_s if answer.first_token_s is not None else total
        result[f"{mode}_first_token_s"] = first
        result[f"{mode}_tokens"] = answer.tokens
        result[f"{mode}_s_per_token"] = (
            (total - first) / (answer.tokens - 1) if answer.tokens > 1 else None
        )
    result["peak_rss_mib"] = _self_peak_mib()
    assistant.close()
    return result


TABLE = (
    ("depths", "layers (ViT / Q-Former / Vicuna)"),
    ("write_s", "write random weights (s)"),
    ("disk_gb", "disk used (GB)"),
    ("import_s", "weights import (s)"),
    ("import_peak_rss_mib", "weights import peak RSS (MiB)"),
    ("load_s", "model load (s)"),
    ("device", "device / precision"),
    ("precision_reason", "why"),
    ("peak_rss_after_load_mib", "peak RSS after load (MiB)"),
    ("s_per_frame", "encode (s/frame, decode+ViT+Q-Former)"),
    ("full_plan_encode_min", "-> 1024-frame plan (min, extrapolated)"),
    ("breakpoint_first_token_s", "breakpoint: first token (s)"),
    ("breakpoint_s_per_token", "breakpoint: s/token"),
    ("global_first_token_s", "global: first token (s)"),
    ("global_s_per_token", "global: s/token"),
    ("peak_rss_mib", "peak RSS (MiB)"),
    ("prefill_bf16_over_fp32", "bf16/fp32 time, 200x4096 matmul"),
    ("step_bf16_over_fp32", "bf16/fp32 time, 1x4096 @ 4096x11008"),
)


def print_table(record: dict[str, Any]) -> None:
    width = max(len(label) for _, label in TABLE)
    print(f"\nFull-size rehearsal (scale {record['scale']}, CPU)")
    for key, label in TABLE:
        value = record.get(key)
        if isinstance(value, float):
            text = f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        elif value is None:
            text = "-"
        else:
            text = str(value)
        print(f"  {label:<{width}}  {text}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--scale", type=float, default=1.0, help="layer-count scale (0, 1]")
    parser.add_argument("--workdir", type=Path, help="where to write (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the files afterwards")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--fragments", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8, help="frames per fragment")
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write the record here")
    parser.add_argument(
        "--precision", default="auto", help="as in Settings (auto picks bf16 when RAM is short)"
    )
    parser.add_argument("--phase", choices=("all", "write"), default="all", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase == "write":  # the child that writes the files (its RSS stays out of ours)
        print(json.dumps(write_files(args.workdir / "files", args.scale)))
        return 0
    if not args.video.is_file():
        parser.error(f"{args.video} not found (scripts/fetch_test_videos.sh fetches it)")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="moviechat-full-size-"))
    work.mkdir(parents=True, exist_ok=True)
    env = os.environ.copy()
    for var, sub in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_STATE_HOME", "state"),
        ("HF_HOME", "hf"),
    ):
        env[var] = os.environ[var] = str(work / sub)
    env["HF_HUB_OFFLINE"] = os.environ["HF_HUB_OFFLINE"] = "1"
    files = work / "files"
    if args.scale < 1:
        manifest = str(files / "scaled_manifest.json")
        env["MOVIECHAT_WEIGHTS_MANIFEST"] = os.environ["MOVIECHAT_WEIGHTS_MANIFEST"] = manifest
    record: dict[str, Any] = {"scale": args.scale}
    try:
        start = time.perf_counter()
        child = [sys.executable, "-m", "bench.full_size", "--phase", "write"]
        child += ["--workdir", str(work), "--scale", str(args.scale)]
        written = json.loads(
            subprocess.run(
                child, env=env, cwd=ROOT, check=True, capture_output=True, text=True
            ).stdout
        )
        record["write_s"] = time.perf_counter() - start
        d = written["depths"]
        record["depths"] = f"{d['vit']} / {d['qformer']} / {d['llama']}"
        record["disk_gb"] = _disk_bytes(files) / 1e9
        start = time.perf_counter()
        cli = [sys.executable, "-m", "moviechat_desktop", "weights", "import", str(files), "--json"]
        done = subprocess.run(cli, env=env, cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"weights import failed: {done.stderr.strip()[-2000:]}")
        record["import_s"] = time.perf_counter() - start
        record["import_peak_rss_mib"] = _children_peak_mib()
        imported = json.loads(done.stdout)
        if len(imported.get("imported", ())) != 4:
            raise SystemExit(f"weights import left parts out: {imported.get('ignored')}")
        record["disk_gb"] = _disk_bytes(work) / 1e9  # with the converted copies
        record.update(
            run_model(args.video, args.fragments, args.frames, args.max_new_tokens, args.precision)
        )
        record["full_plan_encode_min"] = record["s_per_frame"] * 1024 / 60
        record.update(bf16_probe())
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_table(record)
    if args.json:
        args.json.write_text(json.dumps(record, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
