"""The NATTEN timing reference: its clamped-window float64 semantics, checked by their defining
properties, and its rows skipped with a reason where natten or CUDA is absent."""

from __future__ import annotations

import pytest
import torch

from lrbench.bench.matrix.cases import Case
from lrbench.bench.measure.runner import Timing, run_matrix
from lrbench.bench.peers.natten import clamped_window_attention, load_natten, window_starts
from lrbench.bench.results import records


def _qkv(B=2, H=7, W=6, heads=3, d=4, dv=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen, dtype=torch.float64)
            for shape in ((B, H, W, heads, d), (B, H, W, heads, d), (B, H, W, heads, dv))]


def _attend(q, k, v, i, j, rows, cols, scale):
    """Plain softmax attention of pixel (i, j) over the pixels rows x cols."""
    keys = k[:, rows][:, :, cols].flatten(1, 2)  # (B, n, heads, d)
    values = v[:, rows][:, :, cols].flatten(1, 2)  # (B, n, heads, dv)
    logits = torch.einsum("bhd,bnhd->bhn", q[:, i, j], keys) * scale
    return torch.einsum("bhn,bnhd->bhd", torch.softmax(logits, dim=-1), values)  # (B, heads, dv)


def test_window_starts_are_clamped_into_the_image():
    assert window_starts(7, 3).tolist() == [0, 0, 1, 2, 3, 4, 4]
    assert window_starts(5, 5).tolist() == [0, 0, 0, 0, 0]


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_interior_pixels_attend_to_their_centred_window(kernel_size):
    q, k, v = _qkv()
    y = clamped_window_attention(q, k, v, kernel_size)
    r, scale = (kernel_size - 1) // 2, q.shape[-1] ** -0.5
    for i, j in [(r, r), (3, 3), (7 - 1 - r, 6 - 1 - r)]:
        rows, cols = list(range(i - r, i + r + 1)), list(range(j - r, j + r + 1))
        torch.testing.assert_close(y[:, i, j], _attend(q, k, v, i, j, rows, cols, scale))


def test_border_pixels_attend_to_the_clamped_window():
    q, k, v = _qkv()
    y = clamped_window_attention(q, k, v, 3, scale=0.7)
    # Corner (0, 0): rows 0..2, cols 0..2, not the masked 2 x 2 neighbourhood of our op.
    torch.testing.assert_close(y[:, 0, 0], _attend(q, k, v, 0, 0, [0, 1, 2], [0, 1, 2], 0.7))
    # Last row, middle column: rows 4..6 (H = 7), cols j-1..j+1.
    torch.testing.assert_close(y[:, 6, 3], _attend(q, k, v, 6, 3, [4, 5, 6], [2, 3, 4], 0.7))


def test_a_corner_depends_on_its_whole_clamped_window_only():
    q, k, v = _qkv()
    y = clamped_window_attention(q, k, v, 3)
    inside, outside = v.clone(), v.clone()
    inside[:, 2, 2] += 1.0  # in the corner's clamped window, outside its masked one
    outside[:, 3, 0] += 1.0  # beyond the clamped window
    assert not torch.allclose(clamped_window_attention(q, k, inside, 3)[:, 0, 0], y[:, 0, 0])
    torch.testing.assert_close(clamped_window_attention(q, k, outside, 3)[:, 0, 0], y[:, 0, 0])


def test_an_image_smaller_than_the_window_is_refused():
    q, k, v = _qkv(H=4, W=6)
    with pytest.raises(ValueError, match="kernel_size 5 exceeds the image 4 x 6"):
        clamped_window_attention(q, k, v, 5)


@pytest.mark.skipif(load_natten() is not None and torch.cuda.is_available(),
                    reason="natten and CUDA are here: the rows run")
def test_natten_rows_are_skipped_with_the_reason(tmp_path):
    cases = [Case(target="natten", impl="natten", B=1, C=16, H=7, W=7, k=7, m=8, stride=1,
                  dtype="float32", device=device, pass_=pass_)
             for device in ("cpu", "cuda") for pass_ in ("fwd", "fwd_bwd")]
    run_matrix(cases, tmp_path, timing=Timing(min_rounds=1, max_time=0.001))
    rows = records.load(tmp_path)
    assert set(rows["status"]) == {"skipped"}
    assert rows["case_id"].str.startswith("natten:natten:B1-C16-7x7-k7-m8").all()
    reasons = " | ".join(rows["reason"])
    if load_natten() is None:
        assert (rows["reason"].str.contains(r"natten is not installed \(pip install 'lrbench\[peers\]'")
                .all())
    assert "NATTEN's fused kernels run on CUDA only" in reasons  # the cpu rows
    if not torch.cuda.is_available():
        assert "no cuda device on this machine" in reasons


@pytest.mark.gpu
@pytest.mark.skipif(load_natten() is None, reason="natten is not installed")
def test_natten_passes_its_gate_on_cuda():
    from lrbench.bench.peers.natten import gate_result

    case = Case(target="natten", impl="natten", B=1, C=16, H=9, W=9, k=5, m=8, stride=1,
                dtype="float32", device="cuda", pass_="fwd")
    result = gate_result(case)
    assert result.ok and result.err_over_limit <= 1, result.failures
