"""The CUDA timer on a fake device: every round bracketed by events, synchronised, flushed between."""

from __future__ import annotations

import pytest
import torch

from lrbench.bench.measure import gputimer
from lrbench.bench.measure.gputimer import GpuTiming, time_cuda


class FakeEvent:
    def __init__(self, device: FakeDevice) -> None:
        self.device = device
        self.at: float | None = None

    def record(self) -> None:
        self.at = self.device.now
        self.device.log.append(("record", self))

    def elapsed_time(self, end: FakeEvent) -> float:
        # As with CUDA events: both recorded, and the device synchronised since, or no answer.
        assert self.at is not None and end.at is not None, "event read before it was recorded"
        last_sync = max((i for i, entry in enumerate(self.device.log) if entry[0] == "sync"),
                        default=-1)
        recorded = max(self.device.log.index(("record", e)) for e in (self, end))
        assert last_sync > recorded, "event read before the device was synchronised"
        self.device.log.append(("read", self))
        return (end.at - self.at) * 1e3  # milliseconds


class FakeDevice:
    """A device clock that advances only while the timed callable runs."""

    def __init__(self, durations: list[float]) -> None:
        self.now = 0.0
        self.durations = iter(durations)
        self.log: list[tuple] = []

    def event(self) -> FakeEvent:
        return FakeEvent(self)

    def flush(self) -> None:
        self.log.append(("flush",))

    def synchronize(self) -> None:
        self.log.append(("sync",))

    def call(self) -> None:
        self.log.append(("call",))
        self.now += next(self.durations)


def kinds(log):
    return [entry[0] for entry in log]


def test_every_round_is_flushed_bracketed_and_read_after_one_sync():
    warmup = [0.010, 0.010]
    # Every statistic differs from every other (median 3, mean 4, min 1, IQR 2, stddev 3.54 ms),
    # so a column filled from the wrong statistic fails.
    rounds = [0.001, 0.004, 0.002, 0.003, 0.010]
    device = FakeDevice(warmup + rounds)
    stats = time_cuda(device.call, GpuTiming(min_rounds=5, max_time=0.001, warmup=2),
                      device=device)
    log = kinds(device.log)
    one_round = ["flush", "record", "call", "record"]
    timed_part = log[len(warmup) * 4 + 1 + len(warmup):]  # after warm-up, its sync and reads
    assert log[:len(warmup) * 4] == one_round * len(warmup)
    assert timed_part[:len(rounds) * 4] == one_round * len(rounds)
    assert timed_part[len(rounds) * 4] == "sync"
    assert timed_part[len(rounds) * 4 + 1:] == ["read"] * len(rounds)
    assert log.count("call") == len(warmup) + len(rounds)
    assert stats["rounds"] == len(rounds) and stats["iterations"] == 1
    assert stats["median_s"] == pytest.approx(0.003)
    assert stats["min_s"] == pytest.approx(0.001)
    assert stats["mean_s"] == pytest.approx(0.004)
    assert stats["iqr_s"] == pytest.approx(0.002)  # quartiles 0.002 and 0.004
    assert stats["stddev_s"] == pytest.approx(12.5**0.5 * 1e-3)  # squares 9+4+1+0+36 over 4
    assert stats["timer"] == gputimer.CUDA_TIMER


def test_the_flush_comes_between_one_rounds_end_and_the_next_rounds_start():
    device = FakeDevice([0.002] * 8)
    time_cuda(device.call, GpuTiming(min_rounds=6, max_time=0.001, warmup=2), device=device)
    calls = [i for i, entry in enumerate(device.log) if entry[0] == "call"]
    for before, after in zip(calls, calls[1:], strict=False):
        between = kinds(device.log[before:after])
        assert between.count("flush") == 1, between
        assert between.index("flush") > between.index("record")  # after the end event


def test_rounds_fill_the_time_budget_within_bounds():
    # 2 ms per call, 20 ms budget: 10 rounds; capped by max_rounds; at least min_rounds.
    cases = [(GpuTiming(min_rounds=3, max_time=0.02, warmup=1), 10),
             (GpuTiming(min_rounds=3, max_time=0.02, warmup=1, max_rounds=4), 4),
             (GpuTiming(min_rounds=7, max_time=0.002, warmup=1), 7)]
    for timing, expected in cases:
        device = FakeDevice([0.002] * 100)
        assert time_cuda(device.call, timing, device=device)["rounds"] == expected


def test_a_timer_that_reads_before_synchronising_is_caught_by_the_fake():
    device = FakeDevice([0.001] * 2)
    start, end = device.event(), device.event()
    start.record()
    device.call()
    end.record()
    with pytest.raises(AssertionError, match="synchronised"):
        start.elapsed_time(end)


