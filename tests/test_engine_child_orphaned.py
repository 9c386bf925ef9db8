"""The app's window closed while its engine process was still starting: the engine finds its
pipe gone when it says "ready" and ends quietly — no BrokenPipeError traceback on the
terminal (seen when a second window on a film was closed early, issue #15 item 8)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import multiprocessing as mp
from moviechat_desktop.service.engine_host import serve

class Engine:
    def shutdown(self):
        print("engine shut down", flush=True)

if __name__ == "__main__":
    mine, theirs = mp.Pipe()
    mine.close()  # the app has gone
    serve(theirs, "__main__:Engine", {}, 0)
"""


def test_an_engine_whose_app_has_gone_ends_quietly(tmp_path):
    script = tmp_path / "orphan.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert "engine shut down" in done.stdout
