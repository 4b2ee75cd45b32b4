"""A `Report` as Markdown (report.md) and as one self-contained HTML file (report.html, plots
embedded as data URIs, readable offline)."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

from .. import runs
from .document import Report, as_data


def _inline_html(text: str) -> str:
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def markdown(report: Report) -> str:
    lines = [f"# {report.title}", "", report.subtitle, ""]
    for s in report.sections:
        lines += [f"## {s.title}", ""]
        for p in s.text:
            lines += [p, ""]
        for t in s.tables:
            if t.caption:
                lines += [f"*{t.caption}*", ""]
            lines.append("| " + " | ".join(t.header) + " |")
            lines.append("| " + " | ".join("---" for _ in t.header) + " |")
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in t.rows]
            lines.append("")
        for f in s.figures:
            lines += [f"![{f.caption}]({f.path.name})", "", f"*{f.caption}*", ""]
        if s.commands:
            lines += ["Reproduce:", "", "```sh", *s.commands, "```", ""]
    return "\n".join(lines)


_CSS = """
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#1f2328}
h1{font-size:1.7em;margin-bottom:.2em} h2{margin-top:2em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
.sub{color:#57606a} table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:.3em .6em;text-align:right} th{background:#f6f8fa}
td:first-child,th:first-child{text-align:left} caption{caption-side:top;text-align:left;color:#57606a;padding:.3em 0}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eaeef2} figcaption{color:#57606a;font-size:.9em}
pre{background:#f6f8fa;padding:.7em;overflow-x:auto;font-size:.85em} code{background:#f6f8fa;padding:0 .2em}
nav a{margin-right:1em}
"""


def to_html(report: Report) -> str:
    """One HTML file with every plot embedded (data: URIs), so it opens offline anywhere."""
    out = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(report.title)}</title><style>{_CSS}</style></head><body>",
           f"<h1>{html.escape(report.title)}</h1>", f'<p class="sub">{_inline_html(report.subtitle)}</p>']
    if len(report.sections) > 1:
        out.append("<nav>" + "".join(f'<a href="#s{i}">{html.escape(s.title)}</a>'
                                     for i, s in enumerate(report.sections, 1)) + "</nav>")
    for i, s in enumerate(report.sections, 1):
        out.append(f'<h2 id="s{i}">{html.escape(s.title)}</h2>')
        out += [f"<p>{_inline_html(p)}</p>" for p in s.text]
        for t in s.tables:
            out.append("<table>" + (f"<caption>{_inline_html(t.caption)}</caption>" if t.caption else ""))
            out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in t.header) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in t.rows]
            out.append("</table>")
        for f in s.figures:
            data = base64.b64encode(f.path.read_bytes()).decode()
            out.append(f'<figure><img alt="{html.escape(f.caption)}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{_inline_html(f.caption)}</figcaption></figure>")
        if s.commands:
            out.append("<p>Reproduce:</p><pre>" + html.escape("\n".join(s.commands)) + "</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def write(report: Report, out: Path) -> dict[str, Any]:
    """report.md, report.html and report.json (the same as data) into `out` (the PNGs are already there);
    their paths."""
    out.mkdir(parents=True, exist_ok=True)
    md, page, data = out / "report.md", out / "report.html", out / "report.json"
    as_json = json.dumps(runs.clean(as_data(report)), indent=1, sort_keys=True) + "\n"
    for path, text in ((md, markdown(report)), (page, to_html(report)), (data, as_json)):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return {"html": page, "markdown": md, "json": data, "figures": [f.path for s in report.sections for f in s.figures]}
