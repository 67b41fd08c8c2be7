"""The HTML report and the history page in a real browser (headless Chromium, Debian's package):
each renders, every image loads, a click on a header sorts its table, and nothing reaches the
console as an error. Skipped where Chromium is missing, failed under CI=true (scripts/browser.sh
installs it)."""

from __future__ import annotations

import pandas as pd
import pytest

from lrbench.bench.pages.history import build
from lrbench.bench.results import records
from lrbench.bench.results.report import write_report
from tests.browser import open_page
from tests.helpers import planted_row, planted_run

pytestmark = pytest.mark.browser


def _check(probe: dict, console: str, headings: int) -> None:
    assert probe["headings"] >= headings
    assert probe["images"] > 0 and probe["loaded"] == probe["images"], probe
    assert probe["sorted"] is True, probe
    assert probe["errors"] == [], probe["errors"]
    assert "Uncaught" not in console and "ERROR" not in console, console


def test_the_html_report_in_chromium(tmp_path):
    planted_run(tmp_path / "run")
    page = write_report(tmp_path / "run", html_page=True)
    probe, console = open_page(page, tmp_path)
    assert probe["title"].startswith("Benchmark report")
    _check(probe, console, headings=8)


def test_the_history_page_in_chromium(tmp_path):
    places = []
    for i in range(3):
        rows = [planted_row("op", impl, ms * (1.5 if i == 2 and impl == "unfold" else 1), k=k,
                            seed=10 * i + k, revision=f"rev{i}",
                            timestamp=f"2026-12-0{i + 1}T10:00:00+00:00")
                for impl, ms in (("unfold", 2.0), ("fused_cpu", 0.2)) for k in (3, 5, 7)]
        records.write(pd.DataFrame(rows), tmp_path / f"run{i}")
        places.append(tmp_path / f"run{i}")
    page = build(places, tmp_path / "history")
    probe, console = open_page(page, tmp_path)
    assert probe["title"] == "Benchmark history"
    _check(probe, console, headings=2)
