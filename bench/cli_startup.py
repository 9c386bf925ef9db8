"""Start-up cost of a CLI call (issue 16 item 5): a cached ``ask``, wall and CPU, and where
its imports go; ``python -m bench.startup_probe --cli-ask FILM [--model-dir D]`` prints it.

Every figure comes from fresh processes, as a user's call: first one ``ask`` that encodes the
film (not measured), then ``repeats`` cached ``ask --greedy --json`` calls (median wall, the
process's CPU from ``getrusage``, and the ask's own ``open_s``/``load_s``/``answer_s``), then
one more with ``python -X importtime`` for the split of the imports (importtime's own overhead
inflates those figures; they are shares, not a sum to compare with the wall). In the same run,
``python -c "import torch"`` is the yardstick: the machine is shared and its load varies, so the
ask is best read against what importing torch alone costs at that moment. The load average is
recorded before and after. The user dirs are temporary (``BenchDirs``).

Those asks run in their own process (``MOVIECHAT_KEEP_WARM_S=0``). The same ask with the warm
engine (``service/warm_engine.py``, the default since issue 16 item 5) is then timed twice over:
``repeats`` first calls, each after ``engine stop`` (the call starts the daemon and loads the
model), and ``repeats`` warm calls (the daemon holds the model); one more warm call under
``-X importtime`` gives the client's own imports (the heaviest top-level ones are listed). The
daemon is stopped at the end.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

QUESTION = "What happens in this film?"
TOP_IMPORTS = 8  # the warm client's heaviest top-level imports, listed
ROOT = Path(__file__).resolve().parent.parent
# the modules the split names; each one's cumulative import time where it was first imported
WATCHED = ("torch", "torch._dynamo", "sympy", "torch.distributed.tensor", "cv2", "decord")


@dataclass
class ImportNode:
    name: str
    level: int
    cumulative_us: int
    parent: str | None = None
    children: list[str] = field(default_factory=list)


def parse_importtime(stderr: str) -> list[ImportNode]:
    """``-X importtime`` lines → nodes with their parents (the lines come children first)."""
    nodes: list[ImportNode] = []
    pending: list[ImportNode] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if not cumulative.strip().isdigit():
            continue  # the header line
        stripped = name.lstrip()
        level = (len(name) - len(stripped) - 1) // 2
        node = ImportNode(stripped.strip(), level, int(cumulative))
        while pending and pending[-1].level > level:
            child = pending.pop()
            child.parent = node.name
            node.children.append(child.name)
        pending.append(node)
        nodes.append(node)
    return nodes


def import_split(nodes: list[ImportNode]) -> dict[str, float]:
    """Seconds: every import (top level), torch, the transformers stack (every transformers
    module not imported by another one, what they pull in included), and the WATCHED ones."""
    by_name = {n.name: n for n in nodes}

    def is_transformers(name: str | None) -> bool:
        return name is not None and (name == "transformers" or name.startswith("transformers."))

    out = {
        "imports_total_s": sum(n.cumulative_us for n in nodes if n.level == 0) / 1e6,
        "import_transformers_stack_s": sum(
            n.cumulative_us
            for n in nodes
            if is_transformers(n.name) and not is_transformers(n.parent)
        )
        / 1e6,
    }
    for name in WATCHED:
        node = by_name.get(name)
        out[f"import_{name}_s"] = node.cumulative_us / 1e6 if node else 0.0
    return out


def _run(command: list[str], env: dict[str, str]) -> tuple[float, float, str, str, int]:
    """(wall s, CPU s of the child, stdout, stderr, status)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout, done.stderr, done.returncode


def measure_cli_ask(film: Path, model_dir: str = "", repeats: int = 3) -> dict[str, float]:
    """The figures of the module docstring; raises ``RuntimeError`` when an ask fails."""
    from bench.userdirs import BenchDirs

    ask = [sys.executable, "-m", "moviechat_desktop", "ask", str(film), QUESTION, "--greedy"]
    ask += ["--json"] + (["--model-dir", model_dir] if model_dir else [])
    out: dict[str, float] = {"load_average_before": os.getloadavg()[0]}
    with BenchDirs():
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "MOVIECHAT_KEEP_WARM_S": "0"}
        _, _, _, err, status = _run(ask, env)  # encodes the film into the (temporary) cache
        if status != 0:
            raise RuntimeError(f"the first ask failed: {err.strip()[-500:]}")
        walls, cpus, timings = [], [], []
        torch_walls, torch_cpus = [], []
        for _ in range(repeats):
            wall, cpu, _, _, _ = _run([sys.executable, "-c", "import torch"], env)
            torch_walls.append(wall)
            torch_cpus.append(cpu)
            wall, cpu, stdout, err, status = _run(ask, env)
            if status != 0:
                raise RuntimeError(f"a cached ask failed: {err.strip()[-500:]}")
            result = json.loads(stdout.strip().splitlines()[-1])
            if not result.get("cache_hit"):
                raise RuntimeError("the second ask did not find the film in the cache")
            walls.append(wall)
            cpus.append(cpu)
            timings.append(result["timings"])
        _, _, _, err, status = _run([sys.executable, "-X", "importtime", *ask[1:]], env)
        if status != 0:
            raise RuntimeError(f"the importtime ask failed: {err.strip()[-500:]}")
        warm = _measure_warm_engine(ask, {**env, "MOVIECHAT_KEEP_WARM_S": "300"}, repeats)
    out.update(
        {
            "cli_ask_cached_wall_s": statistics.median(walls),
            "cli_ask_cached_cpu_s": statistics.median(cpus),
            "import_torch_alone_wall_s": statistics.median(torch_walls),
            "import_torch_alone_cpu_s": statistics.median(torch_cpus),
        }
    )
    for key in ("open_s", "load_s", "answer_s"):
        out[f"cli_ask_{key}"] = statistics.median(t[key] for t in timings)
    out.update(import_split(parse_importtime(err)))
    out.update(warm)
    out["load_average_after"] = os.getloadavg()[0]
    return out


