"""scripts/ablate_fused_cpu.py: each part's text edit applies to today's kernel source, exactly
once, and leaves that part out (the script stops instead of timing a kernel that has moved on)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import ablate_fused_cpu as ablate  # noqa: E402  (scripts/ is not a package)
from lrbench.impls import fused_cpu  # noqa: E402


@pytest.mark.parametrize("part", list(ablate.PARTS))
def test_each_part_edits_the_kernel_source_once(part):
    source = fused_cpu.SOURCE.read_text()
    edited = ablate.ablated_source(source, ablate.PARTS[part][1])
    assert edited != source
    for _old, new in ablate.PARTS[part][1]:
        assert edited.count(new) == 1


def test_an_edit_that_no_longer_applies_stops_the_script():
    with pytest.raises(SystemExit, match="the kernel has moved on"):
        ablate.ablated_source("int main() {}", ablate.PARTS["x_copy"][1])


def test_the_exp_ablation_returns_before_any_exp_of_the_float_branch():
    """The float exp has an AVX-512 form and a portable one: the ablated return must come first
    in that branch, or the kernels keep the exp on the CPUs that take the first form."""
    edited = ablate.ablated_source(fused_cpu.SOURCE.read_text(), ablate.PARTS["exp"][1])
    body = edited[edited.index("inline Vec<T, V> exp_vec("):]
    float_branch = body[body.index("} else {"):body.index("// ablated")]
    assert "return" not in float_branch.replace("if (true) return x * 0.0f + 1.0f;", "")


def test_the_forward_parts_are_parts():
    assert set(ablate.FORWARD_PARTS) <= set(ablate.PARTS)


def test_the_weights_ablation_keeps_the_forwards_weights_and_is_asked_for_by_name():
    """`weights` takes pass 1's logit and exp out of the backward only (the forward shares
    weights_pass), and overlaps `exp`, so the default parts, whose costs are summed, leave it out."""
    edited = ablate.ablated_source(fused_cpu.SOURCE.read_text(), ablate.PARTS["weights"][1])
    body = edited[edited.index("inline Vec<T, V> weights_pass("):]
    forward = body[body.index("if constexpr (FORWARD) {"):body.index("} else {")]
    assert "exp_vec<T, V, FORWARD>" in forward and "phi_vec<PHI>" in forward
    assert "weights" not in ablate.DEFAULT_PARTS
    assert set(ablate.DEFAULT_PARTS) == set(ablate.PARTS) - {"weights"}
