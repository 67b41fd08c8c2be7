"""Rows timed under different setups (torch, allocator): said by compare, ab, merge and the report."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from lrbench.bench.measure.machine import allocator_settings, split_allocator_settings
from lrbench.bench.results import conditions, records
from lrbench.cli import main
from tests.helpers import planted_row

THP = "default; transparent_hugepage=madvise"
HUGE = "THP_MEM_ALLOC_ENABLE=1; transparent_hugepage=madvise"


def _rows(allocator: list[str], torch: str = "2.14.1", cpu: str = "AMD EPYC") -> pd.DataFrame:
    n = len(allocator)
    return pd.DataFrame({"case_id": [f"c{i}" for i in range(n)], "cpu": cpu, "gpu": "",
                         "threads": 2, "torch": torch, "allocator": allocator})


@pytest.mark.parametrize("mode", ["madvise", ""])
def test_allocator_settings_split_back_into_variables_and_mode(mode):
    text = allocator_settings({"THP_MEM_ALLOC_ENABLE": "1", "HOME": "/root"}, huge_pages=mode)
    assert split_allocator_settings(text) == ("THP_MEM_ALLOC_ENABLE=1", mode or None)


@pytest.mark.parametrize("a, b, expected", [
    (THP, THP, True),
    (THP, HUGE, False),                                   # variables differ
    (THP, "default; transparent_hugepage=always", False),  # the system's mode differs
    ("default", THP, True),                               # written before the mode was recorded
    ("default", HUGE, False),
    ("THP_MEM_ALLOC_ENABLE=1", HUGE, True),
])
def test_allocator_values_name_one_setup_or_two(a, b, expected):
    assert conditions.same_setup("allocator", a, b) is expected
    assert conditions.same_setup("allocator", b, a) is expected


def test_differences_name_the_column_and_both_values():
    assert conditions.setup_differences(_rows([THP, THP]), _rows(["default"])) == []
    always = "default; transparent_hugepage=always"
    both = _rows([THP, always])  # each side has both setups: nothing between them differs
    assert conditions.setup_differences(both, both) == []
    (found,) = conditions.setup_differences(_rows([THP]), _rows([HUGE]))
    assert f"different allocator ({THP} in BASE; {HUGE} in NEW)" in found
    (found,) = conditions.setup_differences(_rows([THP]), _rows([THP], torch="2.11.0"))
    assert "different torch (2.14.1 in BASE; 2.11.0 in NEW)" in found
    assert conditions.setup_differences(_rows([THP]), _rows([""])) == []  # nothing recorded: nothing said


def test_a_row_without_the_mode_joins_a_setup_only_where_it_can_tell_which():
    always = "default; transparent_hugepage=always"
    (found,) = conditions.mixed_setups(_rows([THP, always, "default"]))  # madvise or always?
    assert "3 different allocator values" in found
    for value in (THP, always, "default"):
        assert f"{value} (1 rows)" in found


def test_mixed_counts_one_machines_rows_per_setup():
    assert conditions.mixed_setups(_rows([THP, "default", THP])) == []
    (found,) = conditions.mixed_setups(_rows([THP, HUGE, "default"]))
    assert found.startswith("AMD EPYC / no GPU / 2 threads: rows ran with 2 different allocator")
    assert f"{HUGE} (1 rows)" in found and f"{THP} (2 rows)" in found
    two_machines = pd.concat([_rows([THP]), _rows([HUGE], cpu="Intel Xeon")], ignore_index=True)
    assert conditions.mixed_setups(two_machines) == []  # each machine has one setup


def test_side_notes_name_each_sides_mix_then_what_differs_between_them():
    """What compare and ab print of the sides' conditions."""
    assert conditions.side_notes(_rows([THP]), _rows(["default"])) == []
    mixed, differs = conditions.side_notes(_rows([THP, HUGE]), _rows([HUGE]))
    assert mixed.startswith("BASE: AMD EPYC / no GPU / 2 threads: rows ran with 2 different")
    assert differs.startswith("BASE and NEW ran with different allocator")  # THP: not in NEW
    mixed, differs = conditions.side_notes(_rows([HUGE]), _rows([HUGE, THP]))
    assert mixed.startswith("NEW: ") and differs.startswith("BASE and NEW ran with different")
    torch, allocator = conditions.side_notes(_rows([THP]), _rows([HUGE], torch="2.11.0"))
    assert "different allocator" in allocator and "different torch" in torch


@pytest.fixture
def run_dir(tmp_path):
    """A run of four planted op rows (rounds in passes), as `lrbench run` writes them."""
    rows = [planted_row("op", impl, ms, seed=i, H=size, W=size)
            for i, (impl, ms, size) in enumerate([("unfold", 4, 16), ("fused_cpu", 1, 16),
                                                  ("unfold", 9, 24), ("fused_cpu", 2, 24)])]
    out = tmp_path / "run"
    records.write(pd.DataFrame(rows), out)
    return out


def test_compare_says_when_the_sides_ran_under_different_allocators(run_dir, tmp_path):
    frame = records.load(run_dir)
    records.write(frame.assign(allocator=THP), tmp_path / "base")
    records.write(frame.assign(allocator=HUGE), tmp_path / "new")
    page = tmp_path / "comment.md"
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "base"), str(tmp_path / "new"),
                                       "--markdown", str(page)])
    assert result.exit_code == 0, result.output
    assert "BASE and NEW ran with different allocator" in page.read_text()
    records.write(frame.assign(allocator="default"), tmp_path / "old")
    same = CliRunner().invoke(main, ["compare", str(tmp_path / "old"), str(tmp_path / "base"),
                                     "--markdown", str(page)])
    assert same.exit_code == 0 and "different allocator" not in page.read_text()


def test_merge_and_report_warn_of_one_machine_under_two_allocators(run_dir, tmp_path):
    frame = records.load(run_dir)
    half = len(frame) // 2
    records.write(frame.iloc[:half].assign(allocator=THP), tmp_path / "a")
    records.write(frame.iloc[half:].assign(allocator=HUGE), tmp_path / "b")
    runner = CliRunner()
    result = runner.invoke(main, ["merge", str(tmp_path / "a"), str(tmp_path / "b"),
                                  "--out", str(tmp_path / "merged")])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "2 different allocator values" in result.output
    report = runner.invoke(main, ["report", str(tmp_path / "merged")])
    assert report.exit_code == 0, report.output
    text = (tmp_path / "merged" / "report.md").read_text()
    assert "**Warning**:" in text and "2 different allocator values" in text
    quiet = runner.invoke(main, ["merge", str(tmp_path / "a"), "--out", str(tmp_path / "one")])
    assert quiet.exit_code == 0 and "warning:" not in quiet.output
