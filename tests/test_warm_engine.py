"""The CLI's warm engine (issue #16 item 5): ``ask``/``encode`` talk to a daemon that keeps the
model loaded between calls. Real processes throughout: the CLI as the user runs it, the daemon
it starts, the tiny reference model, real clips. Every daemon a test starts is stopped after it
(``warm`` fixture)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from warm_engine_helpers import process_gone, wait_until, write_settings

pytest_plugins = ["warm_engine_helpers"]  # the warm fixture

QUESTION = "What happens in this film?"
FEW_FRAGMENTS = "[sampling]\nn_fragments = 8\n"


def test_a_warm_ask_answers_as_in_process_reuses_the_model_and_imports_no_torch(
    warm, reference_dir, bikes_mp4
):
    write_settings(FEW_FRAGMENTS)
    ask = ["ask", str(bikes_mp4), QUESTION, "--greedy", "--json"]
    ask += ["--model-dir", str(reference_dir)]
    in_process = warm.run_json(*ask, keep_warm_s=0)  # encodes the film into the cache
    assert warm.daemons() == [] and warm.sockets() == []  # 0: no warm engine at all
    assert in_process["warm"] is False and in_process["engine"] == "local"

    first = warm.run_json(*ask)  # starts the daemon, loads the model there
    started = warm.status()["engine"]
    second = warm.probe(*ask)  # the client's own imports are reported
    answered = warm.status()["engine"]

    assert first["warm"] is False and first["cache_hit"] is True
    result = json.loads(second["out"].strip().splitlines()[-1])
    assert result["warm"] is True and result["engine"] == "local"
    assert result["timings"]["load_s"] < 0.5  # nothing was loaded
    assert first["answer"] == result["answer"] == in_process["answer"]
    assert first["answer"]
    assert answered["pid"] == started["pid"] and warm.daemons() == [started["pid"]]
    assert answered["sessions"] == started["sessions"] + 1
    assert answered["model"]["model_dir"] == str(reference_dir)
    assert second["heavy"] == []  # the warm client never imports torch & co.


def test_encode_then_ask_share_the_daemon_and_its_json_says_so(warm, reference_dir, bikes_mp4):
    write_settings(FEW_FRAGMENTS)
    model = ["--model-dir", str(reference_dir)]
    encoded = warm.run_json("encode", str(bikes_mp4), "--json", *model)
    assert encoded["engine"] == "local" and encoded["warm"] is False
    assert encoded["fragments_encoded"] == 8 and encoded["cache_hit"] is False
    asked = warm.run_json("ask", str(bikes_mp4), QUESTION, "--greedy", "--json", *model)
    assert asked["warm"] is True and asked["fragments_from_cache"] == 8


def test_two_calls_at_once_start_one_daemon_and_both_answer(warm, reference_dir, bikes_mp4):
    write_settings(FEW_FRAGMENTS)
    ask = ["ask", str(bikes_mp4), QUESTION, "--greedy", "--json"]
    ask += ["--model-dir", str(reference_dir)]
    calls = [warm.start(*ask) for _ in range(2)]
    results = [call.communicate(timeout=300) for call in calls]
    for call, (_, err) in zip(calls, results, strict=True):
        assert call.returncode == 0, err[-3000:]
        assert "Traceback" not in err
    answers = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    assert answers[0]["answer"] == answers[1]["answer"]
    assert sorted(a["warm"] for a in answers) == [False, True]  # one loaded, one reused
    waited = [err for _, err in results if "waiting for the warm engine" in err]
    assert len(waited) == 1  # the second waited for the first's whole call (load, encode)
    assert "(another call is using it)" in waited[0]
    assert len(warm.daemons()) == 1
    assert warm.status()["engine"]["sessions"] == 2


def test_settings_and_flags_of_each_call_reach_the_warm_engine(
    warm, reference_dir, bikes_mp4, tmp_path
):
    write_settings(FEW_FRAGMENTS)
    subtitles = tmp_path / "bikes.srt"
    subtitles.write_text(
        "1\n00:00:01,000 --> 00:00:03,000\nZebra crossing ahead.\n\n"
        "2\n00:00:04,000 --> 00:00:06,000\nMind the tram lines.\n",
        encoding="utf-8",
    )
    ask = ["ask", str(bikes_mp4), "What is said?", "--greedy", "--json"]
    ask += ["--model-dir", str(reference_dir), "--subtitles", str(subtitles)]
    first = warm.run_json(*ask)
    assert first["dialogue_lines"] == 2 and "Zebra crossing" in first["prompt"]

    # between the calls: a [generation] value in the settings file, and --no-dialogue
    write_settings(FEW_FRAGMENTS + "[generation]\nmax_new_tokens = 3\n")
    second = warm.run_json(*ask, "--no-dialogue")
    assert second["warm"] is True  # the same model, the new settings
    assert second["dialogue_lines"] == 0 and "Zebra crossing" not in second["prompt"]
    assert len(second["answer"]) < len(first["answer"])
    assert len(second["answer"].encode()) <= 3 * 4  # at most 3 tokens (bytes of the test model)

    # a model setting changes the model: loaded anew, its warning on this call's stderr
    write_settings(FEW_FRAGMENTS + '[model]\nposition_table = "bogus"\n')
    done = warm.run(*ask)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "position_table 'bogus' unknown" in done.stderr
    third = json.loads(done.stdout.strip().splitlines()[-1])
    assert third["warm"] is False and third["dialogue_lines"] == 2


def test_idle_timeout_ends_the_daemon_and_removes_its_socket(warm, tmp_path):
    missing = tmp_path / "no-such-film.mp4"
    done = warm.run("encode", str(missing), keep_warm_s=3)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("moviechat-desktop: error:")
    assert "Traceback" not in done.stderr
    (pid,) = warm.daemons()  # the film's error came from the warm engine's session
    assert len(warm.sockets()) == 1
    started = time.monotonic()
    wait_until(lambda: process_gone(pid), 30, "the idle daemon exits")
    assert time.monotonic() - started < 20
    assert warm.sockets() == []


def test_sigterm_stops_the_daemon_and_removes_its_socket(warm, tmp_path):
    warm.run("encode", str(tmp_path / "missing.mp4"))
    (pid,) = warm.daemons()
    assert len(warm.sockets()) == 1
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: process_gone(pid), 30, "the daemon ends on SIGTERM")
    assert warm.sockets() == []
    assert warm.status()["running"] is False


def test_engine_status_and_stop(warm, tmp_path):
    none = warm.run("engine", "status")
    assert none.returncode == 0 and "no warm engine is running" in none.stdout
    assert warm.status()["running"] is False
    stop = warm.run("engine", "stop")
    assert stop.returncode == 0 and "no warm engine was running" in stop.stdout

    warm.run("encode", str(tmp_path / "missing.mp4"))  # starts one (then the film fails)
    (pid,) = warm.daemons()
    shown = warm.run("engine", "status")
    assert shown.returncode == 0
    assert f"warm engine running, pid {pid}" in shown.stdout
    assert "none loaded yet" in shown.stdout  # the film failed before any model was needed
    described = warm.status()
    assert described["running"] is True and described["engine"]["pid"] == pid
    assert described["engine"]["socket"] == str(warm.sockets()[0])
    assert described["keep_warm_s"] == 120

    stopped = warm.run("engine", "stop")
    assert stopped.returncode == 0 and f"stopped the warm engine (pid {pid})" in stopped.stdout
    assert process_gone(pid) and warm.sockets() == []
    assert warm.status()["running"] is False


def test_zero_keeps_no_engine(warm, tmp_path):
    done = warm.run("encode", str(tmp_path / "missing.mp4"), keep_warm_s=0)
    assert done.returncode == 1
    assert warm.daemons() == [] and not warm.directory.exists()
    off = warm.run("engine", "status", env=warm.env(0))
    assert "no warm engine is running (off: engine.keep_warm_s is 0)" in off.stdout


def test_the_daemon_ignores_its_callers_terminal(warm, tmp_path):
    """Started detached: its own session, no terminal, output to its log file."""
    warm.run("encode", str(tmp_path / "missing.mp4"))
    (pid,) = warm.daemons()
    own_session = subprocess.run(
        ["ps", "-o", "sid=,tty=", "-p", str(pid)], capture_output=True, text=True
    ).stdout.split()
    assert own_session[0] == str(pid) and own_session[1] == "?"


def test_the_answer_length_is_checked_by_the_warm_engine(warm, reference_dir, bikes_mp4):
    done = warm.run(
        "ask", str(bikes_mp4), QUESTION, "--max-new-tokens", "100000",
        "--model-dir", str(reference_dir),
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "--max-new-tokens 100000 is out of range: this model takes 1 to" in done.stderr
    assert len(warm.daemons()) == 1  # the limit came from the engine's side (no torch here)
    assert warm.status()["engine"]["model"] is None  # decided without loading the model


def test_weights_replaced_in_place_are_loaded_again(warm, reference_dir, bikes_mp4, tmp_path):
    import shutil

    write_settings(FEW_FRAGMENTS)
    model_dir = tmp_path / "model"
    shutil.copytree(reference_dir, model_dir)
    encode = ["encode", str(bikes_mp4), "--json", "--model-dir", str(model_dir)]
    assert warm.run_json(*encode)["warm"] is False
    assert warm.run_json(*encode)["warm"] is True
    replaced = next(model_dir.glob("*.pth"))
    stamp = replaced.stat().st_mtime + 60
    os.utime(replaced, (stamp, stamp))  # as a new download of the same file would
    assert warm.run_json(*encode)["warm"] is False
