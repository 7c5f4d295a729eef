"""One document builder for every report: sections of text, tables and figures.

A :class:`Document` is a title, an optional lead (paragraphs under the title) and
sections, each a heading and blocks: paragraphs (with bold, italic and code spans),
notes and warnings, bullet lists, tables (from a pandas DataFrame or rows), figures
(matplotlib, embedded as base64 PNG) and preformatted text. It renders to one
self-contained HTML page or to Markdown (figures written as PNG files next to it),
through the Jinja2 templates in ``templates/`` (one shared stylesheet). HTML output
is autoescaped: scenario names, notes and other user text cannot inject markup.

Numbers are formatted here and only here (:func:`fmt`, :func:`ci`); figures become
PNG here and only here (:func:`png_bytes`).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jinja2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

DASH = "–"


# --------------------------------------------------------------------------- formatting


def fmt(x: object, digits: int = 1, general_below: float = 0.0) -> str:
    """A cell's text: ``–`` for missing or non-finite, ``yes``/``no``, ``1,234`` or ``1,234.5``.

    Floats get ``digits`` decimals, or ``digits`` significant digits when their size is
    under ``general_below`` (so 0.00012 does not print as 0.000). Anything else: ``str(x)``.
    """
    if x is None:
        return DASH
    if isinstance(x, bool | np.bool_):
        return "yes" if x else "no"
    if isinstance(x, int | np.integer):
        return f"{int(x):,}"
    if isinstance(x, float | np.floating):
        v = float(x)
        if not math.isfinite(v):
            return DASH
        return f"{v:,.{digits}g}" if abs(v) < general_below else f"{v:,.{digits}f}"
    return str(x)


def fixed(x: object, digits: int = 1) -> str:
    """``x`` with exactly ``digits`` decimals, ints included (``–`` if missing)."""
    if isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_):
        x = float(x)
    return fmt(x, digits)


def ci(mean: float, low: float, high: float, digits: int = 1) -> str:
    """``mean [low, high]``, or the mean alone when the interval is undefined."""
    if low is None or not np.isfinite(low):
        return fixed(mean, digits)
    return f"{fixed(mean, digits)} [{fixed(low, digits)}, {fixed(high, digits)}]"


# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Span:
    """Inline text with a style: ``b`` (bold), ``i`` (italic) or ``code``."""

    style: str
    text: str


def bold(text: object) -> Span:
    return Span("b", str(text))


def italic(text: object) -> Span:
    return Span("i", str(text))


def code(text: object) -> Span:
    return Span("code", str(text))


Inline = str | Span


def _spans(parts: Iterable[Inline | object]) -> tuple[Span, ...]:
    return tuple(p if isinstance(p, Span) else Span("", str(p)) for p in parts)


@dataclass(frozen=True)
class Paragraph:
    parts: tuple[Span, ...]
    css_class: str = ""  # "" | "note" | "warn"
    kind: str = "paragraph"


@dataclass(frozen=True)
class Bullets:
    items: tuple[tuple[Span, ...], ...]
    kind: str = "bullets"


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    kind: str = "table"


@dataclass(frozen=True)
class Figure:
    png: bytes
    name: str
    kind: str = "figure"

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass(frozen=True)
class Preformatted:
    text: str
    kind: str = "pre"


Block = Paragraph | Bullets | Table | Figure | Preformatted


def png_bytes(fig: plt.Figure) -> bytes:
    """The figure as PNG (90 dpi, tight), and the figure closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def table_cells(
    data: pd.DataFrame | Sequence[Mapping[str, object]] | Sequence[Sequence[object]],
    columns: Sequence[str] | None = None,
    digits: int | Mapping[str, int] = 3,
    general_below: float = 0.0,
) -> Table:
    """A table block: every cell through :func:`fmt` (strings pass through unchanged).

    ``data`` is a DataFrame, a list of dicts (columns: the first dict's keys unless given)
    or a list of row sequences (``columns`` required). ``digits`` may differ per column.
    """
    if isinstance(data, pd.DataFrame):
        cols = [str(c) for c in data.columns]
        rows: Iterable[Sequence[object]] = data.itertuples(index=False)
    elif data and isinstance(data[0], Mapping):
        cols = list(columns or data[0].keys())  # type: ignore[union-attr]
        rows = ([r.get(c) for c in cols] for r in data)  # type: ignore[union-attr]
    else:
        cols = list(columns or [])
        rows = data  # type: ignore[assignment]

    def dig(col: str) -> int:
        return digits.get(col, 3) if isinstance(digits, Mapping) else digits

    body = tuple(
        tuple(fmt(v, dig(c), general_below) for c, v in zip(cols, row, strict=True)) for row in rows
    )
    return Table(tuple(cols), body)


