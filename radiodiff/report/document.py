"""The report as a document: HTML and Markdown written side by side, figures embedded as data
URIs in the HTML and linked under ``figures/`` from the Markdown, and its own CSS. Its figures
are drawn by a :class:`~radiodiff.report.render.Renderer`, maybe while the document goes on; the
HTML reads each PNG when it is rendered."""

from __future__ import annotations

import base64
import html
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from radiodiff.report.figures import Style
from radiodiff.report.render import Renderer


def fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    if isinstance(v, float | np.floating):
        if not np.isfinite(v):
            return "–"
        a = abs(float(v))
        return f"{v:.4g}" if a == 0 or 1e-3 <= a < 1e5 else f"{v:.3e}"
    return str(v)


@dataclass(frozen=True)
class _Image:
    """A figure's place in the HTML, filled with its PNG when the page is rendered."""

    path: Path
    alt: str
    caption: str

    def html(self) -> str:
        data = base64.b64encode(self.path.read_bytes()).decode("ascii")
        return (
            f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(self.alt)}">'
            f"<figcaption>{_inline(self.caption)}</figcaption></figure>"
        )


@dataclass
class Doc:
    """The report as HTML and Markdown at once; figures go to ``figures/`` and into the HTML.
    ``renderer`` draws the figures (by default in this process, one at a time)."""

    figures_dir: Path
    style: Style
    renderer: Renderer | None = None
    html: list[str | _Image] = field(default_factory=list)
    md: list[str] = field(default_factory=list)
    toc: list[tuple[str, str, int]] = field(default_factory=list)
    figure_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.renderer is None:
            self.renderer = Renderer(self.style)

    def heading(self, text: str, level: int = 2, anchor: str | None = None) -> None:
        anchor = anchor or "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
        self.toc.append((anchor, text, level))
        self.html.append(f'<h{level} id="{anchor}">{html.escape(text)}</h{level}>')
        self.md.append(f"\n{'#' * level} {text}\n")

    def para(self, text: str) -> None:
        self.html.append(f"<p>{_inline(text)}</p>")
        self.md.append(f"{text}\n")

    def pre(self, text: str, lang: str = "") -> None:
        self.html.append(f"<pre>{html.escape(text)}</pre>")
        self.md.append(f"```{lang}\n{text.rstrip()}\n```\n")

    def table(self, rows: list[dict], columns=None, css: str = "", best: dict | None = None, html_id: str = "") -> None:
        """A table of dicts; ``best`` maps a column to the row index to set in bold."""
        if not rows:
            self.para("(no rows)")
            return
        columns = list(columns or dict.fromkeys(k for r in rows for k in r))
        best = best or {}
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        body = []
        md = ["| " + " | ".join(str(c) for c in columns) + " |", "|" + "---|" * len(columns)]
        for i, r in enumerate(rows):
            cells, mcells = [], []
            for c in columns:
                text = fmt(r.get(c))
                bold = best.get(c) == i
                cells.append(f"<td>{'<b>' if bold else ''}{_inline(text)}{'</b>' if bold else ''}</td>")
                mcells.append(f"**{text}**" if bold else text.replace("|", "\\|"))
            body.append("<tr>" + "".join(cells) + "</tr>")
            md.append("| " + " | ".join(mcells) + " |")
        attrs = (f' id="{html_id}"' if html_id else "") + (f' class="{css}"' if css else "")
        self.html.append(f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
        self.md.append("\n".join(md) + "\n")

    def figure(self, draw: Callable[[], Figure], name: str, caption: str) -> None:
        """``draw`` makes the figure: a :func:`functools.partial` of a :mod:`~radiodiff.report.figures`
        function, its arguments bound now; it runs under the style's rc, maybe later in another
        process, so nothing it was given may change afterwards."""
        path = self.figures_dir / f"{name}.png"
        self.renderer.submit(draw, path)
        self._embed(path, name, caption)

    def image_file(self, src: Path, name: str, caption: str) -> None:
        """An existing PNG (an EDA figure, the Graphviz DAG), copied into ``figures/``."""
        path = self.figures_dir / f"{name}.png"
        if src != path:
            shutil.copyfile(src, path)
        self._embed(path, name, caption)

    def _embed(self, path: Path, name: str, caption: str) -> None:
        self.figure_names.append(path.name)
        self.html.append(_Image(path, name, caption))
        self.md.append(f"![{caption}](figures/{path.name})\n")

    def render_html(self, title: str) -> str:
        """The page, every figure embedded (waits for the figures still being drawn)."""
        self.renderer.wait()
        body = "".join(part.html() if isinstance(part, _Image) else part for part in self.html)
        toc = "".join(
            f'<li class="l{level}"><a href="#{a}">{html.escape(t)}</a></li>' for a, t, level in self.toc if level <= 3
        )
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><nav><ul>{toc}</ul></nav><main>{body}</main></body></html>\n"
        )

    def render_md(self, title: str) -> str:
        return f"# {title}\n\n" + "\n".join(self.md)


def _inline(text: str) -> str:
    """Escape, then turn `code` spans into <code> (the only markup the texts use)."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1280px;
padding:1em 2em;color:#222}
h1{border-bottom:2px solid #5b7bd5}h2{margin-top:2em;border-bottom:1px solid #ccc}
nav ul{columns:3;font-size:.9em}nav li.l3{margin-left:1.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right}th{background:#eef2fb}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}img{max-width:100%;height:auto}figcaption{font-size:.88em;color:#555}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.8em;max-height:36em}
code{background:#f0f0f0;padding:0 .2em}
"""
