#!/usr/bin/env bash
# Build a runnable one-folder bundle with PyInstaller: packaging/dist/moviechat-desktop/.
# Needs the dev extra (pip install -e '.[dev]'); system libVLC is still required at run time.
# Also installs the .desktop entry, AppStream metainfo and icon under packaging/dist/share/
# (copy them to ~/.local/share or /usr/share to integrate with the desktop).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/python -m pip install -q "pyinstaller>=6"
.venv/bin/pyinstaller --noconfirm --clean \
  --distpath packaging/dist --workpath packaging/build packaging/moviechat-desktop.spec
share=packaging/dist/share
install -D -m644 packaging/linux/io.github.moviechat_desktop.MovieChatDesktop.desktop \
  "$share/applications/io.github.moviechat_desktop.MovieChatDesktop.desktop"
install -D -m644 packaging/linux/io.github.moviechat_desktop.MovieChatDesktop.metainfo.xml \
  "$share/metainfo/io.github.moviechat_desktop.MovieChatDesktop.metainfo.xml"
install -D -m644 resources/icons/moviechat.svg \
  "$share/icons/hicolor/scalable/apps/io.github.moviechat_desktop.MovieChatDesktop.svg"
du -sh packaging/dist/moviechat-desktop
echo "bundle: packaging/dist/moviechat-desktop/moviechat-desktop"
