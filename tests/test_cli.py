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
    assert (rows["peak_gmacs_per_s"] > 0).all() and (rows["peak_gb_per_s"] > 0).all()


def test_run_progress_lines_and_no_limits_from_the_environment(runner, tmp_path):
    """LRBENCH_LIMITS=0 (what `lrbench ab` gives its sides) is --no-limits: no roofs measured."""
    result = runner.invoke(main, [*TINY_RUN, "--passes", "1", "--out", str(tmp_path)],
                           env={"LRBENCH_LIMITS": "0"})
    assert result.exit_code == 0, result.output
    assert "[   1/5]" in result.output and "[   5/5] ok" in result.output
    assert "done: 5 ok" in result.output
    rows = records.load(tmp_path)
    assert rows["peak_gmacs_per_s"].isna().all() and rows["roofline_gmacs_per_s"].isna().all()


def test_resume_runs_nothing_twice(runner, run_dir):
    result = runner.invoke(main, [*TINY_RUN, "--out", str(run_dir), "--resume"])
    assert result.exit_code == 0, result.output
    assert "nothing to run" in result.output and "5 already in the CSV" in result.output
    assert len(records.load(run_dir)) == 5


def _table(text: str, header: str) -> dict[str, dict[str, str]]:
    """The Markdown table whose header row starts with ``| header |``: first cell -> row."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    names = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows.setdefault(cells[0], []).append(dict(zip(names, cells, strict=True)))
    return rows


# Planted medians (ms) for the tiny run's rows, so the report's numbers have one right value each.
PLANTED_MS = {("op", "unfold"): 4, ("op", "im2col_matmul"): 1, ("layer", "unfold"): 6,
              ("layer", "im2col_matmul"): 3, ("conv3x3", "torch"): 2}


def test_report_shows_the_runs_numbers(runner, run_dir, tmp_path):
    frame = records.load(run_dir)
    keys = zip(frame["target"], frame["impl"], strict=True)
    frame["median_s"] = [PLANTED_MS[key] / 1e3 for key in keys]
    records.write(frame, tmp_path)
    result = runner.invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'report.md'}" in result.output
    text = (tmp_path / "report.md").read_text()
    assert "5 cases (5 ok)" in text and f"- git_rev: {frame['git_rev'].iloc[0]}" in text
    shape = "B1-C4-6x6-k3-m2-s1"
    (op,) = _table(text, "shape")[shape]  # the op against unfold: 4 ms / 1 ms
    assert (op["impl"], op["baseline"], op["fwd ms"], op["fwd speedup"]) == (
        "im2col_matmul", "unfold", "1", "4")
    layers = {row["impl"]: row for row in _table(text, "layer")[shape]}  # against the 2 ms conv
    assert {impl: (row["layer ms"], row["conv3x3 ms"], row["layer / conv3x3"])
            for impl, row in layers.items()} == {"unfold": ("6", "2", "3"),
                                                 "im2col_matmul": ("3", "2", "1.50")}
    cases = {cid: rows[0] for cid, rows in _table(text, "case").items()}
    assert set(cases) == set(frame["case_id"])  # every timed case, once
    im2col = cases[f"op:im2col_matmul:{shape}:float32:cpu:fwd"]
    # 2592 MACs (1 * (2*2 + 4) * 9 * 36) in 1 ms: 0.00259 GMAC/s
    assert (im2col["median ms"], im2col["speedup vs baseline"], im2col["GMAC/s"]) == (
        "1", "4", "0.00259")
    assert cases[f"layer:im2col_matmul:{shape}:float32:cpu:fwd"]["speedup vs baseline"] == "2"


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
    for name in ("quick", "paper", "layers", "kernel-sweep", "size-sweep", "channel-sweep", "network"):
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
