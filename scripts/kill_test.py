"""SIGKILL `lrbench run` at random instants and check that no row recorded before a kill is lost.

    .venv/bin/python scripts/kill_test.py [--kills 50] [--seed 0] [--work DIR]

A small CPU matrix (8 cases) is run into one folder again and again with ``--resume``; each run is
killed with SIGKILL at a random instant, in turn: while it starts (a random moment before its
first row: the interpreter, the plan, the lock), among the cases (a random moment within the case
after a random row), and at the end (a random moment up to 0.6 s after the last case's row appears:
the final CSV rewrite, the JSON report, the exit). The durations come from a clean run first.
Just before each kill the CSV is read as any reader would
(:func:`lrbench.bench.results.records.read`); after the kill every row read then must still be
there, unchanged (case id, status, median). A run that completes starts the
folder afresh. At the end, a last ``--resume`` must finish the matrix with every case once.

Prints one line per kill and a summary; exits 1 on the first lost row.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lrbench.bench.results import records  # noqa: E402  (after the checkout is on sys.path)

AXES = ["--preset", "kernel-sweep", "--impl", "unfold,im2col_matmul", "--kernel", "3,5",
        "--size", "8,12", "--channels", "4", "--m", "2", "--batch", "1", "--pass", "fwd",
        "--device", "cpu", "--min-rounds", "2", "--max-time", "0.05"]
CASES = 8
KEY = ["case_id", "status", "median_s"]


def _rows(folder: Path) -> dict[str, tuple]:
    """What a reader sees now: case id -> (status, median), only recorded rows."""
    csv = records.results_path(folder)
    if not csv.exists():
        return {}
    try:
        rows = records.read(folder).rows
    except FileNotFoundError:  # between a rewrite's unlink and rename there is none: never
        raise
    return {r.case_id: (r.status, r.median_s) for r in rows[KEY].itertuples(index=False)}


def _start(folder: Path, resume: bool) -> subprocess.Popen:
    args = [sys.executable, "-m", "lrbench", "run", *AXES, "--out", str(folder)]
    return subprocess.Popen(args + (["--resume"] if resume else []), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def _wait_rows(folder: Path, proc: subprocess.Popen, count: int) -> bool:
    """Wait until the CSV holds ``count`` rows; False if the run ended first."""
    while len(_rows(folder)) < count:
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return True


def _same(a, b) -> bool:
    return a[0] == b[0] and (a[1] == b[1] or (a[1] != a[1] and b[1] != b[1]))  # NaN == NaN


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="folder for the run (temporary)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="lrbench-kill-"))
    folder = work / "run"
    shutil.rmtree(folder, ignore_errors=True)

    started = time.monotonic()
    clean = _start(folder, resume=False)  # how long a run takes to start, and a case
    _wait_rows(folder, clean, 1)
    start_s = time.monotonic() - started
    _wait_rows(folder, clean, CASES)
    case_s = (time.monotonic() - started - start_s) / (CASES - 1)
    clean.wait()
    whole_s = time.monotonic() - started
    assert clean.returncode == 0 and len(_rows(folder)) == CASES, "the clean run failed"
    print(f"a whole run: {whole_s:.1f} s, {CASES} cases; {start_s:.1f} s to the first row, "
          f"then {case_s:.2f} s a case")
    shutil.rmtree(folder)

    fresh_runs, checked, cut_lines, live = 1, 0, 0, 0
    folder.mkdir()
    for kill in range(1, args.kills + 1):
        if len(_rows(folder)) == CASES:  # finished: start afresh
            shutil.rmtree(folder)
            folder.mkdir()
            fresh_runs += 1
        had = len(_rows(folder))
        proc = _start(folder, resume=True)
        if kill % 3 == 0:  # after the last row: the final rewrite, the JSON, the exit
            reached = _wait_rows(folder, proc, CASES)
            delay = rng.uniform(0, 0.6)
            where = f"{delay:.2f} s after the last row" + ("" if reached else " (run had ended)")
        elif kill % 3 == 2 and had < CASES - 1:  # among the cases
            after = rng.randint(had + 1, CASES - 1)
            reached = _wait_rows(folder, proc, after)
            delay = rng.uniform(0, case_s)
            where = f"{delay:.2f} s after row {after}" + ("" if reached else " (run had ended)")
        else:  # while it starts
            delay = rng.uniform(0, start_s)
            where = f"{delay:.2f} s into the run"
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        before = _rows(folder)
        live += proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after_loaded = records.read(folder) if records.results_path(folder).exists() else None
        after = _rows(folder)
        cut_lines += after_loaded.dropped if after_loaded else 0
        lost = [case for case, row in before.items()
                if case not in after or not _same(row, after[case])]
        checked += len(before)
        print(f"kill {kill:2d}: {where:<36} rows before {len(before)}, after {len(after)}, "
              f"lost {len(lost)}")
        if lost:
            print(f"LOST rows recorded before the kill: {lost}")
            return 1

    final = _start(folder, resume=True)
    final.wait()
    rows = records.read(folder).rows
    assert final.returncode == 0, "the final --resume failed"
    assert len(rows) == CASES and rows["case_id"].is_unique, rows["case_id"].tolist()
    leftovers = sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))
    print(f"{args.kills} kills ({live} of a live run) over {fresh_runs} fresh run(s): no recorded "
          "row lost "
          f"({checked} row checks); {cut_lines} cut-off line(s) kept out after kills; the last "
          f"--resume finished with {len(rows)} rows, each case once; {len(leftovers)} temporary "
          "file(s) left by killed writes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
