"""scripts/time_fused_cpu.py's A/B: each kernel goes first in turn, and old / new comes with the
interval of the rounds' paired ratios, the right way up."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import time_fused_cpu as timing  # noqa: E402  (scripts/ is not a package)


def test_each_label_goes_first_in_turn():
    orders = [timing.round_order(["new", "old"], r) for r in range(4)]
    assert orders == [["new", "old"], ["old", "new"], ["new", "old"], ["old", "new"]]
    assert [timing.round_order(["a", "b", "c"], r)[0] for r in range(3)] == ["a", "b", "c"]


def _rounds(n: int, seed: int) -> list[float]:
    """Round times with a drift shared by both kernels of a round and a little noise of each."""
    rng = np.random.default_rng(seed)
    drift = np.exp(rng.normal(0, 0.2, n))  # the machine, round by round
    return list(1e-3 * drift * np.exp(rng.normal(0, 0.01, n)))


@pytest.mark.parametrize("faster", [1.5, 1.03])
def test_a_faster_new_kernel_is_a_speedup_above_1_with_an_interval_around_it(faster):
    new = _rounds(21, seed=1)
    rng = np.random.default_rng(2)
    old = [t * faster * float(np.exp(rng.normal(0, 0.01))) for t in new]  # the same rounds' drift
    ratio, low, high = timing.speedup(old, new)
    assert 1 < low < faster < high < faster * 1.02
    assert ratio == pytest.approx(faster, rel=0.02)


def test_unpaired_noise_gives_an_interval_around_1():
    old, new = _rounds(21, seed=3), _rounds(21, seed=4)
    ratio, low, high = timing.speedup(old, new)
    assert low < 1 < high
