import subprocess
import sys


def test_version_and_help():
    out = subprocess.run(
        [sys.executable, "-m", "moviechat_desktop", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    for word in ("ask", "encode", "weights"):
        assert word in out.stdout
