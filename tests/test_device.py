"""Device and precision choice (pure logic across GPU sizes) and CUDA out-of-memory handling."""

from __future__ import annotations

import json
import math

import pytest
import torch

from moviechat_desktop.engine.errors import OutOfGpuMemory
from moviechat_desktop.engine.model import device as dev
from moviechat_desktop.engine.model.device import (
    choose_precision,
    detect_device_choice,
    oom_guard,
    oom_guarded,
    required_vram_bytes,
)

GIB = 2**30
SIZES_GIB = (0, 6, 8, 12, 16, 24, 80)
RANK = {None: 0, "int4": 1, "int8": 2, "fp16": 3}  # CPU < 4-bit < 8-bit < fp16 on the GPU


def _rank(choice) -> int:
    if choice.device == "cpu":
        return 0
    return RANK[choice.quantization or "fp16"]


def test_parameter_counts_match_the_reference_key_list(reference_dir):
    """The VRAM budget is built on these counts; recompute them from the key/shape list."""
    keys = json.loads((reference_dir / "checkpoint_keys.json").read_text())["checkpoints"]

    def params(section, field):
        entries = keys[section][field].values()
        return sum(math.prod(v["shape"]) for v in entries if v["kind"] == "parameter")

    vision = (
        params("eva_vit_g.pth", "keys")
        + params("blip2_pretrained_flant5xxl.pth", "keys_expected")
        + params("finetune-vicuna7b-v2.pth (Video-LLaMA)", "keys_moviechat_uses")
    )
    llama = next(k for k in keys if k.startswith("Vicuna-7B"))
    assert vision == dev.VISION_PARAMS
    assert params(llama, "keys_original_class") == dev.LLAMA_PARAMS
    assert (
        2 * math.prod(keys[llama]["keys_original_class"]["lm_head.weight"]["shape"])
        == dev.LLAMA_FP16_PARAMS
    )


@pytest.mark.parametrize("bnb", [True, False])
@pytest.mark.parametrize("gib", SIZES_GIB)
def test_auto_choice_fits_the_free_memory(gib, bnb):
    free = gib * GIB
    choice = choose_precision(True, free, bnb)
    if choice.device == "cuda":
        needed = required_vram_bytes(choice.quantization or "fp16")
        assert needed <= free  # what was chosen fits
        assert choice.dtype_name == "float16"
    else:
        assert choice.notice and "minutes" in choice.notice
        assert free < required_vram_bytes("int4" if bnb else "fp16")  # nothing fitted
    better = [p for p in ("fp16", "int8", "int4") if RANK[p] > _rank(choice)]
    if not bnb:
        better = [p for p in better if p == "fp16"]
        assert choice.quantization is None
        if choice.device == "cpu":
            assert "bitsandbytes" in choice.reason
    for precision in better:  # nothing better would have fitted
        assert required_vram_bytes(precision) > free


def test_auto_choice_on_common_cards():
    """The product decisions, card by card (free memory as reported by the driver)."""
    picks = {gib: choose_precision(True, gib * GIB, True) for gib in SIZES_GIB}
    assert [(picks[g].device, picks[g].quantization) for g in SIZES_GIB] == [
        ("cpu", None),
        ("cpu", None),
        ("cpu", None),
        ("cuda", "int4"),  # int8 needs 12.05 GiB since the vision side keeps fp32 (precision.py)
        ("cuda", "int8"),
        ("cuda", None),
        ("cuda", None),
    ]
    ranks = [_rank(picks[g]) for g in SIZES_GIB]
    assert ranks == sorted(ranks)  # more memory never gives a lower precision


def test_no_cuda_runs_on_cpu_with_a_notice():
    for requested in ("auto", "fp16", "int8", "int4", "fp32"):
        choice = choose_precision(False, None, True, requested)
        assert (choice.device, choice.dtype_name, choice.quantization) == ("cpu", "float32", None)
        assert "20 GB" in choice.notice
    assert "needs a CUDA GPU" in choose_precision(False, None, True, "int8").reason
    assert choose_precision(False, None, False, "bf16").dtype_name == "bfloat16"


