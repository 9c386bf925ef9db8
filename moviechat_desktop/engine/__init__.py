"""The engine: video input, the MovieChat model, memory, weights and the assistant facade.

Pure Python + torch; never imports Qt (an import-linter contract enforces it). Heavy modules
(torch, transformers, decord) are imported by the submodules that need them, not here, so
``import moviechat_desktop.engine`` stays cheap.
"""
