"""The command line through click's CliRunner: run, report, compare, merge, list, bad input."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from lrbench.bench.results import records
from lrbench.cli import main
from tests.helpers import with_rounds

TINY_RUN = ["run", "--preset", "quick", "--impl", "unfold,im2col_matmul", "--kernel", "3",
            "--size", "6", "--channels", "4", "--m", "2", "--batch", "1", "--pass", "fwd",
            "--min-rounds", "1", "--max-time", "0.001"]


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def run_dir(runner, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = runner.invoke(main, [*TINY_RUN, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_run_prints_progress_and_writes_the_csv(run_dir):
    rows = records.load(run_dir)
    # op and layer for each implementation, and the 3x3 conv
    assert sorted(rows["target"]) == ["conv3x3", "layer", "layer", "op", "op"]
    assert set(rows["status"]) == {"ok"}
    assert list((run_dir / "pytest-benchmark").glob("quick*.json"))


def test_run_progress_lines(runner, tmp_path):
    result = runner.invoke(main, [*TINY_RUN, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "[   1/5]" in result.output and "[   5/5] ok" in result.output
    assert "done: 5 ok" in result.output


def test_resume_runs_nothing_twice(runner, run_dir):
    result = runner.invoke(main, [*TINY_RUN, "--out", str(run_dir), "--resume"])
    assert result.exit_code == 0, result.output
    assert "nothing to run" in result.output and "5 already in the CSV" in result.output
    assert len(records.load(run_dir)) == 5


def test_report_writes_markdown(runner, run_dir):
    result = runner.invoke(main, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert (run_dir / "report.md").exists() and "report.md" in result.output


def test_compare_exit_codes_markdown_and_the_drift_note(runner, run_dir, tmp_path):
    same = runner.invoke(main, ["compare", str(run_dir), str(run_dir), "--threshold", "10%"])
    assert same.exit_code == 0 and "no confirmed regression" in same.output
    assert "lrbench ab" in same.output  # the drift note points to the interleaved A/B
    frame = records.load(run_dir)
    records.write(with_rounds(frame), tmp_path / "base")
    records.write(with_rounds(frame, seed=1, factor=2.0), tmp_path / "new")
    page = tmp_path / "comment.md"
    slower = runner.invoke(main, ["compare", str(tmp_path / "base"), str(tmp_path / "new"),
                                  "--markdown", str(page)])
    assert slower.exit_code == 1, slower.output
    assert slower.output.count("\nslower ") == 5 and "5 regression(s) beyond 10%" in slower.output
    text = page.read_text()
    assert text.count("| slower |") == 5 and "**Regression**" in text and "lrbench ab" in text
    faster = runner.invoke(main, ["compare", str(tmp_path / "new"), str(tmp_path / "base")])
    assert faster.exit_code == 0 and faster.output.count("\nfaster ") == 5
    bad = runner.invoke(main, ["compare", str(run_dir), str(run_dir), "--alpha", "1.5"])
    assert bad.exit_code == 2 and "--alpha" in bad.output


def test_merge_shards(runner, tmp_path, run_dir):
    pieces = []
    for i in (1, 2):
        out = tmp_path / f"s{i}"
        result = runner.invoke(main, [*TINY_RUN, "--shard", f"{i}/2", "--out", str(out)])
        assert result.exit_code == 0, result.output
        pieces.append(str(out))
    result = runner.invoke(main, ["merge", *pieces, "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    merged = set(records.load(tmp_path / "merged")["case_id"])
    assert merged == set(records.load(run_dir)["case_id"])


def test_list_shows_presets(runner):
    result = runner.invoke(main, ["list"])
    assert result.exit_code == 0
    for name in ("quick", "paper", "kernel-sweep", "size-sweep", "channel-sweep", "network"):
        assert f"\n{name} " in result.output


@pytest.mark.parametrize("args, message", [
    (["run", "--preset", "nope"], "unknown preset 'nope'"),
    (["run", "--shard", "3/2"], "--shard i/n needs 1 <= i <= n"),
    (["run", "--impl", "magic"], "--impl: unknown 'magic'"),
    (["run", "--kernel", "4"], "kernel_size must be an odd integer"),
    (["run", "--batch", "two"], "--batch takes positive integers"),
    (["run", "--max-time", "0"], "--max-time"),
    (["compare", ".", ".", "--threshold", "ten"], "threshold must be a percentage"),
    (["report", "/nonexistent/dir"], "does not exist"),
])
def test_bad_input_is_a_usage_error(runner, args, message):
    result = runner.invoke(main, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