def test_overrides():
    small = 6 * GIB
    forced = choose_precision(True, small, True, "fp16")
    assert (forced.device, forced.dtype_name, forced.quantization) == ("cuda", "float16", None)
    assert "may run out" in forced.reason
    assert choose_precision(True, 80 * GIB, True, "int4").quantization == "int4"
    assert choose_precision(True, 80 * GIB, True, "int8").quantization == "int8"
    fp32 = choose_precision(True, 80 * GIB, False, "fp32")
    assert (fp32.dtype_name, fp32.quantization) == ("float32", None)
    assert choose_precision(True, 80 * GIB, False, "bf16").dtype_name == "bfloat16"
    # 8-bit asked for without bitsandbytes: said so, and the auto rules apply instead
    no_bnb = choose_precision(True, 12 * GIB, False, "int8")
    assert no_bnb.quantization is None and "bitsandbytes" in no_bnb.reason
    assert no_bnb.device == "cpu"  # 12 GiB does not hold fp16
    assert choose_precision(True, 24 * GIB, False, "int4").device == "cuda"
    odd = choose_precision(True, 24 * GIB, True, "fp8")
    assert "fp8" in odd.reason and odd.dtype_name == "float16"
    unknown_memory = choose_precision(True, None, True)
    assert unknown_memory.device == "cuda" and "unknown" in unknown_memory.reason


def test_dtype_label_and_quantization_config():
    choice = choose_precision(True, 16 * GIB, True)
    assert choice.dtype is torch.float16 and choice.label == "CUDA · int8"
    assert choice.quantization_config().load_in_8bit
    four = choose_precision(True, 80 * GIB, True, "int4").quantization_config()
    assert four.load_in_4bit and four.bnb_4bit_quant_type == "nf4"
    assert choose_precision(False, None, False).quantization_config() is None
    assert choose_precision(False, None, False).label == "CPU · fp32"


def test_detect_on_this_machine_and_with_a_fake_gpu(monkeypatch):
    if not torch.cuda.is_available():
        choice = detect_device_choice()
        assert choice.device == "cpu" and choice.notice
        assert "not available" in detect_device_choice(device="cuda").reason
    assert detect_device_choice(device="cpu").device == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (16 * GIB, 24 * GIB))
    monkeypatch.setattr(dev, "bitsandbytes_available", lambda: True)
    assert detect_device_choice().quantization == "int8"
    monkeypatch.setattr(dev, "bitsandbytes_available", lambda: False)
    assert detect_device_choice().device == "cpu"
    assert detect_device_choice("fp16").device == "cuda"


# --------------------------------------------------------------------------- out of memory
class FakeGpu:
    def __init__(self):
        self.calls = 0

    def encode(self):
        self.calls += 1
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.fixture
def emptied(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(1))
    return calls


def test_oom_guard_turns_cuda_oom_into_advice(emptied):
    gpu = FakeGpu()
    with pytest.raises(OutOfGpuMemory) as err, oom_guard("encoding the film"):
        gpu.encode()
    message = str(err.value)
    assert "encoding the film" in message and "int8" in message and "other programs" in message
    assert isinstance(err.value.__cause__, torch.cuda.OutOfMemoryError)
    assert emptied == [1]


def test_oom_guard_as_decorator_and_around_a_stream(emptied):
    @oom_guard("answering")
    def answer():
        raise RuntimeError("CUDA error: out of memory")  # bitsandbytes / older code paths

    with pytest.raises(OutOfGpuMemory, match="answering"):
        answer()

    def tokens():
        yield "Hello"
        yield " there"
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    got = []
    with pytest.raises(OutOfGpuMemory):
        for token in oom_guarded(tokens(), "answering"):
            got.append(token)
    assert got == ["Hello", " there"] and len(emptied) == 2


def test_oom_guard_lets_other_errors_through(emptied):
    with pytest.raises(ValueError, match="nope"), oom_guard():
        raise ValueError("nope")
    with pytest.raises(RuntimeError, match="shape mismatch"), oom_guard():
        raise RuntimeError("shape mismatch")
    with oom_guard():
        pass
    assert list(oom_guarded([1, 2, 3])) == [1, 2, 3]
    assert emptied == []
