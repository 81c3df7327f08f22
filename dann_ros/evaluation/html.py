"""One self-contained HTML page per report: inline CSS, PNGs as base64 data URIs, no scripts,
nothing fetched, so it opens anywhere (a browser offline, an e-mail attachment, a CI artifact)."""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from dann_ros.atomic_io import write_text

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px auto;
max-width:1320px;padding:0 16px;color:#1d1d1f;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{font-size:1.3em;margin-top:1.6em;border-bottom:1px solid #ddd}
h3{font-size:1.1em}
table{border-collapse:collapse;margin:.6em 0;font-size:.95em}
th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#f2f2f2}
td.l,th.l{text-align:left}
figure{display:inline-block;margin:8px 16px 16px 0;vertical-align:top}
figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#555;max-width:760px}
.note{padding:8px 12px;border-left:4px solid #888;background:#f6f6f6;margin:.6em 0}
.warn{border-color:#d98e04;background:#fff7e6}.error{border-color:#c62828;background:#fdecea}
.ok{border-color:#2e7d32;background:#edf7ee}
code{background:#f2f2f2;padding:1px 4px;border-radius:3px}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}%"


class Page:
    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{esc(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        self.parts.append(f"<p>{esc(text)}</p>")

    def note(self, text: str, kind: str = "warn") -> None:
        self.parts.append(f'<div class="note {esc(kind)}">{esc(text)}</div>')

    def table(self, header: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1) -> None:
        """``left``: how many leading columns are text (left-aligned)."""
        head = "".join(f'<th class="{"l" if i < left else ""}">{esc(h)}</th>' for i, h in enumerate(header))
        body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{esc(fmt(v))}</td>'
                                        for i, v in enumerate(row)) + "</tr>" for row in rows)
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def keyvalues(self, pairs: Iterable[tuple[str, Any]]) -> None:
        body = "".join(f'<tr><th class="l">{esc(k)}</th><td class="l">{esc(fmt(v))}</td></tr>' for k, v in pairs)
        self.parts.append(f"<table><tbody>{body}</tbody></table>")

    def figure(self, png: bytes, caption: str, alt: str | None = None) -> None:
        data = base64.b64encode(png).decode("ascii")
        self.parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt or caption)}">'
                          f"<figcaption>{esc(caption)}</figcaption></figure>")

    def raw(self, markup: str) -> None:
        self.parts.append(markup)

    def render(self) -> str:
        body = "\n".join(self.parts)
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f'<link rel="icon" href="data:,">'
                f"<title>{esc(self.title)}</title><style>{CSS}</style></head>\n"
                f"<body><h1>{esc(self.title)}</h1>\n{body}\n</body></html>\n")

    def write(self, path: str | os.PathLike[str]) -> Path:
        return write_atomic(path, self.render())


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays unwrapped, NaN/inf -> null (strict JSON has neither)."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_atomic(path: str | os.PathLike[str], text: str) -> Path:
    return write_text(path, text)

