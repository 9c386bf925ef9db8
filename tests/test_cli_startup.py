"""Start-up and exit cost of CLI calls (issue #16 item 5): the light commands never import
torch, and a command that did ends without the interpreter's teardown only when nothing can be
lost (its output flushed, no other non-daemon thread left)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("torch", "transformers", "decord", "cv2", "sympy", "PySide6")

PROBE = """
import contextlib, io, json, sys
from moviechat_desktop.cli import main
out = io.StringIO()
try:
    with contextlib.redirect_stdout(out):
        status = main(sys.argv[1:])
except SystemExit as exit:
    status = exit.code
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"status": status, "heavy": heavy, "out": out.getvalue()}}))
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["ask", "--help"],
        ["cache", "status"],
        ["weights", "status"],
        ["--version"],
        ["engine", "status"],
    ],
)
def test_light_commands_never_import_torch(argv):
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["status"] == 0, report
    assert report["out"].strip(), report  # it did its work (help text, a status table)
    assert report["heavy"] == [], report


QUICK = """
import sys, threading, time
import torch  # the teardown worth skipping
from moviechat_desktop import quick_exit

mode = sys.argv[1]
if mode == "worker":  # a non-daemon thread still writing: the exit must wait for it
    def work():
        time.sleep(0.5)
        with open(sys.argv[2], "w") as f:
            f.write("written")
    threading.Thread(target=work).start()
if mode == "daemon":
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
sys.stdout.write("answer without a newline")  # still in the buffer
print("a log line", file=sys.stderr, end="")
status = quick_exit.finish(3)
print(" | returned", end="")  # reached only when the normal exit is taken
sys.exit(status)
"""


@pytest.mark.parametrize("mode", ["plain", "daemon"])
def test_finish_ends_at_once_with_the_output_flushed(mode):
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(QUICK), mode],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3
    assert done.stdout == "answer without a newline"  # flushed, and nothing after finish
    assert done.stderr == "a log line"


def test_finish_leaves_a_working_thread_to_the_normal_exit(tmp_path):
    target = tmp_path / "written.txt"
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(QUICK), "worker", str(target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3
    assert done.stdout == "answer without a newline | returned"
    assert target.read_text() == "written"


def test_finish_without_torch_returns():
    code = (
        "import sys; from moviechat_desktop import quick_exit; "
        "s = quick_exit.finish(4); print('returned', end=''); sys.exit(s)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (4, "returned")
