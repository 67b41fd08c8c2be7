"""One self-contained HTML page from a document (:mod:`lrbench.bench.pages.document`): images
embedded as ``data:`` URIs, tables sortable by a click on a column's header (a few lines of
script, no library), no request to any server, so the file opens anywhere, offline.
"""

from __future__ import annotations

import base64
import html
import math
import numbers
import re
from pathlib import Path

import pandas as pd

from lrbench.bench.pages.document import Block, Heading, Image, Table, Text
from lrbench.tables import fmt_number

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em;
       color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; }
code { background: #f3f3f3; padding: 0 .2em; border-radius: 3px; }
.table { overflow-x: auto; margin: .6em 0 1.2em; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 2px 6px; white-space: nowrap; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f6f6f6; cursor: pointer; position: sticky; top: 0; }
th[aria-sort=ascending]::after { content: " \\25B2"; }
th[aria-sort=descending]::after { content: " \\25BC"; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #555; }
"""
# Click a header: sort the table's rows by that column (numbers by their data-v value, text
# alphabetically); a second click reverses.
SCRIPT = """
document.querySelectorAll("table.sortable th").forEach((th, col) => {
  th.addEventListener("click", () => {
    const body = th.closest("table").tBodies[0];
    const up = th.getAttribute("aria-sort") !== "ascending";
    th.closest("tr").querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", up ? "ascending" : "descending");
    const key = td => td.dataset.v !== undefined ? parseFloat(td.dataset.v) : td.textContent;
    const rows = Array.from(body.rows).sort((a, b) => {
      const x = key(a.cells[col]), y = key(b.cells[col]);
      const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(y);
      return up ? c : -c;
    });
    rows.forEach(r => body.appendChild(r));
  });
});
"""


def inline(text: str) -> str:
    """Escape ``text`` and render its `code`, **bold** and [links](target)."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)",
                  lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', out)


def _text(text: str) -> str:
    """Paragraphs and list lines of a text block."""
    out = []
    for para in re.split(r"\n\s*\n", text.strip()):
        lines = para.splitlines()
        numbered = all(re.match(r"\d+\. ", line) for line in lines)
        if all(line.startswith("- ") for line in lines) or numbered:
            tag = "ol" if numbered else "ul"
            items = "".join(f"<li>{inline(line.split(' ', 1)[1])}</li>" for line in lines)
            out.append(f"<{tag}>{items}</{tag}>")
        else:
            out.append(f"<p>{inline(' '.join(lines))}</p>")
    return "\n".join(out)


def _cell(value: object) -> str:
    text = html.escape(fmt_number(value))
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value):
        return f'<td class="n" data-v="{float(value)!r}">{text}</td>'
    return f"<td>{text}</td>"


def table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "\n".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>"
                     for row in frame.itertuples(index=False))
    return (f'<div class="table"><table class="sortable"><thead><tr>{head}</tr></thead>'
            f"<tbody>\n{body}\n</tbody></table></div>")


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render(blocks: list[Block], title: str, images: Path) -> str:
    """The page; each :class:`Image` is read from the folder ``images`` and embedded."""
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{inline(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            parts.append(_text(block.text))
        elif isinstance(block, Table):
            parts.append(table(block.frame))
        elif isinstance(block, Image):
            alt = html.escape(block.alt or block.name)
            parts.append(f'<figure><img src="{data_uri(images / block.name)}" alt="{alt}">'
                         f"<figcaption>{html.escape(block.name)}</figcaption></figure>")
        else:
            raise TypeError(f"blocks: expected Heading, Text, Table or Image, got {block!r}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(parts) + f"\n<script>{SCRIPT}</script>\n</body></html>\n")
