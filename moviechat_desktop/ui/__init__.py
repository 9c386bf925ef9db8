"""Qt widgets. Never imports torch/transformers at module level (import-linter contract)."""
