"""OpenMP's wait policy is set before torch loads, by the real entry points (a fresh process)."""

import os
import subprocess
import sys

import pytest

# Records OMP_WAIT_POLICY at the moment torch is first imported, then runs the CLI.
PROBE = """
import builtins, json, os, sys
seen = {}
real_import = builtins.__import__
def spy(name, *args, **kwargs):
    if name.split(".")[0] == "torch" and "torch" not in sys.modules and "at_torch" not in seen:
        seen["at_torch"] = os.environ.get("OMP_WAIT_POLICY")
    return real_import(name, *args, **kwargs)
builtins.__import__ = spy
from moviechat_desktop.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, **seen}))
"""


def run_probe(args, env_policy=None):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_the_cli_sets_passive_waiting_before_torch_and_keeps_a_users_choice(
    reference_dir, bikes_mp4
):
    args = ["encode", str(bikes_mp4), "--model-dir", str(reference_dir)]
    assert '"at_torch": "PASSIVE"' in run_probe(args)
    assert '"at_torch": "ACTIVE"' in run_probe(args, env_policy="ACTIVE")


def test_prefer_passive_openmp_keeps_a_set_value(monkeypatch):
    from moviechat_desktop.runtime_env import prefer_passive_openmp

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert prefer_passive_openmp() == "PASSIVE" and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    assert prefer_passive_openmp() == "active"
