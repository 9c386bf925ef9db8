"""``MovieChatModel``: the frame encoder, video Q-Former and Vicuna decoder, loaded together.

One object holds the loaded weights on one device; the film's memory (``memory.FilmMemory``)
lives outside it on the host, so the model can answer about any film. Everything is in eval
mode; inference entry points run under ``torch.inference_mode()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from moviechat_desktop.engine.dialogue.lines import DialogueLine
from moviechat_desktop.engine.errors import CheckpointMismatch, WeightsMissing
from moviechat_desktop.engine.model.checkpoints import (
    check_llama_loading,
    load_frame_encoder,
    load_video_qformer,
)
from moviechat_desktop.engine.model.config import ModelConfig
from moviechat_desktop.engine.model.device import oom_guard
from moviechat_desktop.engine.model.encoder import FrameEncoder
from moviechat_desktop.engine.model.llm import (
    Conversation,
    GenerationSettings,
    LanguageModel,
)
from moviechat_desktop.engine.model.paths import ModelPaths
from moviechat_desktop.engine.model.positions import (
    POSITION_TABLES,
    hierarchical_position_table,
    original_position_table,
)
from moviechat_desktop.engine.model.precision import PrecisionPlan
from moviechat_desktop.engine.model.prompt import BuiltPrompt, build_prompt
from moviechat_desktop.engine.model.streaming import AnswerStream
from moviechat_desktop.engine.model.tokenizer import load_tokenizer
from moviechat_desktop.engine.model.upcast import compute_in_float32, cpu_has_native_bf16
from moviechat_desktop.engine.model.video_qformer import VideoQFormer
from moviechat_desktop.engine.progress import CancelToken

log = logging.getLogger(__name__)


def _load_decoder(llama_dir: Path, dtype: torch.dtype, device: torch.device, quantization):
    from transformers import LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its "Loading weights" bar would litter stderr and logs

    if not (llama_dir / "config.json").is_file():
        raise WeightsMissing(f"decoder directory {llama_dir} has no config.json")
    # Shape mismatches are reported (then refused by check_llama_loading), not raised bare.
    kwargs: dict[str, Any] = {
        "dtype": dtype,
        "output_loading_info": True,
        "ignore_mismatched_sizes": True,
    }
    if quantization is not None:
        kwargs.update(quantization_config=quantization, device_map={"": str(device)})
    try:
        loaded: Any = LlamaForCausalLM.from_pretrained(str(llama_dir), **kwargs)
    except OSError as err:  # no weights file, unreadable shard
        raise WeightsMissing(f"decoder weights in {llama_dir} cannot be read: {err}") from err
    except RuntimeError as err:  # e.g. size mismatch reported by the loader
        raise CheckpointMismatch(f"decoder in {llama_dir} does not fit its config: {err}") from err
    hf, info = loaded  # output_loading_info=True: (model, report)
    check_llama_loading(info, str(llama_dir))
    if quantization is None:
        hf = hf.to(device)
    return hf.eval().requires_grad_(False)


class MovieChatModel:
    """The loaded MovieChat network (see module docstring). Build it with ``load``."""

    def __init__(
        self,
        *,
        config: ModelConfig,
        encoder: FrameEncoder,
        video_qformer: VideoQFormer,
        llm: LanguageModel,
        device: torch.device,
        dtype: torch.dtype,
        plan: PrecisionPlan | None = None,
        position_table: str = "trained",
        original_positions: Path | None = None,
    ) -> None:
        self.config, self.encoder, self.video_qformer, self.llm = (
            config,
            encoder,
            video_qformer,
            llm,
        )
        self.device, self.dtype = device, dtype  # dtype: the decoder's (unquantized) dtype
        dtype_name = str(dtype or torch.float32).removeprefix("torch.")
        self.plan = plan or PrecisionPlan.for_device(torch.device(device).type, dtype_name)
        if position_table not in POSITION_TABLES:
            raise ValueError(f"position_table must be one of {POSITION_TABLES}")
        self.position_table_mode = position_table
        self._original_positions = original_positions
        self._position_table: torch.Tensor | None = None
        self.decoder_upcast = False  # a bf16 decoder computing in float32 (upcast.py)

    @classmethod
    def load(
        cls,
        paths: ModelPaths,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        quantization=None,
        plan: PrecisionPlan | None = None,
        *,
        position_table: str = "trained",
    ) -> MovieChatModel:
        """Load the four parts. ``device`` None → CUDA if available, else CPU; ``dtype`` None →
        float16 on CUDA, float32 on CPU. ``quantization`` (a transformers quantization config)
        is passed to the decoder's ``from_pretrained``; ``plan`` (default: from device and dtype)
        says which dtype each part holds; ``position_table`` is "trained" or "original"
        (``positions.py``). Raises ``WeightsMissing``,
        ``CheckpointMismatch``, ``UnsafeCheckpoint``."""
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is None:
            dtype = torch.float16 if device.type == "cuda" else torch.float32
        if plan is None:  # the original's split on CUDA (precision.py)
            plan = PrecisionPlan.for_device(device.type, str(dtype).removeprefix("torch."))
        config = (
            ModelConfig.real()
            if paths.config is None
            else ModelConfig.from_reference_json(paths.config)
        )
        # Built on the meta device (no random init of a billion parameters), then filled by
        # assignment from the checkpoints: every parameter comes from a file.
        with torch.device("meta"):
            encoder = FrameEncoder(config.vision, config.qformer)
            video_qformer = VideoQFormer(
                config.video_qformer, config.llm_hidden_size, config.memory.max_frame_pos
            )
        load_frame_encoder(encoder, paths.eva_vit, paths.blip2_qformer)
        load_video_qformer(video_qformer, paths.videollama)
        llama_dir = Path(paths.llama_dir)
        with oom_guard("loading the model"):
            encoder = plan.apply_to_encoder(encoder).to(device).eval().requires_grad_(False)
            video_qformer = plan.apply_to_video(video_qformer).to(device)
            video_qformer = video_qformer.eval().requires_grad_(False)
            hf = _load_decoder(llama_dir, getattr(torch, plan.decoder), device, quantization)
        upcast = (
            device.type == "cpu"
            and quantization is None
            and plan.decoder in ("bfloat16", "float16")
            and not cpu_has_native_bf16()
        )
        if upcast:  # bf16 (and fp16) matmuls are 30-180x slower than fp32 there (upcast.py)
            changed = compute_in_float32(hf)
            log.info("decoder: %d bf16 modules compute in float32 on this CPU", changed)
        if hf.config.hidden_size != config.llm_hidden_size:
            raise CheckpointMismatch(
                f"llama_proj outputs {config.llm_hidden_size} wide but the decoder in "
                f"{llama_dir} is {hf.config.hidden_size} wide"
            )
        llm = LanguageModel(hf, load_tokenizer(llama_dir))
        log.info("MovieChat loaded on %s (%s)", device, plan.label)
        model = cls(
            config=config,
            encoder=encoder,
            video_qformer=video_qformer,
            llm=llm,
            device=device,
            dtype=dtype,
            plan=plan,
            position_table=position_table,
            original_positions=paths.original_positions,
        )
        model.decoder_upcast = upcast
        if position_table == "original":
            _ = model.position_table  # read now: a missing or wrong table fails the load
        return model

    @property
    def device_label(self) -> str:
        """Where the model runs, for people: e.g. ``"cuda (NVIDIA H100, vision
        float16/float32, decoder float16)"`` or ``"cpu (float32)"``."""
        what = self.plan.label
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
            quantized = getattr(self.llm.hf, "is_quantized", False)
            return f"cuda ({name}, {what}{', decoder quantized' if quantized else ''})"
        if self.decoder_upcast:
            what += ", computed in float32"
        return f"{self.device.type} ({what})"

    @property
    def position_table(self) -> torch.Tensor:
        """The ``(n_position², D)`` hierarchical table (float32, CPU): from the LOADED position
        weight ("trained", DESIGN §3 decision) or the original's init-time one ("original",
        ``positions.original_position_table``)."""
        if self._position_table is None and self.position_table_mode == "original":
            self._position_table = original_position_table(
                self._original_positions,
                self.config.num_positions,
                self.config.video_qformer.hidden_size,
            )
        if self._position_table is None:
            memory = self.config.memory
            weight = self.video_qformer.video_frame_position_embedding.weight.float().cpu()
            self._position_table = hierarchical_position_table(
                weight, memory.n_position, memory.alpha
            )
        return self._position_table

    @torch.inference_mode()
    def encode_frames(self, pixels: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """Normalized pixels ``(N, 3, S, S)`` → frame tokens ``(N, Q, D)``, float32 on CPU."""
        out = []
        with oom_guard("encoding frames"):
            for start in range(0, pixels.shape[0], batch_size):
                batch = pixels[start : start + batch_size]
                batch = batch.to(self.device, self.plan.encoder_input_dtype())
                with self.plan.encoder_autocast_context(self.device.type):
                    out.append(self.encoder(batch).float().cpu())  # (b, Q, D)
        if not out:
            raise ValueError("no frames to encode")
        return torch.cat(out)  # (N, Q, D)

    @torch.inference_mode()
    def visual_tokens(
        self, frames: torch.Tensor, position_table: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Memory frames ``(T, Q, D)`` → decoder inputs ``(1, Qv, H)``, float32 on CPU.
        ``position_table`` overrides ours (e.g. the original's init-time table)."""
        table = self.position_table if position_table is None else position_table
        with oom_guard("reading the memory"):
            dtype = getattr(torch, self.plan.video)  # float32 in every plan but a uniform one
            frames = frames.to(self.device, dtype)
            return self.video_qformer(frames, table.to(self.device, dtype)).float().cpu()

    @property
    def visual_token_count(self) -> int:
        """Decoder positions the video takes (the video Q-Former's queries)."""
        return self.config.video_qformer.num_query_tokens

    def build_prompt(
        self,
        conversation: Conversation,
        question: str,
        settings: GenerationSettings,
        dialogue: Sequence[DialogueLine] = (),
    ) -> BuiltPrompt:
        """The prompt for ``question`` within ``settings.max_length`` (``prompt.build_prompt``):
        cheap, so it runs before any video work. Raises ``PromptTooLong``."""
        return build_prompt(
            self.llm.tokenizer,
            visual_tokens=self.visual_token_count,
            system=conversation.system,
            turns=conversation.pairs(),
            question=question,
            max_length=settings.max_length,
            max_new_tokens=settings.max_new_tokens,
            dialogue=dialogue,
        )

    @torch.inference_mode()
    def prompt_embeds(
        self,
        visual: torch.Tensor,
        conversation: Conversation,
        question: str,
        settings: GenerationSettings,
        *,
        prompt: BuiltPrompt | None = None,
    ) -> torch.Tensor:
        """The decoder's input ``(1, L, H)`` for ``prompt`` (default: built here without
        dialogue). Nothing is cut from the embeddings: the budget was applied to the text."""
        if prompt is None:
            prompt = self.build_prompt(conversation, question, settings)
        return self.llm.prompt_embeds(prompt.text, visual)

    def stream_answer(
        self,
        visual: torch.Tensor,
        conversation: Conversation,
        question: str,
        settings: GenerationSettings,
        cancel: CancelToken | None = None,
        *,
        prompt: BuiltPrompt | None = None,
        on_stream: Callable[[AnswerStream], None] | None = None,
    ) -> Iterator[str]:
        """Yield the answer's text as it is generated; when complete, append the turn
        ``(question, answer)`` to ``conversation``. ``prompt`` is the one ``build_prompt``
        made (default: built here without dialogue). ``on_stream`` receives the
        ``AnswerStream`` before generation starts (its ``first_token_at``, ``token_ids``).
        Raises ``Cancelled`` (nothing appended) if ``cancel`` fires, ``OutOfGpuMemory`` on
        CUDA OOM."""
        embeds = self.prompt_embeds(visual, conversation, question, settings, prompt=prompt)
        stream = AnswerStream(self.llm, embeds, settings, cancel)
        if on_stream is not None:
            on_stream(stream)
        with oom_guard("answering"):
            yield from stream
        assert stream.answer is not None
        conversation.add(question, stream.answer)
