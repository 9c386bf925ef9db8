"""bench/cli_startup.py's reading of ``python -X importtime``: the tree and the split."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.cli_startup import import_split, parse_importtime

TRACE = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |   _io
import time:      2000 |       2100 | site
import time:       300 |        300 |       sympy.core
import time:       700 |       1000 |     sympy
import time:      4000 |       5000 |   torch.distributed.tensor
import time:      1000 |       6000 | transformers.activations
import time:      3000 |       3000 |     torch._dynamo
import time:       500 |       3500 |   transformers.masking_utils
import time:      1500 |       5000 | transformers.modeling_utils
import time:     20000 |      20000 |   torch
import time:      1000 |      21000 | moviechat_desktop.engine.video.frames
"""


def test_the_tree_is_rebuilt_from_children_first_lines():
    nodes = {n.name: n for n in parse_importtime(TRACE)}
    assert nodes["sympy"].parent == "torch.distributed.tensor"
    assert nodes["torch.distributed.tensor"].parent == "transformers.activations"
    assert nodes["transformers.masking_utils"].parent == "transformers.modeling_utils"
    assert nodes["torch"].parent == "moviechat_desktop.engine.video.frames"
    assert nodes["site"].parent is None and nodes["site"].children == ["_io"]


def test_the_split_counts_each_module_once():
    split = import_split(parse_importtime(TRACE))
    assert split["imports_total_s"] == pytest.approx((2100 + 6000 + 5000 + 21000) / 1e6)
    # transformers.masking_utils is inside transformers.modeling_utils: not counted twice
    assert split["import_transformers_stack_s"] == pytest.approx((6000 + 5000) / 1e6)
    assert split["import_torch_s"] == pytest.approx(0.02)  # found where it was first imported
    assert split["import_torch._dynamo_s"] == pytest.approx(0.003)
    assert split["import_sympy_s"] == pytest.approx(0.001)
    assert split["import_cv2_s"] == 0.0  # not imported at all


def test_a_real_trace_parses():
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import json"],
        capture_output=True,
        text=True,
        check=True,
    )
    nodes = parse_importtime(done.stderr)
    assert any(n.name == "json" and n.level == 0 for n in nodes)
    assert import_split(nodes)["imports_total_s"] > 0
