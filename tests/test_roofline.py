"""The machine's limits, the efficiency columns of a planted CSV row (hand-computed), the minimal
bytes formulas, the roofline plot and the memory-format trial."""

from __future__ import annotations

import time

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from lrbench.bench.matrix.cases import Case
from lrbench.bench.matrix.macs import case_min_bytes, pass_macs
from lrbench.bench.measure import limits
from lrbench.bench.measure.formats import fastest_format
from lrbench.bench.results import conditions, metrics, plots, records
from lrbench.cli import main


def test_limits_are_positive_and_stable_to_a_factor_of_three():
    # One thread: on a shared 2-core machine a 2-thread GEMM's best call still varies 4x.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            gemm = [limits.gemm_gmacs_per_s("cpu", torch.float32, budget_s=0.2, n=256)
                    for _ in range(2)]
            copy = [limits.copy_gb_per_s("cpu", budget_s=0.2, nbytes=32 * 2**20)
                    for _ in range(2)]
    finally:
        torch.set_num_threads(threads)
    for first, second in (gemm, copy):
        assert first > 0 and second > 0
        assert max(first, second) / min(first, second) < 3


class PlantedClock:
    """``time`` for :mod:`limits`: every reading of the clock is ``tick`` seconds after the last,
    so each timed call (one reading before it, one after) lasts exactly ``tick``."""

    def __init__(self, tick: float) -> None:
        self.tick, self.now = tick, 0.0

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now


@pytest.mark.parametrize(("probe_s", "n_max", "n"), [
    (1e-4, 1024, 1024),  # 256^3 in 0.1 ms: 1024^3 in 6.4 ms, well within 0.4 s / 4
    (3e-3, 1024, 512),   # 1024^3 would take 0.19 s > 0.1 s; 512^3 0.024 s
    (0.04, 1024, 256),   # half precision on a CPU without it: never below the probe's size
    (1.0, 64, 64),       # a size below the probe's is kept
])
def test_a_gemm_too_slow_for_the_budget_is_measured_smaller(probe_s, n_max, n):
    assert limits.fitted_n(probe_s, n_max, budget_s=0.4) == n


def test_the_default_gemm_size_shrinks_when_its_probe_is_slow(monkeypatch):
    # Every timed call takes 40 ms (the planted clock): the probe says 1024^3 would take 2.6 s, so
    # the rate is of 256^3 MACs a call, and the measurement stays within about the budget.
    monkeypatch.setattr(limits, "time", PlantedClock(0.04))
    with torch.no_grad():
        rate = limits.gemm_gmacs_per_s("cpu", torch.float32, budget_s=0.4)
    assert rate == pytest.approx(256**3 / 0.04 / 1e9, rel=1e-9)


def test_limits_units_with_a_planted_timer(monkeypatch):
    # Each call takes 100 us. A 64^3 GEMM is 262144 MACs (not 2x that: FLOPs); a 1x1 conv 64 -> 64
    # of a (2, 64, 8, 8) input is 2*8*8 pixels x 64 x 64 = 524288 MACs; a copy of 1 MiB reads
    # 1 MiB and writes 1 MiB (2 MiB, not 1).
    monkeypatch.setattr(limits, "time", PlantedClock(1e-4))
    with torch.no_grad():
        gemm = limits.gemm_gmacs_per_s("cpu", torch.float32, budget_s=0.01, n=64)
        conv = limits.conv_gmacs_per_s("cpu", torch.float32, budget_s=0.01, shape=(2, 64, 8, 8))
        copy = limits.copy_gb_per_s("cpu", budget_s=0.01, nbytes=2**20)
    assert gemm == pytest.approx(2.62144, rel=1e-6)  # 262144 MACs / 1e-4 s = 2.62e9 MAC/s
    assert conv == pytest.approx(5.24288, rel=1e-6)
    assert copy == pytest.approx(20.97152, rel=1e-6)  # 2 * 1048576 B / 1e-4 s = 2.10e10 B/s
    # measure() and the machine command carry the same numbers, in the same units; the peak is
    # the faster route (the convolution here), and the command names both
    monkeypatch.setitem(limits.GEMM_N, "cpu", 64)
    monkeypatch.setitem(limits.CONV_SHAPE, "cpu", (2, 64, 8, 8))
    monkeypatch.setitem(limits.COPY_BYTES, "cpu", 2**20)
    found = limits.measure.__wrapped__("cpu", "float32", 1, budget_s=0.01)
    row = found.as_row()
    assert row.pop("peak_route") == found.peak_route == "conv1x1"  # the row says which route
    assert row == pytest.approx({"peak_gmacs_per_s": 5.24288, "peak_gb_per_s": 20.97152}, rel=1e-6)
    assert dict(found.routes) == pytest.approx({"matmul": 2.62144, "conv1x1": 5.24288}, rel=1e-6)
    limits.measure.cache_clear()
    try:
        result = CliRunner().invoke(main, ["machine", "--dtype", "float32", "--threads", "1"])
    finally:
        limits.measure.cache_clear()  # the planted limits stay out of every later test
    assert result.exit_code == 0, result.output
    assert ("cpu float32: GEMM 5.2 GMAC/s (conv1x1; matmul 2.6), copy 21.0 GB/s, ridge point "
            "0.25 MAC/byte" in result.output), result.output