# --------------------------------------------------------------------------- sections


@dataclass
class Section:
    """A heading (optional: the lead under the title has none) and its blocks, in order."""

    heading: tuple[Span, ...] = ()
    blocks: list[Block] = field(default_factory=list)

    def add(self, block: Block) -> Section:
        self.blocks.append(block)
        return self

    def paragraph(self, *parts: Inline) -> Section:
        return self.add(Paragraph(_spans(parts)))

    def note(self, *parts: Inline) -> Section:
        """A paragraph in the quieter note style."""
        return self.add(Paragraph(_spans(parts), "note"))

    def warning(self, *parts: Inline) -> Section:
        """A paragraph highlighted as a warning."""
        return self.add(Paragraph(_spans(parts), "warn"))

    def bullets(self, items: Iterable[Inline | Sequence[Inline]]) -> Section:
        """A bullet list (in the note style); an item is text or a sequence of spans."""
        spans = tuple(_spans([i] if isinstance(i, str | Span) else i) for i in items)
        return self.add(Bullets(spans))

    def table(
        self,
        data: pd.DataFrame | Sequence[Mapping[str, object]] | Sequence[Sequence[object]],
        columns: Sequence[str] | None = None,
        digits: int | Mapping[str, int] = 3,
        general_below: float = 0.0,
    ) -> Section:
        """A table (see :func:`table_cells`)."""
        return self.add(table_cells(data, columns, digits, general_below))

    def figure(self, fig: plt.Figure, name: str = "plot") -> Section:
        """A matplotlib figure, embedded as PNG (the figure is closed)."""
        return self.add(Figure(png_bytes(fig), name))

    def preformatted(self, text: str) -> Section:
        return self.add(Preformatted(text))


@dataclass
class Document:
    """A report: ``title`` (the page's title), ``heading`` (its first heading; the title
    unless given), an optional ``subtitle`` paragraph, the lead and the sections."""

    title: str
    subtitle: str | Sequence[Inline] | None = None
    heading: str | Sequence[Inline] | None = None
    lead: Section = field(default_factory=Section)
    sections: list[Section] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.subtitle:
            parts = [self.subtitle] if isinstance(self.subtitle, str) else self.subtitle
            self.lead.paragraph(*parts)

    @property
    def heading_spans(self) -> tuple[Span, ...]:
        h = self.title if self.heading is None else self.heading
        return _spans([h] if isinstance(h, str) else h)

    def section(self, *heading: Inline) -> Section:
        """A new section under ``heading`` (text and spans), added at the end."""
        s = Section(_spans(heading))
        self.sections.append(s)
        return s

    def render_html(self) -> str:
        """One self-contained HTML page (autoescaped)."""
        return _env().get_template("document.html.j2").render(doc=self)

    def render_markdown(self, figure_dir: Path) -> str:
        """Markdown; figures are written as ``figure_dir/<name>.png``."""
        figures = {}
        for s in [self.lead, *self.sections]:
            for b in s.blocks:
                if isinstance(b, Figure):
                    figure_dir.mkdir(parents=True, exist_ok=True)
                    path = figure_dir / f"{b.name}.png"
                    path.write_bytes(b.png)
                    figures[b.name] = f"{figure_dir.name}/{path.name}"
        text = _env().get_template("document.md.j2").render(doc=self, figures=figures)
        return text.strip("\n") + "\n"

    def write(self, path: Path) -> Path:
        """Write HTML (``.html``/``.htm``) or Markdown (anything else, figures in
        ``<stem>_files/``); the parent directory is created."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() in (".html", ".htm"):
            text = self.render_html()
        else:
            text = self.render_markdown(path.with_name(f"{path.stem}_files"))
        path.write_text(text, encoding="utf-8")
        return path


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


_MD_STYLE = {"b": "**", "i": "*", "code": "`", "": ""}


def _md_spans(spans: Sequence[Span]) -> str:
    return "".join(f"{_MD_STYLE[s.style]}{s.text}{_MD_STYLE[s.style]}" for s in spans)


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("experiments.reporting", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["md_cell"] = _md_cell
    env.filters["md_spans"] = _md_spans
    return env
