"""The reference itself against SPEC section 1, written as plain Python loops over scalars.

If every implementation agreed with a wrong reference, the correctness tests would all pass;
this test checks the oracle against the definition, one output element at a time.
"""

from __future__ import annotations

import math

import pytest
import torch

from lrbench import local_relation
from lrbench.inputs import Shape, make_inputs

PHI = {
    "sqdiff": lambda q, k: -((q - k) ** 2),
    "absdiff": lambda q, k: -abs(q - k),
    "mult": lambda q, k: q * k,
}


def brute_force(x, query, key, prior, k, s, phi):
    B, C, H, W = x.shape
    G = key.shape[1]
    m = math.ceil(C / G)
    r = (k - 1) // 2
    Ho, Wo = (H - 1) // s + 1, (W - 1) // s + 1
    y = torch.zeros(B, C, Ho, Wo, dtype=torch.float64)
    for b in range(B):
        for c in range(C):
            g = c // m
            for i in range(Ho):
                for j in range(Wo):
                    logits, values = [], []
                    for dy in range(-r, r + 1):
                        for dx in range(-r, r + 1):
                            py, px = i * s + dy, j * s + dx
                            if not (0 <= py < H and 0 <= px < W):
                                continue  # excluded from the softmax, not zero-padded
                            q, kk = query[b, g, i, j].item(), key[b, g, py, px].item()
                            logits.append(PHI[phi](q, kk) + prior[g, dy + r, dx + r].item())
                            values.append(x[b, c, py, px].item())
                    top = max(logits)
                    e = [math.exp(v - top) for v in logits]
                    y[b, c, i, j] = sum(w * v for w, v in zip(e, values, strict=True)) / sum(e)
    return y


@pytest.mark.parametrize("phi", list(PHI))
@pytest.mark.parametrize(
    "shape",
    [
        Shape(B=1, C=5, H=4, W=6, k=3, m=2, stride=1),  # C not divisible by m
        Shape(B=2, C=3, H=5, W=3, k=5, m=3, stride=2),  # G = 1, borders on every side
        Shape(B=1, C=2, H=2, W=3, k=7, m=1, stride=1),  # image smaller than the kernel
    ],
    ids=Shape.label,
)
@pytest.mark.parametrize("impl", ["reference", "unfold"])
def test_reference_matches_the_definition(impl, shape, phi):
    t = make_inputs(shape, dtype=torch.float64, seed=3)
    expected = brute_force(*t, shape.k, shape.stride, phi)
    got = local_relation(*t, kernel_size=shape.k,
                         stride=shape.stride, phi=phi, impl=impl)
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-12)


def test_zero_padding_would_be_caught():
    """A border output differs from what zero-padded neighbours would give: the mask matters."""
    shape = Shape(B=1, C=2, H=4, W=4, k=3, m=2, stride=1)
    t = make_inputs(shape, dtype=torch.float64, seed=5)
    y = local_relation(*t, kernel_size=3, impl="reference")
    # Zero-padded variant of the corner pixel: 5 out-of-image neighbours with key 0 and value 0.
    q = t.query[0, 0, 0, 0].item()
    logits, values = [], []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            inside = dy >= 0 and dx >= 0
            kk = t.key[0, 0, dy, dx].item() if inside else 0.0
            logits.append(-((q - kk) ** 2) + t.prior[0, dy + 1, dx + 1].item())
            values.append(t.x[0, 0, dy, dx].item() if inside else 0.0)
    e = [math.exp(v) for v in logits]
    zero_padded = sum(w * v for w, v in zip(e, values, strict=True)) / sum(e)
    assert abs(y[0, 0, 0, 0].item() - zero_padded) > 1e-6
