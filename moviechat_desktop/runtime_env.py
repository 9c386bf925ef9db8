"""Process-wide settings that must be made before torch is imported (no torch, no Qt here).

OpenMP's default lets torch's idle worker threads spin while they wait for work. Next to the
film playing in VLC (and anything else the user runs) that spinning takes the cores the encoder
needs: measured on 2 cores with one of them kept busy, encoding a film with the tiny model took
1.4–1.9 s with the default and 0.6–0.9 s with ``OMP_WAIT_POLICY=PASSIVE``; on a quiet machine
the two were within noise. OpenMP reads the variable once, when torch loads it, so the entry
points call ``prefer_passive_openmp()`` first. A value the user has set is kept.
"""

from __future__ import annotations

import os

OMP_WAIT_POLICY = "OMP_WAIT_POLICY"


def prefer_passive_openmp() -> str:
    """Make OpenMP threads sleep while idle unless the user chose otherwise; the policy."""
    return os.environ.setdefault(OMP_WAIT_POLICY, "PASSIVE")
