"""The page machinery: one document rendered as Markdown and as one self-contained HTML page; the
report with --html; lrbench history across runs, machines kept apart, changes judged by the
comparison statistics."""

from __future__ import annotations

import re

import pandas as pd
from click.testing import CliRunner

from lrbench.bench.pages import html
from lrbench.bench.pages.document import Heading, Image, Table, Text, to_markdown
from lrbench.bench.pages.history import NOT_JUDGED, build, load_runs, series
from lrbench.bench.results import records
from lrbench.bench.results.report import write_report
from lrbench.cli import main
from tests.helpers import planted_row, planted_run


def test_one_document_two_renderings(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG fake")
    blocks = [Heading(1, "Title `x`"), Text("Some **bold** <script>alert(1)</script> text.\n\n"
                                           "- one\n- two"),
              Table(pd.DataFrame({"case": ["b", "a"], "ms": [2.5, 10.0]})), Image("a.png")]
    markdown = to_markdown(blocks)
    assert markdown.startswith("# Title `x`") and "| case | ms |" in markdown
    assert "![a.png](a.png)" in markdown
    page = html.render(blocks, "t", tmp_path)
    assert "<h1>Title <code>x</code></h1>" in page and "<strong>bold</strong>" in page
    assert "<script>alert" not in page and "&lt;script&gt;" in page  # text is escaped
    assert "<li>one</li><li>two</li>" in page
    assert '<td class="n" data-v="10.0">10</td>' in page and 'class="sortable"' in page
    assert 'src="data:image/png;base64,' in page


def test_the_html_report_is_the_markdown_report_self_contained(tmp_path):
    planted_run(tmp_path)
    result = CliRunner().invoke(main, ["report", str(tmp_path), "--html"])
    assert result.exit_code == 0, result.output
    markdown, page = (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(images) == 7 and all((tmp_path / name).exists() for name in images)
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == len(images)
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from a network
    headings = re.findall(r"^#+ (.*)$", markdown, re.M)
    assert len(re.findall(r"<h[1-3]>", page)) == len(headings)
    assert "Scaling with input size" in page and page.count('class="sortable"') >= 5


def _runs(tmp_path, slowdown=1.6):
    """Three runs of one machine (given out of order) and one of another; in the third, unfold
    got slower by ``slowdown``."""
    places = []
    for i, (rev, factor, cpu) in enumerate([("rev1", 1.0, "CPU A"), ("rev2", 1.0, "CPU A"),
                                            ("rev3", slowdown, "CPU A"), ("rev9", 1.0, "CPU B")]):
        rows = [planted_row("op", impl, ms * (factor if impl == "unfold" else 1.0), k=k,
                            seed=10 * i + k, revision=rev, cpu=cpu, spread=0.02,
                            timestamp=f"2026-12-0{i + 1}T10:00:00+00:00")
                for impl, ms in (("unfold", 2.0), ("fused_cpu", 0.2)) for k in (3, 5)]
        place = tmp_path / f"run-{rev}"
        records.write(pd.DataFrame(rows), place)
        places.append(place)
    return [places[2], places[0], places[3], places[1]]


def test_history_orders_runs_keeps_machines_apart_and_judges_changes(tmp_path):
    places = _runs(tmp_path)
    runs = load_runs(places)
    assert [r.revision for r in runs] == ["rev1", "rev2", "rev3", "rev9"]
    mine = [r for r in runs if r.machine.startswith("CPU A")]
    table = series(mine, threshold=0.10, alpha=0.01)
    judged = table[table["verdict"] != ""]
    assert len(judged) == 2 * 4  # 4 case ids, each judged going to run 1 and to run 2
    slower = judged[judged["verdict"].str.startswith("slower")]
    assert set(slower["case_id"].str.split(":").str[1]) == {"unfold"} and len(slower) == 2
    assert (slower["run"] == 2).all() and slower["low"].gt(1.4).all()
    assert not judged.drop(slower.index)["verdict"].str.startswith(("slower", "faster")).any()
    page = build(places, tmp_path / "out", command="lrbench history ...")
    text = page.read_text()
    assert "Machine 1: CPU A / no GPU / 2 threads" in text and "Machine 2: CPU B" in text
    assert "rev9" not in text.split("Machine 2")[0]  # the other machine's run stays apart
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert len(pngs) == 2 * 2  # one per case (k=3, k=5) and machine, implementations as lines
    assert text.count("data:image/png;base64,") == len(pngs)


def test_history_without_rounds_does_not_judge(tmp_path):
    places = []
    for i in range(2):
        row = planted_row("op", "unfold", 2.0 * (1 + i), rounds=False, revision=f"r{i}",
                          timestamp=f"2026-12-0{i + 1}T10:00:00+00:00")
        records.write(pd.DataFrame([row]), tmp_path / f"r{i}")
        places.append(tmp_path / f"r{i}")
    text = build(places, tmp_path / "out").read_text()
    assert f"<td>{NOT_JUDGED}</td>" in text and "<td>slower" not in text


def test_history_command(tmp_path):
    places = [str(p) for p in _runs(tmp_path)]
    runner = CliRunner()
    result = runner.invoke(main, ["history", *places, "--out", str(tmp_path / "h")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "h" / "index.html").exists() and "index.html" in result.output
    assert runner.invoke(main, ["history", *places]).exit_code == 2  # --out is required
    bad = runner.invoke(main, ["history", *places, "--out", str(tmp_path / "h"),
                               "--threshold", "ten"])
    assert bad.exit_code == 2 and "threshold" in bad.output
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = runner.invoke(main, ["history", str(empty), "--out", str(tmp_path / "h2")])
    assert missing.exit_code == 2 and "no results" in missing.output


def test_markdown_stays_the_default(tmp_path):
    planted_run(tmp_path, floor=False)
    assert write_report(tmp_path) == tmp_path / "report.md"
    assert not (tmp_path / "report.html").exists()
    assert "no floor rows in this run" not in (tmp_path / "report.md").read_text()  # in the PNG
