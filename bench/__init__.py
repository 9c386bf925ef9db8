"""Benchmarks of MovieChat Desktop: what the product exists for, measured on the machine at hand.

Run ``python -m bench.run --help``; ``bench/README.md`` explains every number.
"""

from moviechat_desktop.runtime_env import prefer_passive_openmp

prefer_passive_openmp()  # as the app does, before anything imports torch
