"""Running the matrix: gate, time (pytest-benchmark on CPU, CUDA events on a GPU), measure memory,
record one row per case.

``run_matrix`` calls ``pytest.main`` on :mod:`lrbench.bench.measure.bench_matrix` with a
:class:`MatrixPlugin` that parametrizes its one test over the cases. pytest-benchmark calibrates
the rounds, excludes warm-up, computes the statistics and writes its JSON into the run directory;
the plugin writes each case's CSV row as soon as the case finishes, so a killed run loses at most
the case in flight and ``--resume`` carries on from there. A :class:`~lrbench.bench.measure.stopping.
StopRequest` (set by a signal handler) ends the session between cases. CUDA cases are timed instead by
:func:`lrbench.bench.measure.gputimer.time_cuda` (events around each round, an L2 flush between rounds)
with the same knobs; each row's ``timer`` column says which clock timed it.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
import random
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import torch

from lrbench import registry
from lrbench.bench.matrix.cases import Case
from lrbench.bench.matrix.macs import case_macs, case_min_bytes
from lrbench.bench.measure import compiling, gputimer, limits, targets
from lrbench.bench.measure.gate import Gate
from lrbench.bench.measure.machine import cpu_state, gpu_state, load_now, machine_info, threads_now
from lrbench.bench.measure.memory import peak_extra_bytes
from lrbench.bench.measure.stopping import StopRequest
from lrbench.bench.results import metrics, records, runlock
from lrbench.bench.results.manifest import Manifest, ShardPlan
from lrbench.files import atomic_write

PLUGIN_KEY = pytest.StashKey["MatrixPlugin"]()
BENCH_MODULE = Path(__file__).with_name("bench_matrix.py")
REASON_CHARS = 300
# A further pass writes its rounds into the rows this often (seconds): one rewrite of the CSV for
# the cases of a few seconds, not one a case; a kill loses at most these seconds of that pass.
FLUSH_S = 5.0
EXTRA_INFO = ("macs", "gmacs_per_s", "peak_bytes", "output_bytes", "max_abs_err", "oracle",
              "threads", "load_1m")
# Substrings of the allocators' out-of-memory messages (CUDA caching allocator, CPU allocator).
OOM_MARKERS = ("out of memory", "can't allocate memory")

# time_fn(fn) -> the statistics columns of fn, in seconds; ``rounds_s``: each round's seconds per
# call, a list (the row stores it as text, records.format_rounds)
TimeFn = Callable[[Callable[[], object]], dict]
# on_case(index, total, row): called after each row is written (and after each further pass of a
# case, with a short row: case_id, status, median_s of that pass, timing_pass)
OnCase = Callable[[int, int, dict], None]


@dataclass(frozen=True)
class Timing:
    """pytest-benchmark's knobs: at least ``min_rounds`` rounds, about ``max_time`` seconds per
    case (calibrated), ``warmup_iterations`` untimed calls before the timed rounds; a round lasts
    at least ``min_time`` seconds (a faster call is repeated within the round, pytest-benchmark's
    iterations).

    ``passes``: how many times the run goes over its matrix to time it. The first pass gates,
    times and records every case; each further pass (in an order of its own, shuffled) builds each
    ``ok`` case afresh and times it again for about ``max_time``, its rounds added to the row as a
    pass of their own (:func:`lrbench.bench.results.records.add_pass`). Passes a while apart meet
    the machine in different states, so their spread shows the drift between runs that the rounds
    of one pass never show; ``lrbench compare`` makes the pass its unit.

    ``limits``: measure the machine's roofs (:func:`lrbench.bench.measure.limits.measure`, 1 to
    2 s per device, dtype and thread count) for the roofline columns; off, those stay empty
    (``lrbench ab``'s side runs, which compare times only)."""

    min_rounds: int = 3
    max_time: float = 0.05
    warmup_iterations: int = 1
    min_time: float = 5e-6  # pytest-benchmark's default
    passes: int = 1
    limits: bool = True

    def __post_init__(self) -> None:
        if self.min_rounds < 1:
            raise ValueError(f"min_rounds must be >= 1, got {self.min_rounds}")
        if self.passes < 1:
            raise ValueError(f"passes must be >= 1, got {self.passes}")
        if not self.max_time > 0:
            raise ValueError(f"max_time must be > 0 seconds, got {self.max_time}")

    def pytest_args(self) -> list[str]:
        return [
            "--benchmark-enable",
            f"--benchmark-min-rounds={self.min_rounds}",
            f"--benchmark-max-time={self.max_time}",
            f"--benchmark-min-time={self.min_time}",
            "--benchmark-warmup=on",
            f"--benchmark-warmup-iterations={self.warmup_iterations}",
            "--benchmark-disable-gc",
            "--benchmark-sort=name",
            "--benchmark-columns=median,iqr,stddev,min,rounds,iterations",
        ]


def describe(err: BaseException) -> str:
    """One line for the ``reason`` column; out-of-memory errors say so first."""
    text = " ".join(str(err).split())
    prefix = "out of memory: " if any(m in text.lower() for m in OOM_MARKERS) else ""
    return (prefix + f"{type(err).__name__}: {text}")[:REASON_CHARS]


def _stats_row(stats) -> dict:
    """pytest-benchmark's statistics; ``rounds_s`` its rounds in the order timed. Its ``data``
    holds each round's time already divided by the iterations of the round
    (``Metadata.update``: ``duration / self.iterations``), i.e. seconds per call, as the median."""
    return {"median_s": stats.median, "iqr_s": stats.iqr, "stddev_s": stats.stddev,
            "min_s": stats.min, "mean_s": stats.mean, "rounds": stats.rounds,
            "rounds_s": list(stats.data)}


def execute_case(case: Case, time_fn: TimeFn, gate: Callable, *, roofs: bool = True) -> dict:
    """Gate, build, time and measure one case; always returns its row (never raises for the
    case's own failures; ``KeyboardInterrupt`` passes through).

    Args:
        case: the case.
        time_fn: times a zero-argument callable, returning the statistics columns.
        gate: ``gate(case) -> GateResult`` (see :class:`lrbench.bench.measure.gate.Gate`).
        roofs: measure the machine's limits for the roofline columns (:attr:`Timing.limits`).
    """
    macs, macs_source = case_macs(case)
    min_bytes = case_min_bytes(case)
    row = {"case_id": case.case_id, **case.as_row(), **machine_info(), "threads": threads_now(),
           "load_1m": load_now(), **cpu_state(),
           "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
           "macs": macs, "macs_source": macs_source, "min_bytes": min_bytes}
    reasons = targets.why_not(case)
    if reasons:
        return {**row, "status": "skipped", "reason": "; ".join(reasons)[:REASON_CHARS]}
    try:  # the machine's roofs, measured once per device, dtype and thread count
        if roofs:
            row.update(limits.measure(case.device, case.dtype, row["threads"]).as_row())
    except Exception as err:  # a roof that cannot be measured leaves its columns empty
        row["reason"] = f"limits not measured: {describe(err)}"[:REASON_CHARS]
    try:
        variants = compiling.variants_for(case)
    except Exception as err:
        return {**row, "status": "error", "reason": "torch.compile: " + describe(err)}
    with registry.registered(*variants):  # a compiled case: the gate checks what is timed
        return _gate_and_time(case, row, time_fn, gate)


def retime_case(case: Case, time_fn: TimeFn) -> list[float]:
    """Build ``case`` afresh, call it once untimed and time it: the rounds of a further pass
    (seconds per call). The case passed the accuracy gate in the run's first pass."""
    with registry.registered(*compiling.variants_for(case)):
        if case.compiled:
            prepared, _ = compiling.build_and_first_call(lambda: targets.build(case))
        else:
            prepared = targets.build(case)
            prepared.fn()
        try:
            return [float(t) for t in time_fn(prepared.fn).get("rounds_s", ())]
        finally:
            del prepared
            gc.collect()
            if case.device == "cuda":
                torch.cuda.empty_cache()


def _gate_and_time(case: Case, row: dict, time_fn: TimeFn, gate: Callable) -> dict:
    try:
        verdict = gate(case)
    except Exception as err:  # the implementation raised: its reason goes in the row
        return {**row, "status": "error", "reason": "accuracy gate: " + describe(err)}
    row.update(verdict.row())
    if not verdict.ok:
        return {**row, "status": "failed",
                "reason": f"accuracy gate vs {verdict.oracle}: {verdict.reason}"[:REASON_CHARS]}
    prepared = None
    try:
        if case.compiled:  # compiled from scratch: build and first call, never in the median
            prepared, row["compile_s"] = compiling.build_and_first_call(
                lambda: targets.build(case))
        else:
            prepared = targets.build(case)
            prepared.fn()  # warm-up call, outside the timer (first-use builds, caches)
        timed = time_fn(prepared.fn)
        row.update(timed, rounds_s=records.format_rounds(timed.get("rounds_s", ())),
                   load_1m_after=load_now())
        if case.device == "cuda":  # clocks, power, temperature right after the timed rounds
            row.update(gpu_state())
        row["peak_bytes"] = peak_extra_bytes(prepared.fn, case.device)
        row["output_bytes"] = prepared.output_bytes
        row["memory_format"] = prepared.memory_format
    except Exception as err:
        return {**row, "status": "error", "reason": describe(err)}
    finally:
        del prepared
        gc.collect()
        if case.device == "cuda":
            torch.cuda.empty_cache()
    return {**row, "status": "ok", "reason": row.get("reason", "")}


@dataclass
class MatrixPlugin:
    """pytest plugin: parametrizes ``bench_matrix.test_case`` over ``cases`` and records rows."""

    cases: list[Case]
    csv_path: Path
    on_case: OnCase | None = None
    statuses: Counter = field(default_factory=Counter)
    gate: Gate = field(default_factory=Gate)
    timing: Timing = field(default_factory=lambda: Timing())
    # time_cuda(fn, GpuTiming) -> statistics columns: CUDA cases' timer (injectable for tests)
    time_cuda: Callable[..., dict] = gputimer.time_cuda
    stop: StopRequest = field(default_factory=StopRequest)  # read between cases
    pass_index: int = 1  # above 1: a further pass, timing rows already recorded (Timing.passes)
    pending: dict[str, list[float]] = field(default_factory=dict)  # a further pass's, unwritten
    flushed_at: float = field(default_factory=time.monotonic)
    json_path: Path | None = None  # pytest-benchmark's JSON of the session, once written

    def time_fn(self, case: Case, benchmark) -> TimeFn:
        """The timer of ``case``: CUDA events on a GPU, pytest-benchmark's perf_counter on CPU."""
        if case.device == "cuda":
            knobs = gputimer.GpuTiming(min_rounds=self.timing.min_rounds,
                                       max_time=self.timing.max_time,
                                       warmup=max(self.timing.warmup_iterations, 1))
            return lambda fn: self.time_cuda(fn, knobs)

        def time_cpu(fn):
            benchmark(fn)
            return {**_stats_row(benchmark.stats.stats), "iterations": benchmark.stats.iterations,
                    "timer": gputimer.CPU_TIMER}

        return time_cpu

    def pytest_configure(self, config) -> None:
        config.stash[PLUGIN_KEY] = self

    def pytest_generate_tests(self, metafunc) -> None:
        if "lrbench_case" in metafunc.fixturenames:
            metafunc.parametrize("lrbench_case", self.cases,
                                 ids=[case.case_id for case in self.cases])

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        yield
        if self.stop.requested:  # pytest ends the session after this item, before the next
            item.session.shouldstop = self.stop.reason()

    def run(self, case: Case, benchmark) -> None:
        if self.stop.requested:  # asked while pytest set this case up: leave it pending
            pytest.skip(f"not started: {self.stop.reason()}")
        if self.pass_index > 1:
            self.run_pass(case, benchmark)
            return
        self.stop.started_at, self.stop.in_flight = time.monotonic(), case
        try:
            row = execute_case(case, self.time_fn(case, benchmark), self.gate,
                               roofs=self.timing.limits)
            if row["status"] == "ok":  # beside pytest-benchmark's statistics in its JSON
                derived = metrics.derive(pd.DataFrame([row]).reindex(columns=records.COLUMNS))
                info = {**row, **derived.iloc[0].dropna().to_dict()}
                benchmark.extra_info.update({key: info[key] for key in EXTRA_INFO if key in info})
            with self.stop.rows:  # a watchdog that gave this case up has written its row
                if self.stop.given_up:
                    return
                records.append_row(self.csv_path, row)
                self.stop.in_flight = None
        finally:
            self.stop.in_flight = None
        self.statuses[row["status"]] += 1
        if self.on_case is not None:
            self.on_case(sum(self.statuses.values()), len(self.cases), row)
        if row["status"] != "ok":
            pytest.skip(f"{row['status']}: {row['reason']}")

    def run_pass(self, case: Case, benchmark) -> None:
        """A further pass over ``case``: time it again; its rounds go to its row with the
        others' of the last few seconds (:meth:`flush`). Its row is already whole, so a stop in
        the middle leaves it as it was (no ``stopped:`` row: the case is not marked in flight)."""
        try:
            rounds = retime_case(case, self.time_fn(case, benchmark))
        except Exception as err:  # the row keeps the passes it has, and says nothing: log it
            self.statuses["error"] += 1
            pytest.skip(f"pass {self.pass_index}: {describe(err)}")
        self.pending[case.case_id] = rounds
        if time.monotonic() - self.flushed_at >= FLUSH_S:
            self.flush()
        self.statuses["ok"] += 1
        if self.on_case is not None:
            row = {"case_id": case.case_id, "status": "ok", "timing_pass": self.pass_index,
                   "median_s": float(pd.Series(rounds).median())}
            self.on_case(sum(self.statuses.values()), len(self.cases), row)

    def flush(self) -> None:
        """Write the further pass's rounds gathered since the last flush into their rows (one
        rewrite of the CSV for all of them)."""
        if self.pending:
            records.add_passes(self.csv_path, self.pending)
            self.pending = {}
        self.flushed_at = time.monotonic()

    def pytest_sessionfinish(self, session) -> None:
        try:
            self.flush()
        except (KeyError, ValueError) as err:  # the rows stay as they were; the log says why
            print(f"pass {self.pass_index}: rounds not written: {describe(err)}", file=sys.stderr)


@dataclass
class RunSummary:
    """What one ``run_matrix`` call did."""

    csv_path: Path
    json_path: Path | None
    log_path: Path
    total: int
    already_done: int
    statuses: Counter
    interrupted: bool = False


def run_matrix(cases: list[Case], out_dir: str | Path, *, resume: bool = False,
               timing: Timing | None = None, on_case: OnCase | None = None,
               label: str = "run", stop: StopRequest | None = None) -> RunSummary:
    """Run ``cases``, writing ``out_dir/results.csv`` row by row and pytest-benchmark's JSON.

    The run holds ``out_dir`` (:mod:`lrbench.bench.results.runlock`: a second run into it is refused
    with ``FolderInUse``) and records its planned case ids in ``out_dir/plan.json``.

    Args:
        cases: the cases (see :func:`lrbench.bench.matrix.cases.expand` and ``shard``).
        out_dir: run directory; created if needed.
        resume: keep the existing CSV and skip the cases it already has; otherwise a
            previous CSV in ``out_dir`` is replaced.
        timing: pytest-benchmark's knobs.
        on_case: progress callback, ``on_case(index, total, row)``.
        label: goes into the JSON's file name (e.g. the preset and shard).
        stop: once requested (e.g. by a signal handler), the run ends after the case in flight.

    Returns:
        A :class:`RunSummary`; ``interrupted`` is set when the run was stopped (Ctrl-C, or
        ``stop``).
    """
    with runlock.hold(out_dir), _frozen_heap():
        Manifest(executor="in-process", label=label, shards=[
            ShardPlan(index=1, folder=".", case_ids=[c.case_id for c in cases])]).save(out_dir)
        return _run_held(cases, out_dir, resume=resume, timing=timing, on_case=on_case,
                         label=label, stop=stop or StopRequest())


@contextlib.contextmanager
def _frozen_heap():
    """The objects alive when the run starts (torch's, pytest's, the caller's) moved out of the
    garbage collector's sight for the run's duration (:func:`gc.freeze`), and back after it.

    Each case ends with a ``gc.collect()`` that frees its tensors before the next one is built,
    and pytest collects five times at each pass's end: with torch imported, a full collection
    walks a few hundred thousand objects (0.15 to 0.3 s each here, 1 to 2 s a pass). Frozen, it
    walks only what the run made since."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _run_held(cases: list[Case], out_dir: str | Path, *, resume: bool, timing: Timing | None,
              on_case: OnCase | None, label: str, stop: StopRequest) -> RunSummary:
    timing = timing or Timing()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, log_path = records.results_path(out), out / "pytest.log"
    if not resume and csv_path.exists():
        csv_path.unlink()
    done = records.done_ids(csv_path)
    todo = [case for case in cases if case.case_id not in done]
    summary = RunSummary(csv_path=csv_path, json_path=None, log_path=log_path, total=len(cases),
                         already_done=len(cases) - len(todo), statuses=Counter())
    # A fresh run replaces its JSON; each resumed piece gets its own.
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    name = f"{label}-resumed-{stamp}" if done else label
    if todo:
        plugin = MatrixPlugin(todo, csv_path, on_case, timing=timing, stop=stop)
        code = _session(plugin, out / "pytest-benchmark" / f"{name}.json", log_path, timing)
        summary.json_path = plugin.json_path
        summary.statuses = plugin.statuses
        summary.interrupted = code == pytest.ExitCode.INTERRUPTED
    for index in range(2, timing.passes + 1):  # resumed rows get the passes they lack, too
        if summary.interrupted or stop.requested:
            break
        short = _short_of(cases, csv_path, index, random.Random(index))
        if not short:
            continue
        plugin = MatrixPlugin(short, csv_path, on_case, timing=timing, stop=stop,
                              pass_index=index)
        code = _session(plugin, out / "pytest-benchmark" / f"{name}-pass{index}.json", log_path,
                        timing)
        summary.interrupted = code == pytest.ExitCode.INTERRUPTED
    return summary


def _short_of(cases: list[Case], csv_path: Path, index: int, rng: random.Random) -> list[Case]:
    """The cases whose ``ok`` rows have fewer than ``index`` passes, in an order of the pass's own
    (so that a case's place in the run differs from pass to pass)."""
    if not csv_path.exists():
        return []
    rows = records.load(csv_path)
    ok = rows[rows["status"] == "ok"]
    passes = {case_id: len(records.parse_passes(cell))
              for case_id, cell in zip(ok["case_id"], ok["rounds_s"], strict=True)}
    short = [case for case in cases if 0 < passes.get(case.case_id, 0) < index]
    rng.shuffle(short)
    return short


def _session(plugin: MatrixPlugin, json_path: Path, log_path: Path, timing: Timing):
    """One pytest session over ``plugin``'s cases, its output in ``log_path``; pytest-benchmark's
    JSON (when it timed anything) to ``json_path``, recorded as ``plugin.json_path``. Returns
    pytest's exit code (OK or INTERRUPTED; any other raises)."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    # pytest-benchmark writes its JSON in place: it goes to a file of its own, then into place
    partial = json_path.with_name(f".{json_path.name}.partial")
    args = [str(BENCH_MODULE), "-q", "-p", "no:cacheprovider", "-p", "pytest_benchmark.plugin",
            "-o", "addopts=", "--capture=no", f"--benchmark-json={partial}", *timing.pytest_args()]
    csv_path = plugin.csv_path
    with log_path.open("a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log), warnings.catch_warnings():
        # when no case was timed, pytest-benchmark writes no JSON and says so; the CSV has why
        warnings.filterwarnings("ignore", message="Not saving anything")
        try:
            with _session_environment():
                code = pytest.main(args, plugins=[plugin])
        finally:  # the CSV gets the derived columns (speedups across the run's rows)
            if csv_path.exists():
                records.write(records.load(csv_path), csv_path)
            if partial.exists():
                atomic_write(json_path, partial.read_bytes())
                partial.unlink()
    plugin.json_path = json_path if json_path.exists() else None
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.INTERRUPTED):
        raise RuntimeError(f"the benchmark session failed (pytest exit code {int(code)}); "
                           f"see {log_path}")
    return code


# The benchmark session's environment (None: unset), each variable restored after it:
# - PYTEST_XDIST_WORKER: pytest-benchmark disables itself in any process that has it, so a run
#   started from inside an xdist worker (a test suite on several cores) would time nothing; this
#   session is our own, in one process: it may time.
# - PYTEST_DISABLE_PLUGIN_AUTOLOAD: only pytest-benchmark (named with -p) is loaded, not every
#   plugin installed beside it (hypothesis alone adds 1 to 2 s to each run's start).
SESSION_ENV = {"PYTEST_XDIST_WORKER": None, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


@contextlib.contextmanager
def _session_environment():
    """:data:`SESSION_ENV` in ``os.environ`` for the benchmark session's duration."""
    def apply(values: dict[str, str | None]) -> None:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    saved = {name: os.environ.get(name) for name in SESSION_ENV}
    try:
        apply(SESSION_ENV)
        yield
    finally:
        apply(saved)
