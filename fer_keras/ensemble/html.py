"""One self-contained ``report.html``: the tables and every figure of a run.

Figures are embedded as base64 ``data:image/png`` URIs and the style sheet is
inline, so the file opens from disk, from an e-mail or an artefact store: no
server, no external assets.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from fer_keras.io_utils import write_text_atomic
from fer_keras.tables import format_cell

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; border: 1px solid #eee; }
ul.facts { font-size: 0.9em; } .note { font-size: 0.85em; color: #555; }
"""


def png_data_uri(path):
    """``data:image/png;base64,...`` for a PNG file."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def html_table(headers, rows, *, align=None):
    """An HTML table; cells formatted as in the text tables (4 decimals, None as '-')."""
    align = align or ["<"] + [">"] * (len(headers) - 1)
    cls = [' class="l"' if a == "<" else "" for a in align]
    head = "".join(f"<th{c}>{html.escape(str(h))}</th>" for h, c in zip(headers, cls))
    body = "\n".join("<tr>" + "".join(f"<td{c}>{html.escape(format_cell(v))}</td>" for v, c in zip(row, cls))
                     + "</tr>" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def render_html(title, facts, sections, figures):
    """The page: ``facts`` (list of strings), ``sections`` (list of ``(heading, [table dict or
    text])`` where a table dict holds ``headers``, ``rows`` and optionally ``align`` and ``note``),
    ``figures`` (list of ``(caption, png path)``)."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title>", f"<style>{_STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", '<ul class="facts">']
    parts += [f"<li>{html.escape(f)}</li>" for f in facts]
    parts.append("</ul>")
    for heading, blocks in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for block in blocks:
            if isinstance(block, dict):
                if block.get("caption"):
                    parts.append(f"<p><b>{html.escape(block['caption'])}</b></p>")
                parts.append(html_table(block["headers"], block["rows"], align=block.get("align")))
                if block.get("note"):
                    parts.append(f'<p class="note">{html.escape(block["note"])}</p>')
            else:
                parts.append(f"<p>{html.escape(str(block))}</p>")
    if figures:
        parts.append("<h2>Figures</h2>")
        for caption, path in figures:
            parts.append(f'<figure><img alt="{html.escape(caption)}" src="{png_data_uri(path)}">'
                         f"<figcaption>{html.escape(caption)} ({html.escape(Path(path).name)})</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(path, title, facts, sections, figures):
    """Write :func:`render_html` to ``path`` (atomic); returns the path."""
    write_text_atomic(path, render_html(title, facts, sections, figures))
    return Path(path)


__all__ = ["html_table", "png_data_uri", "render_html", "write_html"]
