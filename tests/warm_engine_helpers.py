"""Helpers of the warm engine's tests: real CLI processes, a private runtime dir per test, and
the guarantee that every daemon a test started is gone after it (``engine stop``, then
SIGKILL of any process whose command line names the test's runtime dir)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "moviechat_desktop"]
DAEMON_MODULE = "moviechat_desktop.service.warm_engine_main"
TIMEOUT_S = 300

# a warm ask/encode run in a subprocess, reporting what the client process imported
PROBE = """
import contextlib, io, json, sys
from moviechat_desktop.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    status = main(sys.argv[1:])
heavy = [m for m in ("torch", "transformers", "decord", "cv2", "sympy") if m in sys.modules]
print(json.dumps({"status": status, "heavy": heavy, "out": out.getvalue()}))
"""


def daemon_pids(runtime: Path) -> list[int]:
    """The warm engines whose socket lies under ``runtime`` (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in command]
        if DAEMON_MODULE in words and any(w.startswith(str(runtime)) for w in words):
            pids.append(int(entry.name))
    return pids


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie (our child: the test process started the daemon itself) counts as gone
        return (Path("/proc") / str(pid) / "stat").read_text().split()[2] == "Z"
    except (OSError, IndexError):
        return True


def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting until {what}")
        time.sleep(0.1)


class WarmRig:
    """The CLI with the warm engine on, in this test's own runtime dir."""

    def __init__(self, runtime: Path) -> None:
        self.runtime = runtime

    @property
    def directory(self) -> Path:
        return self.runtime / "moviechat-desktop"

    def env(self, keep_warm_s: int | None = None, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        if keep_warm_s is not None:
            env["MOVIECHAT_KEEP_WARM_S"] = str(keep_warm_s)
        env.update(extra)
        return env

    def run(self, *args: str, keep_warm_s: int | None = None, **kwargs):
        env = kwargs.pop("env", None) or self.env(keep_warm_s)
        timeout = kwargs.pop("timeout", TIMEOUT_S)
        return subprocess.run(
            [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, **kwargs
        )

    def start(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(
            [*CLI, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(),
            **kwargs,
        )

    def run_json(self, *args: str, keep_warm_s: int | None = None) -> dict:
        done = self.run(*args, keep_warm_s=keep_warm_s)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def probe(self, *args: str) -> dict:
        """A call run as ``main(argv)`` in a subprocess that reports its heavy imports."""
        done = subprocess.run(
            [sys.executable, "-c", PROBE, *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env=self.env(),
        )
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["status"] == 0, (report, done.stderr[-3000:])
        return report

    def status(self) -> dict:
        return self.run_json("engine", "status", "--json")

    def daemons(self) -> list[int]:
        return daemon_pids(self.runtime)

    def sockets(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if p.suffix == ".sock")

    def stop_everything(self) -> None:
        try:
            self.run("engine", "stop", timeout=60)
        except subprocess.TimeoutExpired:
            pass
        for pid in self.daemons():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def warm(monkeypatch):
    """The warm engine on (120 s), in a short private runtime dir of this test's own."""
    runtime = Path(tempfile.mkdtemp(prefix="mcwarm-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("MOVIECHAT_KEEP_WARM_S", "120")
    rig = WarmRig(runtime)
    try:
        yield rig
    finally:
        rig.stop_everything()
        left = rig.daemons()
        shutil.rmtree(runtime, ignore_errors=True)
        assert left == [] or all(process_gone(p) for p in left)


def write_settings(text: str) -> None:
    """The user's settings file (in the test's isolated config dir)."""
    from moviechat_desktop.engine.settings import settings_path

    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
