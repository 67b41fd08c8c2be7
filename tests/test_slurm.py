"""The Slurm path on a real one-node cluster with accounting (``bash scripts/slurm.sh up``): a
sharded run gives the rows of a serial run; a shard requeued in the middle of a case, or preempted
by a job of a higher-priority partition, is requeued and finishes with the same rows, none twice;
a cancelled shard is shown as such and ``--resume`` finishes it; ``lrbench status`` shows the
states that ``sacct`` reports.

Marked ``slurm``. Without a cluster these tests are skipped, saying how to bring one up; under CI
(``CI=true``, where ``.ci/run`` brings it up) they fail instead. What one node cannot show (several
nodes at once) stays with the stand-in scripts of tests/test_cluster.py.

The shards are held inside a case by the ``waiting`` plugin implementation (tests/waiting_plugin.py)
and its file gate, which Slurm's jobs see through the environment they inherit from sbatch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from lrbench import registry
from lrbench.bench.cluster import submit
from lrbench.bench.cluster.options import make_options
from lrbench.bench.matrix.cases import shard
from lrbench.bench.matrix.plan import make_plan
from lrbench.bench.results import records
from lrbench.bench.results.manifest import Manifest, shard_folder
from lrbench.cli import main
from tests.helpers import GATE_ENV, FileGate, outcome
from tests.waiting_plugin import WAITING

pytestmark = pytest.mark.slurm

PLUGIN = str(Path(__file__).with_name("waiting_plugin.py"))
AXES = {"impl": "unfold,waiting,im2col_matmul", "kernel": "3", "size": "6", "channels": "4",
        "m": "2", "batch": "1", "pass": "fwd", "device": "cpu"}
ARGS = ["--preset", "kernel-sweep", *[f"--{k}={v}" for k, v in AXES.items()], "--min-rounds", "2",
        "--max-time", "0.02", "--plugin", PLUGIN, "--executor", "slurm", "--time", "10"]


def _sh(*command: str, check: bool = True) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout


def _cluster_problem() -> str | None:
    """Why the Slurm cluster cannot be used, or ``None`` when it can."""
    if shutil.which("sbatch") is None or shutil.which("sacct") is None:
        return "Slurm's commands are not installed"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
        if "UP" not in ping.stdout:
            return f"slurmctld does not answer ({(ping.stdout + ping.stderr).strip()})"
        sacct = subprocess.run(["sacct", "-n", "-X", "--starttime=now-1hour"],
                               capture_output=True, text=True, timeout=10)
        if sacct.returncode != 0:
            return f"sacct does not answer ({sacct.stderr.strip()})"
        nodes = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                               timeout=20).stdout.split()
    except subprocess.TimeoutExpired as err:
        return f"{' '.join(err.cmd)} did not answer within {err.timeout} s"
    if not any(state.rstrip("*") in ("idle", "mixed", "allocated") for state in nodes):
        return f"no node is up (sinfo: {' '.join(nodes) or 'nothing'})"
    return None


@pytest.fixture(scope="module")
def cluster():
    problem = _cluster_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the Slurm tests, but there is no cluster: {problem}. .ci/run "
                    "brings one up with `bash scripts/slurm.sh up`")
    pytest.skip(f"no Slurm cluster up ({problem}); bring one up with `bash scripts/slurm.sh up`")


@pytest.fixture
def held(cluster, tmp_path, monkeypatch):
    """The `waiting` implementation's gate (unarmed) and a fast driver; jobs inherit this
    environment from sbatch. `lrbench run --plugin` registers `waiting` here too: it is removed
    after the test."""
    gate = FileGate(tmp_path / "gate")
    monkeypatch.setenv(GATE_ENV, str(gate.folder))
    monkeypatch.setenv("PYTHONPATH", os.getcwd())  # the plugin imports tests.helpers
    monkeypatch.setitem(submit.POLL_S, "slurm", 0.5)
    yield gate
    if WAITING.name in registry.implementations():
        registry.unregister(WAITING.name)


def _plan():
    with registry.registered(WAITING):  # the plan holds names; each job loads the plugin
        return make_plan("kernel-sweep", AXES, None, min_rounds=2, max_time=0.02)


def _expected(plan) -> list[str]:
    return sorted(c.case_id for c in plan.cases)


def _job_id(out: Path, index: int, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        manifest = Manifest.load(out)
        if manifest is not None and manifest.shards[index - 1].jobs:
            return manifest.shards[index - 1].jobs[-1]["job_id"]
        time.sleep(0.1)
    raise AssertionError(f"shard {index} of {out} was never submitted")


def _states(job_id: str) -> list[str]:
    """Every state sacct recorded for the job, its requeued runs included (``-D``)."""
    return _sh("sacct", "-n", "-X", "-D", "-P", "-o", "State", "-j", job_id).splitlines()


def _ended(job_id: str, timeout_s: float = 60.0) -> list[str]:
    """:func:`_states` once the job has ended (its function returns a moment before its process
    exits, and the driver goes by the function's result)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = _states(job_id)
        if states and states[-1] not in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED"):
            return states
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {states} after {timeout_s} s")


def _waiting_shard(plan, nodes: int) -> int:
    return next(i for i in range(1, nodes + 1)
                if any(c.impl == "waiting" for c in shard(plan.cases, i, nodes)))


def _drive(plan, out, nodes: int, resume: bool = False, **options):
    """run_sharded in a thread (the driver waits), so that the test can act on the cluster."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(submit.run_sharded, plan, out,
                         make_options("slurm", nodes=nodes, time="10", **options),
                         resume=resume, plugins=(PLUGIN,))
    pool.shutdown(wait=False)
    return future


def test_a_sharded_run_on_slurm_gives_the_rows_of_a_serial_run(held, tmp_path):
    """`lrbench run --executor slurm --nodes 2`, end to end on the cluster; `lrbench status` shows
    each shard's job in the state sacct reports."""
    plan = _plan()
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", *ARGS, "--nodes", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    merged = outcome(out)
    assert list(merged["case_id"]) == _expected(plan) and merged["status"].eq("ok").all()
    for i in (1, 2):  # each shard its own slice
        assert set(outcome(out / shard_folder(i))["case_id"]) == {
            c.case_id for c in shard(plan.cases, i, 2)}
    jobs = [s.jobs[-1]["job_id"] for s in Manifest.load(out).shards]
    assert [_ended(job_id) for job_id in jobs] == [["COMPLETED"], ["COMPLETED"]]
    shown = CliRunner().invoke(main, ["status", str(out)])
    assert shown.exit_code == 0, shown.output
    for job_id in jobs:
        assert f"job {job_id} (attempt 1): COMPLETED" in shown.output


def test_a_shard_requeued_in_the_middle_of_a_case_resumes_from_its_csv(held, tmp_path):
    """`scontrol requeue` while the shard is inside a case: Slurm kills and requeues the job (the
    same job id, not a resubmission); it resumes from its CSV, ending with every row once."""
    plan = _plan()
    out = tmp_path / "out"
    held.arm()
    driver = _drive(plan, out, nodes=1)
    assert held.wait_entered() > 0
    job_id = _job_id(out, 1)
    before = set(records.load(out / shard_folder(1))["case_id"])
    _sh("scontrol", "requeue", job_id)
    summary = driver.result(timeout=240)
    assert summary.complete
    rows = records.load(out / shard_folder(1))
    assert rows["case_id"].is_unique and sorted(rows["case_id"]) == _expected(plan)
    assert before <= set(rows["case_id"])  # the rows of the first run were kept, not rerun
    states = _ended(job_id)
    assert "REQUEUED" in states and states[-1] == "COMPLETED", states
    assert [j["job_id"] for j in Manifest.load(out).shards[0].jobs] == [job_id]


def test_a_shard_preempted_by_a_higher_priority_job_is_requeued_and_finishes(held, tmp_path):
    """A job in the `urgent` partition preempts the shard (partition `batch`, PreemptMode=REQUEUE):
    Slurm sends submitit's signal; the case in flight (held at the gate) outlasts --grace, gets a
    stopped row, the job checkpoints and requeues itself before Slurm's kill, the urgent job runs,
    and the requeued shard runs that case again and finishes."""
    plan = _plan()
    out = tmp_path / "out"
    held.arm()
    driver = _drive(plan, out, nodes=1, grace_s=2.0)
    assert held.wait_entered() > 0
    job_id = _job_id(out, 1)
    urgent = _sh("sbatch", "--parsable", "-p", "urgent", "--exclusive", "-J", "urgent",
                 "-o", str(tmp_path / "urgent.out"), "--wrap", "true").strip()
    summary = driver.result(timeout=240)
    assert summary.complete
    rows = records.load(out / shard_folder(1))
    assert rows["case_id"].is_unique and sorted(rows["case_id"]) == _expected(plan)
    assert rows["status"].eq("ok").all()  # the stopped row was replaced by the rerun's
    assert "outlasted the grace period (2 s)" in (out / shard_folder(1) / "pytest.log").read_text()
    states = _ended(job_id)
    assert states[-1] == "COMPLETED" and len(states) >= 2, states
    assert _ended(urgent) == ["COMPLETED"]
    assert [j["job_id"] for j in Manifest.load(out).shards[0].jobs] == [job_id]  # requeued


def test_a_cancelled_shard_is_shown_as_such_and_resume_finishes_it(held, tmp_path):
    plan = _plan()
    out = tmp_path / "out"
    index = _waiting_shard(plan, 2)
    held.arm()
    driver = _drive(plan, out, nodes=2)
    assert held.wait_entered() > 0
    job_id = _job_id(out, index)
    _sh("scancel", job_id)
    summary = driver.result(timeout=240)
    assert not summary.complete and summary.pending[index] > 0  # not resubmitted behind our back
    assert [j["job_id"] for j in Manifest.load(out).shards[index - 1].jobs] == [job_id]
    cancelled = _ended(job_id)[-1]
    assert cancelled.startswith("CANCELLED")

    shown = CliRunner().invoke(main, ["status", str(out)])
    assert shown.exit_code == 0, shown.output
    line = next(x for x in shown.output.splitlines() if x.startswith(str(index)))
    assert f"job {job_id} (attempt 1): {cancelled}" in line  # sacct's state, as it says it
    assert "pending and nothing running" in shown.output

    result = CliRunner().invoke(main, ["run", *ARGS, "--nodes", "2", "--out", str(out),
                                       "--resume"])
    assert result.exit_code == 0, result.output
    merged = outcome(out)
    assert list(merged["case_id"]) == _expected(plan) and merged["status"].eq("ok").all()
