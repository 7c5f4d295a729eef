"""Small building blocks of the dashboard pages: figures, HTML blocks and tables.

Both pages (the planner's and the live site's) write their panels as HTML rather than
Markdown, because Solara's Markdown loads a math renderer from a CDN that the server's
users may not reach.
"""

from __future__ import annotations

from html import escape

import solara
from matplotlib.figure import Figure

TABLE_STYLE = "border-collapse:collapse;font-size:14px;width:100%"
CELL_STYLE = "padding:3px 8px;border-bottom:1px solid #e0e0e0;text-align:right"


def figure(width: float = 6.4, height: float = 3.6) -> Figure:
    """A matplotlib figure (not pyplot's: no global state between sessions)."""
    return Figure(figsize=(width, height), layout="constrained")


def html_block(body: str, css_class: str, style: str = "") -> None:
    """A block of HTML with a CSS class the browser tests find it by."""
    solara.HTML(tag="div", unsafe_innerHTML=body, classes=[css_class], style=style)


def table(head: list[str], rows: list[list[str]], row_attrs: list[str] | None = None) -> str:
    """An HTML table: ``head`` is escaped, the cells are HTML already.

    ``row_attrs`` are extra attributes per row (e.g. ``data-sector="picking"``), so a
    test can find a row by what it is rather than by its position.
    """
    th = "".join(f'<th style="{CELL_STYLE}">{escape(h)}</th>' for h in head)
    attrs = row_attrs or [""] * len(rows)
    body = "".join(
        f"<tr {a}>".replace(" >", ">")
        + "".join(f'<td style="{CELL_STYLE}">{c}</td>' for c in row)
        + "</tr>"
        for row, a in zip(rows, attrs, strict=True)
    )
    return f'<table style="{TABLE_STYLE}"><tr>{th}</tr>{body}</table>'