@pytest.mark.parametrize("kwargs,needle", [
    ({"min_rounds": 0}, "min_rounds"), ({"max_time": 0}, "max_time"), ({"warmup": 0}, "warmup"),
    ({"min_rounds": 5, "max_rounds": 2}, "max_rounds"),
])
def test_bad_knobs_name_the_argument(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        GpuTiming(**kwargs)


# No GPU has more FP32 lanes per streaming multiprocessor (NVIDIA: 128 since Ampere's GA10x, 64
# on the A100; AMD: 64 per compute unit, issued twice) or clocks faster than 3 GHz (the H100 and
# H200 boost to 1.98 GHz): so SMs x 128 x 2 FLOPs x 3 GHz is above any device's IEEE float32 peak.
FP32_LANES_PER_SM = 128
CLOCK_CEILING_HZ = 3.0e9


def fp32_peak_ceiling(device: int = 0) -> float:
    """FLOP/s that ``device`` cannot exceed in IEEE float32 (one FMA = 2 FLOPs; no TF32)."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return sms * FP32_LANES_PER_SM * 2 * CLOCK_CEILING_HZ


def test_the_peak_ceiling_is_above_the_h100s_vendor_figure(monkeypatch):
    class H100:  # 132 SMs; NVIDIA's figure for the SXM part: 67 TFLOPS float32
        multi_processor_count = 132

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=0: H100)
    ceiling = fp32_peak_ceiling()
    assert 67e12 < ceiling < 2 * 67e12  # above the peak, and not so far above it as to be vacuous


@pytest.mark.gpu
def test_real_cuda_events_time_a_matmul():
    n = 2048
    a = torch.randn(n, n, device="cuda")
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # IEEE float32: no TF32 tensor cores
    try:
        stats = time_cuda(lambda: a @ a, GpuTiming(min_rounds=5, max_time=0.05))
    finally:
        torch.set_float32_matmul_precision(previous)
    # The kernel cannot beat the device's peak: 2 n^3 FLOPs (17.2 GFLOP) take at least
    # 2 n^3 / peak (about 170 us on an H100 or H200, against a few us for a launch alone).
    floor_s = 2 * n**3 / fp32_peak_ceiling()
    assert stats["rounds"] >= 5
    assert floor_s <= stats["min_s"] <= stats["median_s"] < 1.0, (floor_s, stats)


# ------------------------------------------------------------------ the runner picks the timer
def _case(device: str):
    from lrbench.bench.matrix.cases import Case

    return Case(target="op", impl="unfold", B=1, C=4, H=5, W=5, k=3, m=2, stride=1,
                dtype="float32", device=device, pass_="fwd")


class FakeBenchmark:
    """pytest-benchmark's fixture, as far as the runner uses it."""

    def __init__(self) -> None:
        self.calls = 0

        class Stats:  # a distinct value per statistic: a swapped column fails
            median, iqr, stddev, min, mean = 0.0011, 0.0002, 0.0003, 0.0009, 0.0012
            rounds = 5
            data = [0.0013, 0.0009, 0.0011, 0.0012, 0.001]  # per call, in the order timed

        self.stats = type("Outer", (), {"stats": Stats(), "iterations": 3})()

    def __call__(self, fn):
        self.calls += 1
        fn()


def test_the_runner_times_cuda_cases_with_events_and_the_runs_knobs(tmp_path):
    from lrbench.bench.measure.runner import MatrixPlugin, Timing

    seen = {}

    def fake_time_cuda(fn, knobs):
        seen["knobs"] = knobs
        fn()
        return {"median_s": 0.002, "timer": gputimer.CUDA_TIMER}

    plugin = MatrixPlugin([], tmp_path / "r.csv", timing=Timing(min_rounds=7, max_time=0.3),
                          time_cuda=fake_time_cuda)
    benchmark, calls = FakeBenchmark(), []
    stats = plugin.time_fn(_case("cuda"), benchmark)(lambda: calls.append(1))
    assert stats["timer"] == gputimer.CUDA_TIMER and calls == [1]
    assert seen["knobs"] == GpuTiming(min_rounds=7, max_time=0.3, warmup=1)
    assert benchmark.calls == 0  # pytest-benchmark's host clock is not used on the GPU


def test_the_runner_times_cpu_cases_with_pytest_benchmark_as_before(tmp_path):
    from lrbench.bench.measure.runner import MatrixPlugin

    def must_not_run(fn, knobs):
        raise AssertionError("the CUDA timer timed a CPU case")

    plugin = MatrixPlugin([], tmp_path / "r.csv", time_cuda=must_not_run)
    benchmark = FakeBenchmark()
    stats = plugin.time_fn(_case("cpu"), benchmark)(lambda: None)
    assert benchmark.calls == 1
    assert stats == {"median_s": 0.0011, "iqr_s": 0.0002, "stddev_s": 0.0003, "min_s": 0.0009,
                     "mean_s": 0.0012, "rounds": 5, "iterations": 3,
                     "timer": gputimer.CPU_TIMER,
                     "rounds_s": [0.0013, 0.0009, 0.0011, 0.0012, 0.001]}
