"""The report page: one self-contained HTML file (inline CSS, images as base64 PNG data URIs)."""
from __future__ import annotations

import base64
import math
from html import escape

SECTIONS = ("atlas", "uncertainty", "subpopulations", "latent-map", "training", "metrics")

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d1d1f;
       max-width: 1180px; margin: 0 auto; padding: 24px; line-height: 1.45; background: #fff; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 2em; }
nav a { margin-right: 14px; }
.meta { color: #555; }
figure { margin: 12px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, .note { color: #555; font-size: 0.92em; }
table { border-collapse: collapse; font-size: 0.92em; margin: 8px 0; }
th, td { border: 1px solid #d0d0d0; padding: 4px 9px; text-align: right; }
th { background: #f3f3f3; }
td.key, th.key { text-align: left; font-family: ui-monospace, Menlo, Consolas, monospace; }
tr.flagged td { background: #fde8ea; }
.flag { color: #b00020; font-weight: 600; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def fmt(value) -> str:
    """A table cell: None/NaN as a dash, floats to 4 significant digits, lists comma-joined."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return escape(str(value))


def figure(png: bytes, alt: str, caption: str) -> str:
    return (f'<figure><img src="{data_uri(png)}" alt="{escape(alt)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}">\n<h2>{escape(title)}</h2>\n{body}\n</section>'


def table(header: list[str], rows: list[list[str]], row_classes: list[str] | None = None,
          key_columns: int = 1) -> str:
    """header and cells are HTML already (escape text with ``fmt``)."""
    head = "".join(f'<th class="key">{h}</th>' if i < key_columns else f"<th>{h}</th>" for i, h in enumerate(header))
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_classes[r]}"' if row_classes and row_classes[r] else ""
        cells = "".join(f'<td class="key">{c}</td>' if i < key_columns else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(title: str, meta: str, sections: list[str]) -> str:
    nav = " ".join(f'<a href="#{s}">{s}</a>' for s in SECTIONS)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>{escape(title)}</h1>\n<p class=\"meta\">{meta}</p>\n<nav>{nav}</nav>\n"
            + "\n".join(sections) + "\n</body>\n</html>\n")
