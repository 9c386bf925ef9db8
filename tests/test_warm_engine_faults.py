"""The warm engine when things go wrong: the daemon killed mid-encode, the client interrupted
mid-encode, a dead daemon's socket file, an unsafe runtime dir, a daemon of other code."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest
from warm_engine_helpers import process_gone, wait_until, write_settings

pytest_plugins = ["warm_engine_helpers"]  # the warm fixture

# vtest.avi cut into 512 fragments: its encoding takes long enough to be caught in the middle
MANY_FRAGMENTS = "[sampling]\nn_fragments = 512\n"


def _encoding_started(warm, call) -> int:
    """Wait until the daemon has its model and is encoding for ``call``; its pid."""

    def encoding() -> bool:
        assert call.poll() is None, call.communicate()[1][-3000:]
        engine = warm.status()["engine"]
        return engine is not None and engine["busy"] and engine["model"] is not None

    wait_until(encoding, 240, "the daemon encodes")
    time.sleep(1.5)  # well into the fragments
    assert call.poll() is None, "the encode ended before the test could interrupt it"
    return warm.status()["engine"]["pid"]


def test_daemon_killed_mid_encode_is_one_line_and_the_next_call_starts_another(
    warm, reference_dir, vtest_avi
):
    write_settings(MANY_FRAGMENTS)
    model = ["--model-dir", str(reference_dir)]
    call = warm.start("encode", str(vtest_avi), *model)
    pid = _encoding_started(warm, call)
    os.kill(pid, signal.SIGKILL)
    _, err = call.communicate(timeout=60)
    assert call.returncode == 1
    assert "Traceback" not in err
    (last,) = err.strip().splitlines()  # one line, nothing else
    assert last.startswith("moviechat-desktop: error: The assistant's process ended:"), err
    assert f"pid {pid}" in last

    # a model setting the engine warns about: its warning reaches this call's stderr
    write_settings(MANY_FRAGMENTS + '[model]\nposition_table = "bogus"\n')
    done = warm.run("ask", str(vtest_avi), "Who walks?", "--at", "2", "--json", "--greedy", *model)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "position_table 'bogus' unknown" in done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["answer"] and answer["warm"] is False
    assert warm.daemons() != [pid] and len(warm.daemons()) == 1


def test_client_interrupted_mid_encode_exits_130_and_the_daemon_serves_the_same_film(
    warm, reference_dir, vtest_avi
):
    write_settings(MANY_FRAGMENTS)
    model = ["--model-dir", str(reference_dir)]
    call = warm.start("encode", str(vtest_avi), *model)
    pid = _encoding_started(warm, call)
    call.send_signal(signal.SIGINT)
    _, err = call.communicate(timeout=60)
    assert call.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "interrupted" in err

    # the session ended, its film's cache entry released: the next call opens the same film
    answer = warm.run_json(
        "ask", str(vtest_avi), "Who walks?", "--at", "2", "--json", "--greedy", *model
    )
    assert answer["answer"] and answer["warm"] is True
    assert answer["fragments_from_cache"] > 0  # what the interrupted call had encoded
    assert warm.daemons() == [pid]


def test_engine_stop_mid_encode_cancels_the_call_and_says_why(warm, reference_dir, vtest_avi):
    write_settings(MANY_FRAGMENTS)
    call = warm.start("encode", str(vtest_avi), "--model-dir", str(reference_dir))
    pid = _encoding_started(warm, call)
    stopped = warm.run("engine", "stop")
    assert stopped.returncode == 0 and f"stopped the warm engine (pid {pid})" in stopped.stdout
    _, err = call.communicate(timeout=60)
    assert call.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert "the warm engine is stopping (asked to stop): this call is cancelled" in err
    assert err.strip().splitlines()[-1] == "moviechat-desktop: cancelled"
    assert process_gone(pid) and warm.sockets() == []


def test_a_dead_daemons_socket_file_is_replaced(warm, tmp_path):
    from moviechat_desktop.service.warm_engine_paths import warm_engine_place, write_new_key

    place = warm_engine_place()
    write_new_key(place)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(place.socket))  # bound, never listening, closed: connections are refused
    stale.close()
    assert place.socket.is_socket()

    done = warm.run("encode", str(tmp_path / "missing.mp4"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "warm engine" not in done.stderr
    assert "missing.mp4" in done.stderr  # the film's own error, from a new daemon
    assert len(warm.daemons()) == 1
    assert warm.status()["engine"]["socket"] == str(place.socket)


@pytest.mark.parametrize("flaw", ["mode", "symlink", "owner"])
def test_an_unsafe_runtime_dir_means_no_warm_engine_and_one_warning(warm, tmp_path, flaw):
    directory = warm.directory
    if flaw == "mode":
        directory.mkdir(mode=0o700)
        directory.chmod(0o755)
        expected = "has mode 0755"
    elif flaw == "symlink":
        target = warm.runtime / "elsewhere"
        target.mkdir(mode=0o700)
        directory.symlink_to(target)
        expected = "is a symbolic link"
    else:
        if os.getuid() != 0:
            pytest.skip("giving a directory to another user needs root")
        directory.mkdir(mode=0o700)
        os.chown(directory, 65534, 65534)
        expected = "belongs to another user"
    done = warm.run("encode", str(tmp_path / "missing.mp4"))
    assert done.returncode == 1
    warnings = [line for line in done.stderr.splitlines() if "no warm engine" in line]
    assert len(warnings) == 1 and expected in warnings[0], done.stderr
    assert "this call loads its own" in warnings[0]
    assert done.stderr.strip().splitlines()[-1].startswith("moviechat-desktop: error:")
    assert "missing.mp4" in done.stderr  # the call itself ran, in its own process
    assert warm.daemons() == []
    status = warm.status()
    assert status["running"] is False and expected in status["unavailable"]


def test_a_daemon_of_other_code_makes_way(warm, tmp_path):
    """An upgrade (here: a copy of the package, so other files) never talks to old code."""
    from moviechat_desktop.service.warm_engine_paths import PACKAGE_DIR

    first = warm.run("encode", str(tmp_path / "missing.mp4"))
    assert first.returncode == 1
    old = warm.status()["engine"]

    copy_root = tmp_path / "upgraded"
    shutil.copytree(
        PACKAGE_DIR, copy_root / "moviechat_desktop", ignore=shutil.ignore_patterns("__pycache__")
    )
    with (copy_root / "moviechat_desktop" / "cli.py").open("a", encoding="utf-8") as edited:
        edited.write("# a developer's edit\n")  # (the copy's mtimes are the originals')
    env = warm.env(PYTHONPATH=str(copy_root))
    second = warm.run("encode", str(tmp_path / "missing.mp4"), env=env, cwd=copy_root)
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert "missing.mp4" in second.stderr
    wait_until(lambda: process_gone(old["pid"]), 30, "the old daemon exits")
    new = json.loads(warm.run("engine", "status", "--json", env=env, cwd=copy_root).stdout)
    assert new["running"] and new["engine"]["pid"] != old["pid"]
    assert new["engine"]["code"] != old["code"]
    assert warm.daemons() == [new["engine"]["pid"]]


def test_a_daemon_that_cannot_start_leaves_the_call_to_run_here(warm, monkeypatch, caplog):
    from moviechat_desktop.engine.settings import load_settings
    from moviechat_desktop.service import warm_engine
    from moviechat_desktop.service.warm_engine_paths import warm_engine_place

    monkeypatch.setattr(warm_engine, "DAEMON_MODULE", "moviechat_desktop.no_such_daemon")
    with caplog.at_level("WARNING"):
        engine = warm_engine.open_warm_engine(load_settings(), None, use_cache=True)
    assert engine is None
    (record,) = [r for r in caplog.records if "could not start" in r.getMessage()]
    assert "this call loads its own" in record.getMessage()
    assert "No module named moviechat_desktop.no_such_daemon" in record.getMessage()
    place = warm_engine_place()
    assert "No module named" in place.log_file.read_text()
    assert not place.socket.exists() and warm.daemons() == []


def test_a_runtime_dir_variable_whose_directory_is_gone_falls_back_to_tmp(monkeypatch, tmp_path):
    from moviechat_desktop.service.warm_engine_paths import runtime_directory

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "gone"))
    assert runtime_directory() == Path("/tmp") / f"moviechat-desktop-{os.getuid()}"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert runtime_directory() == tmp_path / "moviechat-desktop"
