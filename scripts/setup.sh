#!/usr/bin/env bash
# Set up MovieChat Desktop on a Debian/Ubuntu machine: system packages (VLC, ffmpeg, Xvfb,
# the libraries Qt's xcb platform needs) and a virtual environment at .venv with the app.
# Idempotent: a second run installs nothing new and takes a few seconds.
#   EXTRAS=test ./scripts/setup.sh   -> also the test tools
#   EXTRAS=server ./scripts/setup.sh -> also the remote engine's server (Ray Serve)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  libvlc5 vlc-plugin-base vlc-plugin-video-output   # libVLC for playback
  ffmpeg                                            # test clips and probing
  espeak-ng                                         # real speech for the speech-recognition tests
  xvfb xauth x11-apps                               # a virtual screen for headless runs/tests
  libxcb-icccm4 libxcb-cursor0 libxkbcommon-x11-0   # Qt's xcb platform plugin
  libegl1 libgl1 libfontconfig1 libdbus-1-3 libglib2.0-0
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing system packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv --help >/dev/null 2>&1 || ! "$PY" -c "import ensurepip" >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends python3-venv
  fi
  "$PY" -m venv .venv
fi

EXTRAS=${EXTRAS:-}
spec="."
[ -n "$EXTRAS" ] && spec=".[$EXTRAS]"
stamp=".venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${EXTRAS:-base}"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, pinned: an unpinned torch resolves to a multi-GB CUDA build.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e "$spec"
  touch "$stamp"
fi
echo "setup: ready (.venv/bin/moviechat-desktop)"
