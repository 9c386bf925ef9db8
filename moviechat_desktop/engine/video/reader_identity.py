"""What the nearest-reference reader's pictures depend on, for the memory cache key.

Kept apart from ``reference_frames`` (which decodes) so that the settings dialog and the cache
tools can name the key without importing a decoder. Bump ``version`` when the choice of
pictures or their conversion changes: memories made by another version are then not reused.
"""

from __future__ import annotations

from typing import Any

READER_IDENTITY: dict[str, Any] = {
    "reader": "nearest-reference",
    "version": 1,
    "skip_frame": "nonref",
    "resize": "swscale-bilinear",
}
