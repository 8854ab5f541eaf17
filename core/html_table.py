"""HTML tables of the reports (evaluation, experiments): cells and a table from rows."""

from __future__ import annotations

import html
from typing import Any


def cell(value: Any) -> str:
    """A table cell's text: floats to 3 decimals, a dash for None, other values escaped."""
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table of a header row and rows of cells (given as HTML)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
