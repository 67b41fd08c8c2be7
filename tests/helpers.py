"""Helpers that several test modules share (one copy of each)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from torch import nn

from lrbench import local_relation
from lrbench.bench.results import records
from lrbench.files import atomic_write


def outcome(location) -> pd.DataFrame:
    """A run's (case id, status) pairs, sorted: what two runs that should agree must share."""
    frame = records.load(location)
    return frame[["case_id", "status"]].sort_values("case_id").reset_index(drop=True)


def with_rounds(frame: pd.DataFrame, spread: float = 0.02, n: int = 30, seed: int = 0,
                factor: float = 1.0, mask=None, passes: int = 3,
                drift: float = 0.01) -> pd.DataFrame:
    """``frame`` with synthetic rounds for its ``ok`` rows: ``passes`` passes of ``n`` rounds in
    all, log-normal around each median (relative ``spread``), each pass moved as a whole by a
    log-normal ``drift``, those of ``mask`` (default: all) slowed by ``factor``: a comparison's
    truth, known exactly, whatever the machine's noise was."""
    import numpy as np

    frame = frame.copy()
    rng = np.random.default_rng(seed)
    mask = frame["status"].eq("ok") if mask is None else mask & frame["status"].eq("ok")
    for index in frame.index[frame["status"].eq("ok")]:
        scale = factor if mask[index] else 1.0
        each = [frame.loc[index, "median_s"] * scale * np.exp(rng.normal(0.0, drift))
                * np.exp(rng.normal(0.0, spread, n // passes)) for _ in range(passes)]
        frame.loc[index, "rounds_s"] = records.format_passes(each)
        frame.loc[index, "median_s"] = float(np.median(np.concatenate(each)))
    return frame


PLUGIN = "my_plugin_impl"  # a name the palette does not know: it gets a reserve colour


def planted_row(target: str, impl: str, ms: float, *, pass_: str = "fwd", compile: str = "eager",
                rounds: bool = True, spread: float = 0.03, seed: int = 0, revision: str = "abc1234",
                timestamp: str = "2026-12-01T10:00:00+00:00", cpu: str = "Planted CPU",
                **shape) -> dict:
    """One ``ok`` row of a run, its time ``ms`` (median), with 20 rounds in 4 passes spread by
    ``spread`` (relative) unless ``rounds`` is False (then only median and IQR, as older CSVs)."""
    import numpy as np

    from lrbench.bench.matrix.cases import Case
    from lrbench.bench.matrix.macs import case_macs

    fields = {"B": 2, "C": 32, "H": 16, "W": 16, "k": 7, "m": 8, "stride": 1, **shape}
    case = Case(target=target, impl=impl, dtype="float32", device="cpu", pass_=pass_,
                compile=compile, baseline="unfold" if target == "op" else "", **fields)
    times = ms / 1e3 * (1 + spread * np.random.default_rng(seed).standard_normal(20))
    row = {"case_id": case.case_id, **case.as_row(), "status": "ok",
           "median_s": float(np.median(times)),
           "iqr_s": float(np.subtract(*np.percentile(times, [75, 25]))), "rounds": 20,
           "macs": case_macs(case)[0] if target in ("op", "layer", "conv3x3") else 4e9,
           "peak_bytes": 1e6, "min_bytes": 1e5,
           "peak_gmacs_per_s": 100.0, "peak_gb_per_s": 20.0, "cpu": cpu, "threads": 2,
           "git_rev": revision, "timestamp": timestamp}
    if rounds:  # four passes of five rounds
        row["rounds_s"] = records.format_passes([times[i:i + 5] for i in range(0, 20, 5)])
    return row


def planted_run(path, rounds: bool = True, floor: bool = True) -> pd.DataFrame:
    """A run with something for every plot the report draws: the op along k and along H = W
    (unfold, fused_cpu and a plugin, fwd and fwd_bwd), LR-Net-50's stages with the 3x3 conv and
    the layer, and the whole networks (with the floor unless ``floor`` is False). Written to
    ``path`` and loaded back (derived columns filled)."""
    from lrbench.bench.matrix.presets import LRNET50_STAGES, RESNET50_STAGES

    impls = {"unfold": 1.0, "fused_cpu": 0.1, PLUGIN: 0.5}
    rows, seed = [], 0

    def add(*args, **kwargs):
        nonlocal seed
        seed += 1
        rows.append(planted_row(*args, rounds=rounds, seed=seed, **kwargs))

    for impl, scale in impls.items():
        for pass_ in ("fwd", "fwd_bwd"):
            factor = scale * (3 if pass_ == "fwd_bwd" else 1)
            for k in (3, 5, 7, 9):
                add("op", impl, factor * k * k / 49, pass_=pass_, H=16, W=16, k=k)
            for size in (8, 24, 32, 48):  # 16 comes from the k sweep
                add("op", impl, factor * (0.05 + size * size / 256), pass_=pass_, H=size, W=size)
    for stage, conv in zip(LRNET50_STAGES, RESNET50_STAGES, strict=True):
        for impl, scale in impls.items():
            add("op", impl, 5 * scale, B=8, **stage)
            add("layer", impl, 6 * scale, B=8, **stage)
        add("conv3x3", "torch", 1.0, B=8, C=conv["C"], H=conv["H"], W=conv["W"], k=3, m=1)
    for pass_, factor in (("fwd", 1.0), ("train", 3.0)):
        network = {"B": 8, "C": 3, "H": 224, "W": 224, "k": 7, "m": 8}
        for impl, scale in {**impls, **({"floor": 0.05} if floor else {})}.items():
            add("lrnet50", impl, factor * 100 * (1 + scale), pass_=pass_, **network)
        add("resnet50", "torch", factor * 90, pass_=pass_, **{**network, "k": 3, "m": 1})
    frame = pd.DataFrame(rows)
    records.write(frame, path)
    return records.load(path)


def plant_medians(monkeypatch, medians: dict, measured: dict | None = None) -> None:
    """Make the runner's timer report planted medians: ``medians`` maps an implementation name,
    or ``(name, compile mode)``, to seconds. The case is still timed for real (pytest-benchmark
    runs and writes its JSON); the real median goes into ``measured[case_id]`` when given. With
    known medians, every derived number of a real run (speedups, rates) has one exact value."""
    from lrbench.bench.measure.runner import MatrixPlugin

    real = MatrixPlugin.time_fn

    def time_fn(self, case, benchmark):
        timer = real(self, case, benchmark)
        key = (case.impl, case.compile) if (case.impl, case.compile) in medians else case.impl

        def planted(fn):
            stats = timer(fn)
            if measured is not None:
                measured[case.case_id] = stats["median_s"]
            return {**stats, "median_s": medians[key]}

        return planted

    monkeypatch.setattr(MatrixPlugin, "time_fn", time_fn)


def unfold_trace_macs(shape, args) -> int:
    """fvcore's count of one call of the op through ``unfold`` on ``args`` (x, query, key, prior):
    the op's MACs counted op by op on a real trace (unfold, mul, softmax, sum, ...), independent
    of the closed form that the custom ops' FLOP formulas and fvcore handle return."""
    from lrbench.complexity.fvcore_count import count_macs

    count = count_macs(OpCall("unfold", shape), tuple(args))
    if count.unsupported:
        raise AssertionError(f"fvcore could not count unfold's trace: {count.unsupported}")
    return count.total


class OpCall(nn.Module):
    """A module calling the op with ``impl`` at ``shape``'s kernel size and stride, for fvcore."""

    def __init__(self, impl: str, shape) -> None:
        super().__init__()
        self.impl, self.shape = impl, shape

    def forward(self, x, query, key, prior):
        return local_relation(x, query, key, prior, kernel_size=self.shape.k,
                              stride=self.shape.stride, impl=self.impl)


# --- holding a run at a chosen instant, across processes -----------------------------------

GATE_ENV = "LRBENCH_TEST_GATE"  # the folder of the gate that tests/waiting_plugin.py waits at


@dataclass(frozen=True)
class FileGate:
    """A gate made of files in ``folder``, so that it works across processes without sleeps.

    The test :meth:`arm`\\ s it; the code under test calls :meth:`enter`, which (once, for the first
    caller while armed) says so in ``entered`` with its PID and waits until the test
    :meth:`release`\\ s it. Unarmed, :meth:`enter` returns at once.
    """

    folder: Path

    def arm(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "armed").touch()

    def enter(self, timeout_s: float = 300.0) -> None:
        try:
            (self.folder / "armed").unlink()  # one caller only: the one whose unlink succeeds
        except FileNotFoundError:
            return
        atomic_write(self.folder / "entered", str(os.getpid()))
        deadline = time.monotonic() + timeout_s
        while not (self.folder / "released").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gate {self.folder} was never released")
            time.sleep(0.005)

    def wait_entered(self, timeout_s: float = 180.0) -> int:
        """The PID of the process held at the gate, once it is there (always > 0)."""
        entered = self.folder / "entered"
        deadline = time.monotonic() + timeout_s
        while not entered.exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing entered the gate {self.folder} in {timeout_s} s")
            time.sleep(0.005)
        pid = int(entered.read_text())
        assert pid > 0, pid
        return pid

    def release(self) -> None:
        (self.folder / "released").touch()


def wrap_with_gate(gate: FileGate, fn, after: bool = False):
    """``fn`` that waits at ``gate`` before (or after) doing its work."""
    def gated(*args, **kwargs):
        if not after:
            gate.enter()
        result = fn(*args, **kwargs)
        if after:
            gate.enter()
        return result
    return gated


@contextlib.contextmanager
def submitit_local_job(job, folder: Path, job_id: str = "4242"):
    """Within the block, this process is the submitit local job ``job_id`` running ``job``:
    submitit's own signal handlers are installed (USR2: checkpoint, requeue with exit code 144).
    Yields the job's ``JobPaths`` (``submitted_pickle`` is where a checkpoint goes); the signal
    handlers and the environment are restored after."""
    from submitit.core.job_environment import JobEnvironment
    from submitit.core.utils import DelayedSubmission, JobPaths

    variables = {"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": job_id,
                 "SUBMITIT_FOLDER": str(folder)}
    saved_env = {name: os.environ.get(name) for name in variables}
    signals = (signal.SIGUSR2, signal.SIGTERM, signal.SIGCONT)
    saved_handlers = {number: signal.getsignal(number) for number in signals}
    os.environ.update(variables)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        paths = JobPaths(folder, job_id=job_id, task_id=0)
        delayed = DelayedSubmission(job)
        delayed.set_timeout(60, 3)
        JobEnvironment()._handle_signals(paths, delayed)
        yield paths
    finally:
        for number, handler in saved_handlers.items():
            signal.signal(number, handler)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
