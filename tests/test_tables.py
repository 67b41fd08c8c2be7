"""The one number formatter and Markdown-table helper shared by every report (lrbench.tables)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lrbench.tables import fmt_number, markdown_table

PLANTED = [
    (1.458e04, "14,580"),  # a time in ms that used to print as 1.458e+04
    (0.2237, "0.224"),  # a percentage that used to print as 0.2237
    (12.345, "12.3"),
    (1.5, "1.50"),  # significant digits keep their trailing zeros: columns line up
    (43.0, "43"),  # a count read from a CSV column with blanks (float) stays a count
    (0.9996, "1.00"),  # rounding up to the next decade does not add a digit
    (99.96, "100"),
    (999.6, "1,000"),
    (123.4, "123"),
    (25_557_032, "25,557,032"),  # integers keep every digit
    (np.int64(4_089_184_256), "4,089,184,256"),
    (np.float32(0.5), "0.500"),
    (-0.2237, "-0.224"),
    (0.0, "0"),
    (2.301e-05, "2.3e-05"),  # below 0.001 an exponent reads better than zeros
    (math.nan, ""),
    (None, ""),
    (True, "yes"),
    ("op:unfold", "op:unfold"),
]


@pytest.mark.parametrize(("value", "text"), PLANTED, ids=[repr(v) for v, _ in PLANTED])
def test_fmt_number(value, text):
    assert fmt_number(value) == text


def test_no_exponent_for_ordinary_values():
    for value in np.geomspace(1e-3, 1e12, 200):
        assert "e" not in fmt_number(float(value)), value


def test_one_table_helper_for_dicts_and_frames():
    rows = [{"case": "a|b", "ms": 1.458e04, "speedup": 0.2237}, {"case": "c", "ms": None, "speedup": 2.0}]
    expected = ("| case | ms | speedup |\n|---|---|---|\n| a\\|b | 14,580 | 0.224 |\n"
                "| c |  | 2 |\n")
    assert markdown_table(rows) == expected
    assert markdown_table(pd.DataFrame(rows)) == expected  # None becomes NaN in a frame: blank too
    assert markdown_table(rows, ["speedup"]) == "| speedup |\n|---|\n| 0.224 |\n| 2 |\n"
    assert markdown_table([]) == "(no rows)\n"
