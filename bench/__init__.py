"""Benchmarks of MovieChat Desktop: what the product exists for, measured on the machine at hand.

Run ``python -m bench.run --help``; ``bench/README.md`` explains every number.
"""