def _timed_ask(ask: list[str], env: dict[str, str]) -> tuple[float, float, dict]:
    wall, cpu, stdout, err, status = _run(ask, env)
    if status != 0:
        raise RuntimeError(f"an ask failed: {err.strip()[-500:]}")
    return wall, cpu, json.loads(stdout.strip().splitlines()[-1])


def _measure_warm_engine(ask: list[str], env: dict[str, str], repeats: int) -> dict[str, float]:
    """Cold (each call starts the daemon) and warm calls, and the warm client's imports."""
    stop = [sys.executable, "-m", "moviechat_desktop", "engine", "stop"]
    out: dict[str, float] = {}
    try:
        for kind in ("cold", "warm"):
            walls, cpus, results = [], [], []
            for _ in range(repeats):
                if kind == "cold":
                    _run(stop, env)
                wall, cpu, result = _timed_ask(ask, env)
                if result.get("warm") is not (kind == "warm") or not result.get("cache_hit"):
                    raise RuntimeError(f"a {kind} ask reported warm={result.get('warm')}")
                walls.append(wall)
                cpus.append(cpu)
                results.append(result["timings"])
            out[f"cli_ask_{kind}_engine_wall_s"] = statistics.median(walls)
            out[f"cli_ask_{kind}_engine_wall_max_s"] = max(walls)
            out[f"cli_ask_{kind}_engine_cpu_s"] = statistics.median(cpus)
            for key in ("open_s", "load_s", "answer_s"):
                out[f"cli_ask_{kind}_engine_{key}"] = statistics.median(t[key] for t in results)
        _, _, _, err, status = _run([sys.executable, "-X", "importtime", *ask[1:]], env)
        if status != 0:
            raise RuntimeError(f"the warm importtime ask failed: {err.strip()[-500:]}")
    finally:
        _run(stop, env)
    nodes = parse_importtime(err)
    out["warm_client_imports_s"] = sum(n.cumulative_us for n in nodes if n.level == 0) / 1e6
    out["warm_client_heavy_modules"] = float(
        sum(1 for n in nodes if n.name.split(".")[0] in ("torch", "transformers", "decord"))
    )
    top = sorted((n for n in nodes if n.level == 0), key=lambda n: -n.cumulative_us)[:TOP_IMPORTS]
    for node in top:
        out[f"warm_import {node.name}"] = node.cumulative_us / 1e6
    return out


ROWS = (
    ("cli_ask_cached_wall_s", "cached ask: wall (median)"),
    ("cli_ask_cached_cpu_s", "cached ask: CPU, user + sys"),
    ("cli_ask_open_s", "  of it open (probe, cache; imports torch)"),
    ("cli_ask_load_s", "  of it load (transformers, weights)"),
    ("cli_ask_answer_s", "  of it answer (generation)"),
    ("import_torch_alone_wall_s", "yardstick: python -c 'import torch', wall"),
    ("import_torch_alone_cpu_s", "yardstick: python -c 'import torch', CPU"),
    ("imports_total_s", "importtime: every import"),
    ("import_torch_s", "importtime: torch"),
    ("import_transformers_stack_s", "importtime: transformers stack"),
    ("import_torch._dynamo_s", "importtime:   torch._dynamo (in it)"),
    ("import_torch.distributed.tensor_s", "importtime:   torch.distributed.tensor"),
    ("import_sympy_s", "importtime:   sympy"),
    ("import_cv2_s", "importtime: cv2 (probe)"),
    ("import_decord_s", "importtime: decord"),
    ("cli_ask_cold_engine_wall_s", "warm engine: first call (starts it), wall (median)"),
    ("cli_ask_cold_engine_wall_max_s", "warm engine: first call, wall (worst)"),
    ("cli_ask_cold_engine_cpu_s", "warm engine: first call, CPU of the client"),
    ("cli_ask_cold_engine_load_s", "  of it load (in the daemon)"),
    ("cli_ask_warm_engine_wall_s", "warm engine: warm call, wall (median)"),
    ("cli_ask_warm_engine_wall_max_s", "warm engine: warm call, wall (worst)"),
    ("cli_ask_warm_engine_cpu_s", "warm engine: warm call, CPU of the client"),
    ("cli_ask_warm_engine_open_s", "  of it open (in the daemon, from the cache)"),
    ("cli_ask_warm_engine_answer_s", "  of it answer (generation)"),
    ("warm_client_imports_s", "importtime of the warm client: every import"),
    ("warm_client_heavy_modules", "  torch/transformers/decord modules imported"),
    ("load_average_before", "load average (1 min) before"),
    ("load_average_after", "load average (1 min) after"),
)


def format_rows(figures: dict[str, float]) -> str:
    rows = list(ROWS) + [
        (key, f"  top import: {key.split(' ', 1)[1]}")
        for key in figures
        if key.startswith("warm_import ")
    ]
    width = max(len(label) for _, label in rows)
    lines = [f"{label:<{width}}  {figures[key]:8.2f}" for key, label in rows if key in figures]
    return "\n".join(lines)