def test_a_gemm_route_that_cannot_run_the_dtype_is_left_out_and_named(monkeypatch):
    def no_kernel(device, dtype, budget_s):
        raise RuntimeError(f'"conv" not implemented for {dtype}\nmore text')

    monkeypatch.setitem(limits.ROUTES, "conv1x1", no_kernel)
    monkeypatch.setitem(limits.GEMM_N, "cpu", 64)
    monkeypatch.setitem(limits.COPY_BYTES, "cpu", 2**20)
    found = limits.measure.__wrapped__("cpu", "float32", 1, budget_s=0.01)
    assert [route for route, _ in found.routes] == ["matmul"] and found.peak_route == "matmul"
    assert found.peak_gmacs_per_s == dict(found.routes)["matmul"]
    monkeypatch.setitem(limits.ROUTES, "matmul", no_kernel)
    with pytest.raises(RuntimeError, match=r"no GEMM route runs float32 on cpu: .*matmul.*"
                                           r"not implemented for torch.float32'.*conv1x1"):
        limits.measure.__wrapped__("cpu", "float32", 1, budget_s=0.01)


def test_the_best_call_is_the_fastest_after_an_untimed_warm_up(monkeypatch):
    durations = iter([5.0, 0.3, 0.1, 0.2])  # the warm-up is the slowest; it is not counted
    clock = PlantedClock(0.0)

    def call():
        clock.now += next(durations)

    monkeypatch.setattr(limits, "time", clock)
    assert limits.best_seconds(call, lambda: None, budget_s=0.0, min_calls=3) == pytest.approx(0.1)


def test_measure_is_cached_and_restores_the_thread_count():
    before = torch.get_num_threads()
    found = limits.measure("cpu", "float32", 1, budget_s=0.05)
    assert torch.get_num_threads() == before
    assert found.threads == 1 and found.peak_gmacs_per_s > 0 and found.peak_gb_per_s > 0
    assert limits.measure("cpu", "float32", 1, budget_s=0.05) is found
    with pytest.raises(ValueError, match="dtype"):
        limits.measure("cpu", "nonsense", 1)


def _row(pass_, median_s, min_bytes, *, macs=2_000_000_000, status="ok"):
    return {"case_id": f"op:fused_cpu:B8-C16-8x8-k3-m4-s1:float32:cpu:{pass_}", "target": "op",
            "impl": "fused_cpu", "B": 8, "C": 16, "H": 8, "W": 8, "k": 3, "m": 4, "stride": 1,
            "dtype": "float32", "device": "cpu", "pass": pass_, "median_s": median_s,
            "macs": macs, "min_bytes": min_bytes, "peak_gmacs_per_s": 10.0,
            "peak_gb_per_s": 4.0, "baseline": "unfold", "status": status}


def test_efficiency_columns_of_a_planted_csv_row_are_exact(tmp_path):
    path = tmp_path / "results.csv"
    # fwd: 2e9 MACs in 0.5 s = 4 GMAC/s = 40% of 10; 2e9 MACs / 1e9 B = 2 MAC/B; the memory
    # roof 2 x 4 GB/s = 8 GMAC/s binds (< 10): 4 / 8 = 50% of the roofline.
    records.append_row(path, _row("fwd", 0.5, 1e9))
    # fwd_bwd: 3 x 2e9 = 6e9 MACs in 2 s = 3 GMAC/s = 30%; 6e9 / 1e8 B = 60 MAC/B; 60 x 4 = 240
    # > 10: the compute roof binds, 3 / 10 = 30% of the roofline.
    records.append_row(path, _row("fwd_bwd", 2.0, 1e8))
    records.append_row(path, _row("bwd", 1.0, 1e8, status="failed"))
    by = records.load(path).set_index("pass")
    expected = {  # achieved, % of peak, MAC/byte, roofline, bound, % of roofline
        "fwd": (4.0, 40.0, 2.0, 8.0, "memory", 50.0),
        "fwd_bwd": (3.0, 30.0, 60.0, 10.0, "compute", 30.0),
    }
    columns = ("achieved_gmacs_per_s", "pct_of_peak", "intensity_macs_per_byte",
               "roofline_gmacs_per_s", "roofline_bound", "pct_of_roofline")
    for pass_, values in expected.items():
        for column, value in zip(columns, values, strict=True):
            got = by.loc[pass_, column]
            assert got == (value if isinstance(value, str) else pytest.approx(value, rel=1e-12)), \
                (pass_, column, got)
    both, failed = by.loc["fwd_bwd"], by.loc["bwd"]
    assert pd.isna(failed["achieved_gmacs_per_s"]) and pd.isna(failed["pct_of_peak"])
    assert pd.isna(both["gmacs_per_s"])  # the forward-only column keeps its meaning


