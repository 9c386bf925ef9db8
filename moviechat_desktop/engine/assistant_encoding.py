"""The ``Assistant``'s encoding of the open film into memory, one fragment at a time: the
status, the background schedule (memory and speech take turns), decoding here or frames a
client sent, damaged parts skipped as gaps.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from moviechat_desktop.engine.assistant_results import EncodeStatus
from moviechat_desktop.engine.errors import MovieChatError, NotReady, VideoDecodeError
from moviechat_desktop.engine.progress import BackgroundTurns, CancelToken

log = logging.getLogger(__name__)


class AssistantEncoding(BackgroundTurns):
    """Part of ``Assistant`` (engine/assistant.py), whose ``__init__`` sets the state used here."""

    def status(self) -> EncodeStatus:
        if self._video is None or self._plan is None:
            return EncodeStatus(0, 0, 0, 0, (), 0.0, 0.0, False)
        done = self._done_fragments()
        frames_done = sum(len(self._plan.fragments[i].frame_indices) for i in done)
        return EncodeStatus(
            fragments_done=len(done),
            fragments_total=len(self._plan.fragments),
            frames_done=frames_done,
            frames_total=self._plan.total_frames,
            covered=() if self._memory is None else tuple(self._memory.covered_ranges()),
            frames_per_s=self._recent_fps,
            duration_s=self._video.duration_s,
            finished=len(done) + len(self._gaps) >= len(self._plan.fragments),
            gaps=self._gaps.ranges(),
            **self._speech_status(),
        )

    def _speech_status(self) -> dict[str, Any]:
        from moviechat_desktop.engine.dialogue.film_dialogue import speech_status_fields

        return {} if self._dialogue is None else speech_status_fields(self._dialogue)

    def _next_fragment(self) -> int | None:
        _, plan = self._require_film()
        done = set(self._done_fragments()) | self._gaps.indices
        for fragment in plan.fragments:
            if fragment.index not in done:
                return fragment.index
        return None

    def encode_step(self, cancel: CancelToken | None = None) -> EncodeStatus:
        """Encode the next fragment not yet in memory; return the new status."""
        from moviechat_desktop.engine.video.plan_reader import open_plan_reader

        info, plan = self._require_film()
        if self.frame_transport is not None:
            raise NotReady("this film's frames come from the client (encode_frames_for)")
        index = self._next_fragment()
        if index is None:
            return self.status()
        if cancel is not None:
            cancel.raise_if_cancelled()
        model = self.model
        start = time.perf_counter()
        if self._decoder is None:
            exact = self.settings.sampling.exact_frames
            self._decoder = open_plan_reader(info, model.config.image_size, exact)
        fragment = plan.fragments[index]
        try:
            frames = self._decoder.decode(fragment.frame_indices)  # (n, S, S, 3) uint8
        except VideoDecodeError as err:  # damaged here: skip it, as VLC does (memory/gaps.py)
            return self.skip_fragment(index, str(err))
        self._encode_fragment(index, frames, start)
        return self.status()

    def skip_fragment(self, index: int, reason: str) -> EncodeStatus:
        """Record fragment ``index`` as a gap: its frames could not be decoded, here or by
        the client that decodes this film (memory/gaps.py). A fragment already in memory stays.
        When every fragment is a gap: ``VideoDecodeError`` (DESIGN §7's refusal)."""
        info, plan = self._require_film()
        if not 0 <= index < len(plan.fragments):
            raise MovieChatError(f"fragment {index} is outside 0..{len(plan.fragments) - 1}")
        if index not in set(self._done_fragments()):
            fragment = plan.fragments[index]
            self._gaps.add(index, fragment.start_s, fragment.end_s, reason)
            if len(self._gaps) == len(plan.fragments):  # nothing decodes
                raise VideoDecodeError(
                    f"'{info.path.name}' is damaged: none of its pictures can be decoded."
                )
        return self.status()

    def gap_fragments(self) -> list[int]:
        """Indices of the open film's fragments skipped as damaged, in order."""
        return sorted(self._gaps.indices)

    def retry_gaps(self) -> None:
        """Forget the gaps: the next encoding tries those fragments again (as a reopen)."""
        self._gaps.clear()

    def encode_frames_for(self, index: int, frames_uint8: Any) -> EncodeStatus:
        """Encode fragment ``index`` of the plan from frames decoded elsewhere (a client):
        ``(n, S, S, 3)`` uint8 RGB, ``n`` the fragment's planned frame count, ``S`` the
        model's input size. A fragment already in memory is left as it is."""
        import numpy as np
        import torch

        _, plan = self._require_film()
        if not 0 <= index < len(plan.fragments):
            raise MovieChatError(f"fragment {index} is outside 0..{len(plan.fragments) - 1}")
        size = self.model.config.image_size
        expected = (len(plan.fragments[index].frame_indices), size, size, 3)
        frames = np.asarray(frames_uint8)
        if frames.dtype != np.uint8 or frames.shape != expected:
            raise MovieChatError(
                f"fragment {index} needs uint8 frames shaped {expected}, "
                f"got {frames.dtype} {frames.shape}"
            )
        if index not in set(self._done_fragments()):
            self._encode_fragment(index, torch.from_numpy(frames), time.perf_counter())
        return self.status()

    def _encode_fragment(self, index: int, frames: Any, start: float) -> None:
        """Frames ``(n, S, S, 3)`` uint8 of fragment ``index`` → tokens into memory and cache."""
        from moviechat_desktop.engine.video.preprocess import normalize

        _, plan = self._require_film()
        model = self.model
        memory = self._require_memory()
        fragment = plan.fragments[index]
        # the uint8 frames go to the device (4x fewer bytes than float32) and are normalized there
        tokens = model.encode_frames(normalize(frames.to(model.device)))  # (n, Q, D) on the host
        memory.add_fragment(
            index, tokens, fragment.timestamps, start_s=fragment.start_s, end_s=fragment.end_s
        )
        if self._store is not None:
            self._store.save_fragment(memory, index)
        elapsed = time.perf_counter() - start
        self._encode_seconds += elapsed
        self._recent_fps = len(fragment.frame_indices) / elapsed if elapsed > 0 else 0.0
        return self.status()

    def encode(self, cancel: CancelToken | None = None, on_progress=None) -> EncodeStatus:
        """Encode every remaining fragment (blocking); ``on_progress(status)`` after each."""
        from moviechat_desktop.engine.progress import encode_to_the_end

        return encode_to_the_end(self, cancel, on_progress)

    @property
    def encode_seconds(self) -> float:
        return self._encode_seconds

    def covers(self, at_s: float) -> bool:
        """True when a breakpoint question at ``at_s`` can be answered now."""
        if self._plan is None:
            return False
        needed = self._plan.fragment_at(at_s).index
        done = set(self._done_fragments()) | self._gaps.indices  # a damaged part counts as seen
        return all(i in done for i in range(needed + 1))

    def missing_fragments(self) -> list[int]:
        """Indices of the open film's fragments not in memory yet, in order."""
        _, plan = self._require_film()
        done = set(self._done_fragments())
        return [f.index for f in plan.fragments if f.index not in done]

    def _done_fragments(self) -> list[int]:
        return [] if self._memory is None else list(self._memory.fragment_indices())
