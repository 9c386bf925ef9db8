"""What the machine is and how much memory the process uses: RSS, its peak, CUDA memory.

Host memory comes from ``/proc/self/status`` (``VmRSS`` now, ``VmHWM`` the peak); the peak is
reset between phases by writing ``5`` to ``/proc/self/clear_refs`` (Linux ≥ 4.0). Elsewhere
``resource.getrusage`` gives the lifetime peak only. Device memory comes from
``torch.cuda.memory_allocated`` / ``max_memory_allocated`` and is ``None`` without CUDA.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import platform
import re
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

MB = 1024 * 1024
_STATUS = Path("/proc/self/status")


def _status_kb(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _lifetime_peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def rss_bytes() -> int:
    """Resident set size now (the lifetime peak where /proc is missing)."""
    kb = _status_kb("VmRSS")
    return kb * 1024 if kb is not None else _lifetime_peak_bytes()


def peak_rss_bytes() -> int:
    """Peak resident set size since the last ``reset_peak_rss`` (or since the start)."""
    kb = _status_kb("VmHWM")
    return kb * 1024 if kb is not None else _lifetime_peak_bytes()


def reset_peak_rss() -> bool:
    """Start a new peak window; False where the OS cannot (the peak is then the lifetime one)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def _cuda():
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return torch.cuda


def cuda_allocated_bytes() -> int | None:
    cuda = _cuda()
    return None if cuda is None else int(cuda.memory_allocated())


def cuda_peak_bytes() -> int | None:
    cuda = _cuda()
    return None if cuda is None else int(cuda.max_memory_allocated())


def release_cuda_cache() -> None:
    cuda = _cuda()
    if cuda is not None:
        cuda.empty_cache()


def reset_cuda_peak() -> None:
    cuda = _cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()


class PeakTracker:
    """Peak host and device memory per phase, and over the whole run.

    ``with tracker.phase() as peaks:`` resets both peaks on entry; on exit ``peaks`` holds the
    phase's ``rss_peak_mb`` (and ``cuda_peak_mb`` on CUDA) and the run's maxima are updated.
    Resetting the kernel's peak loses the lifetime one, hence the run's maxima kept here.
    """

    def __init__(self) -> None:
        self.run: dict[str, float] = {"rss_peak_mb": peak_rss_bytes() / MB}

    @contextlib.contextmanager
    def phase(self) -> Iterator[dict[str, float]]:
        peaks: dict[str, float] = {}
        reset_peak_rss()
        reset_cuda_peak()
        try:
            yield peaks
        finally:
            peaks["rss_peak_mb"] = peak_rss_bytes() / MB
            cuda = cuda_peak_bytes()
            if cuda is not None:
                peaks["cuda_peak_mb"] = cuda / MB
            for key, value in peaks.items():
                self.run[key] = max(self.run.get(key, 0.0), value)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _first_line(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.strip().splitlines()
    return lines[0] if out.returncode == 0 and lines else None


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.machine()


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_info() -> dict:
    """The machine, the libraries and the code version, recorded next to the numbers."""
    import torch

    mem_kb = None
    try:
        match = re.search(r"^MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text(), re.MULTILINE)
        mem_kb = int(match.group(1)) if match else None
    except OSError:
        pass
    cuda = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        cuda = {
            "name": props.name,
            "memory_gb": round(props.total_memory / 1e9, 1),
            "capability": f"{props.major}.{props.minor}",
            "cuda": torch.version.cuda,
        }
    root = Path(__file__).resolve().parent.parent
    commit = _first_line(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"])
    libraries = {
        name: _version(dist)
        for name, dist in (
            ("torch", "torch"),
            ("transformers", "transformers"),
            ("huggingface_hub", "huggingface_hub"),
            ("safetensors", "safetensors"),
            ("decord", "decord"),
            ("opencv", "opencv-python-headless"),
            ("numpy", "numpy"),
            ("PySide6", "PySide6-Essentials"),
            ("bitsandbytes", "bitsandbytes"),
        )
    }
    libraries["python"] = platform.python_version()
    libraries["ffmpeg"] = _first_line(["ffmpeg", "-hide_banner", "-version"])
    return {
        "hostname": platform.node(),
        "os": platform.platform(),
        "cpu": _cpu_model(),
        "cores": _usable_cores(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "ram_gb": round(mem_kb * 1024 / 1e9, 1) if mem_kb else None,
        "cuda": cuda,
        "libraries": libraries,
        "git_commit": commit,
        "git_dirty": bool(dirty),
    }


def device_slug(info: dict, device: str) -> str:
    """``cpu`` or e.g. ``cuda-nvidia-h100-80gb-hbm3``: the device part of the result file name."""
    if device == "cuda" and info.get("cuda"):
        return "cuda-" + re.sub(r"[^a-z0-9]+", "-", info["cuda"]["name"].lower()).strip("-")
    return "cpu"