def test_rows_without_limits_have_empty_efficiency_columns():
    row = _row("fwd", 0.5, 1e9)
    del row["peak_gmacs_per_s"], row["peak_gb_per_s"]
    frame = metrics.derive(pd.DataFrame([row]).reindex(columns=records.COLUMNS))
    assert frame[["pct_of_peak", "roofline_gmacs_per_s", "pct_of_roofline"]].isna().all(axis=None)
    assert frame.loc[0, "roofline_bound"] == ""
    assert frame.loc[0, "intensity_macs_per_byte"] == pytest.approx(2.0)


def test_backward_convention_and_minimal_bytes_by_hand():
    assert pass_macs(5, "fwd") == 5 and pass_macs(5, "bwd") == 10
    assert pass_macs(5, "fwd_bwd") == 15 and pass_macs(5, "train") == 15
    with pytest.raises(ValueError, match="pass"):
        pass_macs(5, "sideways")
    case = Case(target="op", impl="unfold", B=2, C=16, H=8, W=8, k=3, m=4, stride=1,
                dtype="float32", device="cpu", pass_="fwd")  # G = 4
    # inputs x + query + key + prior = 2*16*64 + 2*4*64 + 2*4*64 + 4*9 = 3108; output 2048
    assert case_min_bytes(case) == (3108 + 2048) * 4
    backward = Case(**{**case.__dict__, "pass_": "fwd_bwd", "dtype": "float64"})
    assert case_min_bytes(backward) == (2 * 3108 + 2048) * 8
    conv = Case(target="conv3x3", impl="torch", B=2, C=16, H=8, W=8, k=3, m=1, stride=2,
                dtype="float32", device="cpu", pass_="fwd")
    assert case_min_bytes(conv) == (2 * 16 * 64 + 9 * 256 + 2 * 16 * 16) * 4


def test_roofline_plot_draws_the_roofs_and_the_rows_where_they_belong(tmp_path):
    path = tmp_path / "results.csv"
    records.append_row(path, _row("fwd", 0.5, 1e9))
    records.append_row(path, _row("fwd_bwd", 2.0, 1e8))
    frame = records.load(path)
    fig = plots.roofline_figure(frame)
    (ax,) = fig.axes
    # the roof: min(10 GMAC/s, 4 GB/s x intensity), bending at the ridge point 2.5 MAC/byte
    (roof,) = [line for line in ax.lines if line.get_label().startswith("_")
               and line.get_color() == "black"]
    x, y = roof.get_xdata(), roof.get_ydata()
    assert y == pytest.approx([min(10.0, 4.0 * v) for v in x], rel=1e-12)
    assert x.min() < 2.5 < x.max()  # both roofs are in the picture
    assert any(t.get_text() == "cpu float32: GEMM 10 GMAC/s, copy 4 GB/s" for t in ax.texts)
    # rows that record the route that gave the peak name it on the roof
    routed = frame.assign(peak_route="conv1x1")
    (ax,) = plots.roofline_figure(routed).axes
    assert any(t.get_text() == "cpu float32: GEMM 10 GMAC/s (conv1x1), copy 4 GB/s"
               for t in ax.texts)
    assert conditions.roofs_lines(routed) == [
        "- measured roofs, cpu float32: GEMM 10.0 GMAC/s (conv1x1), copy 4.0 GB/s"]
    (ax,) = plots.roofline_figure(frame).axes  # the first figure's axes again
    # each row at (MAC/byte, achieved GMAC/s): the planted rows' hand-computed values
    points = {c.get_label(): tuple(c.lines[0].get_xydata()[0]) for c in ax.containers}
    assert points == {"fused_cpu fwd": pytest.approx((2.0, 4.0)),
                      "fused_cpu fwd_bwd": pytest.approx((60.0, 3.0))}
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert plots.roofline(frame, tmp_path / "roofline.png")
    assert (tmp_path / "roofline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plots.roofline(frame.iloc[:0], tmp_path / "empty.png")
    assert not (tmp_path / "empty.png").exists()


def test_fastest_format_picks_the_faster_callable():
    def make(fmt):
        delay = 0.02 if fmt == torch.contiguous_format else 0.0
        return lambda: time.sleep(delay)

    name, fn = fastest_format(make, calls=1)
    assert name == "channels_last" and fn is not None
    only, _ = fastest_format(make, {"contiguous": torch.contiguous_format})
    assert only == "contiguous"


def test_machine_command_prints_the_limits():
    result = CliRunner().invoke(main, ["machine", "--dtype", "float32", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "cpu float32: GEMM" in result.output and "GB/s" in result.output
