"""The one number formatter and the one Markdown-table helper of every report (and the CSV writer).

Numbers are for people reading a table at a glance: three significant digits, thousands
separators, and no exponent for ordinary values (1.458e+04 prints as ``14,580``, 0.2237 as
``0.224``); only magnitudes below 0.001 keep an exponent (``2.3e-05``, an accuracy gate's error).
The CSV files keep the full values.
"""

from __future__ import annotations

import csv
import math
import numbers
from collections.abc import Iterable, Mapping
from pathlib import Path

from lrbench.files import atomic_open

SIGNIFICANT = 3
SMALL = 1e-3  # below this magnitude, scientific notation reads better than a row of zeros


def fmt_number(value: object, digits: int = SIGNIFICANT) -> str:
    """One table cell: numbers human-readable, ``None``/NaN blank, booleans yes/no, text as is.

    Integers, whole floats (a count read back from a CSV column with blanks) and values of
    ``10**(digits-1)`` or more print as whole numbers with thousands separators, never with
    fewer digits than they have: ``14,580``, ``25,557,032``, ``43``. Other floats get ``digits``
    significant digits in fixed notation: ``0.224``, ``12.3``, ``1.50``.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if not isinstance(value, numbers.Real):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return ""
    if math.isinf(value) or value == 0:
        return "0" if value == 0 else str(value)
    magnitude = abs(value)
    if value.is_integer() or magnitude >= 10 ** (digits - 1) or magnitude >= 1000:
        return f"{round(value):,}"
    if magnitude < SMALL:
        return f"{value:.{digits}g}"
    decimals = digits - 1 - math.floor(math.log10(magnitude))
    rounded = round(value, decimals)
    if math.floor(math.log10(abs(rounded))) > math.floor(math.log10(magnitude)):
        decimals = max(decimals - 1, 0)  # 0.9996 -> 1.00, not 1.000
    return f"{rounded:,.{decimals}f}"


def _records(rows) -> tuple[list[Mapping], list[str]]:
    """Rows as dicts, and their columns: a list of dicts or a pandas DataFrame."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a DataFrame; pandas stays optional
        return rows.to_dict("records"), [str(c) for c in rows.columns]
    rows = list(rows)
    return rows, list(rows[0]) if rows else []


def markdown_table(rows: Iterable[Mapping] | object, columns: list[str] | None = None) -> str:
    """A GitHub Markdown table of ``rows`` (dicts or a DataFrame), in the order of ``columns``.

    Every cell goes through :func:`fmt_number`; a ``|`` inside a cell is escaped.
    """
    records, found = _records(rows)
    columns = columns or found
    if not records:
        return "(no rows)\n"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in records:
        cells = (fmt_number(row.get(c)).replace("|", "\\|") for c in columns)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` (dicts with the same keys) as CSV, atomically; returns ``path``."""
    with atomic_open(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
    return path
