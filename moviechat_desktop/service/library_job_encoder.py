"""What a cluster worker runs for a library job: decode a fragment's frames, encode them.

``decode_fragment`` decodes with the reader a local ``encode`` uses (``plan_reader``: the
nearest reference pictures, or the exact frames with ``[sampling] exact_frames``), squashing
to the model's input size, and keeps the last few films' readers open in the worker process
(fragments of a film that reach the same worker in order are read on, as the local engine
reads them). ``FilmFrameEncoder`` holds the frame encoder alone (EVA ViT-g +
Q-Former; the decoder and the video Q-Former are not needed to encode frames), loaded with the
device and precision plan ``Assistant.load_model`` would choose on that node, and computes
exactly ``MovieChatModel.encode_frames``. Its ``identity`` is the cache key's model part, the
same the server's replicas compute. No Ray here: ``library_job_ray`` wraps these.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from moviechat_desktop.engine.settings import ModelSettings
    from moviechat_desktop.engine.video.probe import VideoInfo

log = logging.getLogger(__name__)

OPEN_READERS = 2  # films whose readers a worker process keeps open
_READERS: OrderedDict[tuple[str, int, bool], Any] = OrderedDict()


def decode_fragment(
    info: VideoInfo, frame_indices: list[int], size: int, exact: bool
) -> np.ndarray:
    """The planned frames ``frame_indices`` of the film → ``(n, size, size, 3)`` uint8.
    ``VideoDecodeError`` for a damaged part, ``VideoError`` for a file that is not a film."""
    from moviechat_desktop.engine.video.plan_reader import open_plan_reader

    key = (str(info.path), size, exact)
    decoder = _READERS.pop(key, None)
    if decoder is None:
        decoder = open_plan_reader(info, size, exact)
    _READERS[key] = decoder  # most recently used last
    while len(_READERS) > OPEN_READERS:
        _, oldest = _READERS.popitem(last=False)
        oldest.close()
    return np.ascontiguousarray(decoder.decode(frame_indices).numpy())


class FilmFrameEncoder:
    """The model's frame encoder on this node (see module docstring)."""

    def __init__(self, model_dir: str | Path | None, settings: ModelSettings) -> None:
        import torch

        from moviechat_desktop.engine.model.checkpoints import load_frame_encoder
        from moviechat_desktop.engine.model.config import ModelConfig
        from moviechat_desktop.engine.model.device import detect_device_choice, oom_guard
        from moviechat_desktop.engine.model.encoder import FrameEncoder
        from moviechat_desktop.engine.model.paths import ModelPaths
        from moviechat_desktop.engine.store.fingerprint import model_identity

        if model_dir is not None:
            paths = ModelPaths.from_reference_dir(model_dir)
        else:
            from moviechat_desktop.engine.weights import resolve_model_paths

            paths = resolve_model_paths()
        choice = detect_device_choice(
            requested=settings.precision, device=settings.device, llama_dir=str(paths.llama_dir)
        )
        self.plan = choice.plan
        self.device = torch.device(choice.device)
        self.config = (
            ModelConfig.real()
            if paths.config is None
            else ModelConfig.from_reference_json(paths.config)
        )
        with torch.device("meta"):  # as MovieChatModel.load: every parameter from the files
            encoder = FrameEncoder(self.config.vision, self.config.qformer)
        load_frame_encoder(encoder, paths.eva_vit, paths.blip2_qformer)
        with oom_guard("loading the frame encoder"):
            encoder = self.plan.apply_to_encoder(encoder).to(self.device)
            self.encoder = encoder.eval().requires_grad_(False)
        self.identity = model_identity(paths, self.config, self.plan.encoder_label)
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        self.label = f"{name} ({self.plan.encoder_label})"

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def memory_config(self) -> Any:
        return self.config.memory

    def encode(self, frames_uint8: np.ndarray) -> np.ndarray:
        """``(n, S, S, 3)`` uint8 → tokens ``(n, Q, D)`` float32, as ``Assistant`` computes them
        (the uint8 frames go to the device and are normalized there)."""
        import torch

        from moviechat_desktop.engine.model.movie_chat import MovieChatModel
        from moviechat_desktop.engine.video.preprocess import normalize

        frames = torch.from_numpy(np.array(frames_uint8, dtype=np.uint8))  # Ray's are read-only
        pixels = normalize(frames.to(self.device))
        # the model's own method (batching, dtypes, autocast): it only uses encoder/device/plan
        tokens = MovieChatModel.encode_frames(self, pixels)  # type: ignore[arg-type]
        return tokens.numpy()


class LocalFragmentBackend:
    """``library_job.FragmentBackend`` in this process: one thread decodes and encodes each
    fragment in turn (the unit tests; the Ray server uses ``library_job_ray``)."""

    def __init__(self, model_dir: str | Path | None, settings: ModelSettings) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._encoder = FilmFrameEncoder(model_dir, settings)
        self.identity = self._encoder.identity
        self.image_size = self._encoder.image_size
        self.memory_config = self._encoder.memory_config
        self.label = self._encoder.label
        self.window = 2
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="library-fragment")

    def _work(self, info: VideoInfo, frame_indices: list[int], exact: bool) -> np.ndarray:
        return self._encoder.encode(decode_fragment(info, frame_indices, self.image_size, exact))

    def submit(self, info: VideoInfo, frame_indices: list[int], exact: bool) -> Any:
        return self._pool.submit(self._work, info, frame_indices, exact)

    def wait(self, handles: list[Any], timeout_s: float) -> list[tuple[Any, Any]]:
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_futures

        done, _ = wait_futures(handles, timeout=timeout_s, return_when=FIRST_COMPLETED)
        return [(f, f.exception() if f.exception() is not None else f.result()) for f in done]

    def cancel(self, handles: list[Any]) -> None:
        for future in handles:
            future.cancel()
