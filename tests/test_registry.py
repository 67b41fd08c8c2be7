"""The registry: names, capability answers, and impl=None's choice."""

from __future__ import annotations

import pytest
import torch

import lrbench
from lrbench import registry
from lrbench.inputs import Shape
from lrbench.listing import implementation_rows


def test_the_torch_implementations_are_registered():
    assert {"reference", "unfold", "im2col_matmul"} <= set(lrbench.implementations())


def test_unknown_name_lists_what_exists():
    with pytest.raises(ValueError) as info:
        registry.get("magic")
    assert "reference" in str(info.value) and "'magic'" in str(info.value)


def test_auto_choice_is_the_highest_priority_usable_implementation():
    spec = Shape(1, 8, 5, 5, k=3, m=2).spec(dtype=torch.float32)
    usable = registry.usable(spec)
    chosen = registry.resolve(None, spec)
    assert chosen.name == usable[0]
    priorities = [registry.get(n).rank(spec.device) for n in usable]
    assert priorities == sorted(priorities, reverse=True)
    assert chosen.why_not(spec) == []


def test_why_not_gives_reasons_for_an_unsupported_device():
    spec = Shape(1, 8, 5, 5, k=3, m=2).spec(device="xpu")
    reasons = registry.get("unfold").why_not(spec)
    assert reasons and "device 'xpu' not supported" in reasons[0]


def test_list_rows_state_whether_each_implementation_runs_here():
    rows = {row["name"]: row for row in implementation_rows()}
    assert rows["reference"]["runs here"].startswith("yes")
    for row in rows.values():
        assert row["runs here"].startswith("yes") or row["why not"], row
