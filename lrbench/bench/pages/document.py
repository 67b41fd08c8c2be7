"""A page as a list of blocks, and its Markdown rendering.

Text blocks hold a small subset of Markdown: paragraphs, ``- `` and ``1. `` list lines,
`` `code` ``, ``**bold**`` and ``[links](target)``; :mod:`lrbench.bench.pages.html` renders the same
subset as HTML, so one document gives the Markdown report and the HTML page alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from lrbench.tables import markdown_table


@dataclass(frozen=True)
class Heading:
    level: int  # 1 for the title
    text: str


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame


@dataclass(frozen=True)
class Image:
    name: str  # a PNG beside the page
    alt: str = ""


Block = Heading | Text | Table | Image


def section(level: int, title: str, intro: str, table: pd.DataFrame) -> list[Block]:
    """A heading, its explanation and its table; nothing when the table is empty."""
    if table.empty:
        return []
    return [Heading(level, title), *([Text(intro)] if intro else []), Table(table)]


def to_markdown(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Text):
            parts.append(block.text)
        elif isinstance(block, Table):
            parts.append(markdown_table(block.frame).rstrip("\n"))
        elif isinstance(block, Image):
            parts.append(f"![{block.alt or block.name}]({block.name})")
        else:
            raise TypeError(f"blocks: expected Heading, Text, Table or Image, got {block!r}")
    return "\n\n".join(parts) + "\n"
