"""The registry: names, capability answers, and impl=None's choice."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

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


def test_when_nothing_can_run_the_error_gives_every_implementations_reasons():
    spec = Shape(1, 8, 5, 5, k=3, m=2).spec(device="xpu")
    with pytest.raises(ValueError) as info:
        registry.resolve(None, spec)
    message = str(info.value)
    for name in registry.implementations():
        assert f"{name}: " in message
    assert "device 'xpu' not supported" in message


def test_priority_is_chosen_per_device():
    triton = registry.get("fused_triton")
    assert triton.rank("cuda") > registry.get("fused_cpu").rank("cpu") > triton.rank("cpu")
    toy = registry.Implementation(name="toy_ranked", fn=registry.get("unfold").fn,
                                  summary="test", devices=("cpu",), dtypes=(torch.float32,),
                                  priority={"cpu": 1000})
    with registry.registered(toy):
        spec = Shape(1, 8, 5, 5, k=3, m=2).spec(dtype=torch.float32)
        assert registry.resolve(None, spec).name == "toy_ranked"
        assert toy.rank("cuda") == 0
    assert "toy_ranked" not in registry.implementations()


def test_register_rejects_what_is_not_an_implementation_and_duplicate_names():
    with pytest.raises(TypeError, match="Implementation"):
        registry.register(lambda *a: None)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(dataclasses.replace(registry.get("unfold")))


def test_importing_lrbench_registers_nothing_until_the_registry_is_read():
    code = ("import sys, lrbench; "
            "print(any(m.startswith('lrbench.impls') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "False"
