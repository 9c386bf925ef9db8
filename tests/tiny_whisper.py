"""A tiny random-weight Whisper in CTranslate2 form, built offline (recipe: ENVIRONMENT.md).

No installed package ships a Whisper tokenizer, so one is made: a byte-level BPE over the 256
byte symbols (no merges) followed by Whisper's special tokens in Whisper's order. The model is a
2+2-layer ``WhisperForConditionalGeneration`` with d_model 64 and random weights, converted with
``ct2-transformers-converter`` (int8). Its text is noise; its structure (segments, timestamps,
language detection, the VAD path) is faster-whisper's real one. Built once per machine into
``.cache/tiny-whisper`` (~1 min on two busy cores), reused after.
``whisper_dir("small-random-whisper", SMALL)`` builds one with the real ``small`` dimensions
(random weights: the cost of recognition, not its words) for the benchmark.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json")
SPECIALS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)


# Whisper "small"'s dimensions (244 M parameters), for measuring its cost with random weights.
SMALL = {"d_model": 768, "layers": 12, "heads": 12, "ffn": 3072, "text_vocab": 50364}
TINY = {"d_model": 64, "layers": 2, "heads": 2, "ffn": 128, "text_vocab": 0}


def tiny_whisper_dir() -> Path:
    """The CTranslate2 model folder (built on first use)."""
    return whisper_dir("tiny-whisper", TINY)


def whisper_dir(name: str, dims: dict[str, int]) -> Path:
    """A random-weight CTranslate2 Whisper of ``dims`` under ``.cache/<name>`` (built once)."""
    out = ROOT / ".cache" / name
    model = out / "ct2"
    if not all((model / n).is_file() for n in FILES):
        _build(out, dims)
    return model


def _build(out: Path, dims: dict[str, int]) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        PreTrainedTokenizerFast,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    work = out.with_name(out.name + f".build-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    hf, ct2 = work / "hf", work / "ct2"
    hf.mkdir(parents=True)
    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    # unreachable filler tokens up to the real text vocabulary size (its output layer's cost)
    symbols += [f"tok{i}" for i in range(max(0, dims["text_vocab"] - len(symbols) - 9))]
    tokenizer = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(symbols)}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=SPECIALS[0],
        eos_token=SPECIALS[0],
        unk_token=SPECIALS[0],
    )
    fast.add_special_tokens({"additional_special_tokens": list(SPECIALS[1:])})
    fast.save_pretrained(hf)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(hf)
    eot, sot = len(symbols), len(symbols) + 1  # the specials follow the text tokens
    config = WhisperConfig(
        vocab_size=len(fast) + 1501,  # the text tokens, then 1501 timestamp tokens
        d_model=dims["d_model"],
        encoder_layers=dims["layers"],
        decoder_layers=dims["layers"],
        encoder_attention_heads=dims["heads"],
        decoder_attention_heads=dims["heads"],
        encoder_ffn_dim=dims["ffn"],
        decoder_ffn_dim=dims["ffn"],
        num_mel_bins=80,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        bos_token_id=eot,
        suppress_tokens=[],
        begin_suppress_tokens=[eot],
    )
    torch.manual_seed(0)
    WhisperForConditionalGeneration(config).save_pretrained(hf)
    converter = Path(sys.executable).with_name("ct2-transformers-converter")
    subprocess.run(
        [
            str(converter),
            "--model", str(hf),
            "--output_dir", str(ct2),
            "--copy_files", "tokenizer.json", "preprocessor_config.json",
            "--quantization", "int8",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    shutil.rmtree(hf)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "ct2", ignore_errors=True)
    os.replace(ct2, out / "ct2")
    shutil.rmtree(work, ignore_errors=True)


def speech_film(dest: Path, seconds: float, words: str | None = None, video: bool = True) -> Path:
    """A film with real speech (espeak-ng, when installed; else a tone) padded with silence
    to ``seconds``: a tiny solid-colour video (when ``video``) and AAC audio."""
    wav = dest.with_suffix(".speech.wav")
    text = words or (
        "Hello there. The rabbit wakes up in the forest and smells a flower. "
        "Then three rodents throw fruit at him, and he is angry."
    )
    if shutil.which("espeak-ng"):
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
        audio = ["-i", str(wav)]
    else:
        audio = ["-f", "lavfi", "-i", "sine=frequency=440:duration=5"]
    picture = ["-f", "lavfi", "-i", "color=c=navy:s=64x48:r=5"] if video else []
    maps = ["-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-g", "5"] if video else []
    cmd = ["ffmpeg", "-v", "error", "-y", *picture, *audio, *maps]
    cmd += ["-af", "apad", "-t", f"{seconds}", "-c:a", "aac", "-ar", "16000", str(dest)]
    subprocess.run(cmd, check=True, capture_output=True)
    wav.unlink(missing_ok=True)
    return dest
