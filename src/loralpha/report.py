"""`loralpha report PATH`: a run directory, a sweep store or a demo directory as report.html
(self-contained: plots embedded as data URIs, readable offline), report.md (the same tables,
for a terminal or a pull request) and the PNG plots beside them.

A report is a list of sections; each has paragraphs stating what was measured, tables that
say what was run, figures with labelled axes, and the command that reproduces it. The demo's
sections live in `loralpha.demo_report`; a single run and a sweep store are rendered here.
"""

from __future__ import annotations

import base64
import html
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from . import runs
from .errors import UsageError


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    path: Path  # a PNG beside the report
    caption: str


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # paragraphs; `code` spans allowed
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # what reproduces the section


@dataclass
class Report:
    title: str
    subtitle: str
    sections: list[Section]


# ------------------------------------------------------------------ numbers and commands


def fmt(value: Any, spec: str = ".4g", none: str = "—") -> str:
    """A number for a table: `none` for missing or non-finite values (no NaN ever shown)."""
    if value is None:
        return none
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, spec) if math.isfinite(value) else none
    return str(value)


def train_command(config: dict[str, Any]) -> str:
    """The `loralpha train` command line of a TrainConfig dict (only what differs from the defaults)."""
    from dataclasses import fields

    from .train import TrainConfig

    defaults = {f.name: getattr(TrainConfig(), f.name) for f in fields(TrainConfig)}
    parts = ["loralpha train"]
    first = ("task", "rule", "rank")
    for name, value in sorted(config.items(), key=lambda kv: (kv[0] not in first, first.index(kv[0]) if kv[0] in first else 0)):
        if name == "task_options" or name not in defaults or (name != "task" and value == defaults[name]):
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{flag[2:]}")
        elif name == "track_every":
            parts.append(f"--track signal-drift:{value}")
        elif name == "targets":
            parts.append(f"{flag} {','.join(value)}")
        elif name == "rank_pattern":
            parts.append(f"{flag} {','.join(f'{k}={v}' for k, v in value.items())}")
        else:
            parts.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    options = {k: v for k, v in (config.get("task_options") or {}).items() if v is not None}
    if options.get("teacher") == "low-rank":  # the default
        del options["teacher"]
    for key in ("model", "data", "max_length", "teacher"):
        if key in options:
            parts.append(f"--{key.replace('_', '-')} {options.pop(key)}")
    if options:
        parts.append("--task-options " + ",".join(f"{k}={v}" for k, v in options.items()))
    return " ".join(p for p in parts if p)


# ------------------------------------------------------------------ rendering


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
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1f2328}
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
    """report.md and report.html into `out` (the PNGs are already there); their paths."""
    out.mkdir(parents=True, exist_ok=True)
    md, page = out / "report.md", out / "report.html"
    for path, text in ((md, markdown(report)), (page, to_html(report))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return {"html": page, "markdown": md, "figures": [f.path for s in report.sections for f in s.figures]}


# ------------------------------------------------------------------ plots shared by the reports


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def running_mean(values: Sequence[float], window: int = 10) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def curves(run_dir: Path) -> dict[str, Any]:
    """Train loss per step and held-out metrics per evaluation step of a run directory."""
    rows = runs.read_metrics(run_dir)
    loss = [(r["step"], r["loss"]) for r in rows if "loss" in r and r["loss"] is not None]
    evals: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        for k, v in r.items():
            if k not in ("step", "loss", "lr") and isinstance(v, (int, float)) and math.isfinite(v):
                evals.setdefault(k, []).append((r["step"], v))
    return {"loss": loss, "eval": evals}


def plot_curves(named: dict[str, dict[str, Any]], metric: str, path: Path, title: str,
                loss_line: tuple[float, str] | None = None, metric_line: tuple[float, str] | None = None) -> Path:
    """Left: train loss (running mean of 10 steps) per step; right: held-out `metric` per step."""
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for i, (name, c) in enumerate(named.items()):
        if c["loss"]:
            steps, values = zip(*c["loss"])
            ax.plot(steps, running_mean(list(values)), color=f"C{i % 10}", label=name)
        if c["eval"].get(metric):
            steps, values = zip(*c["eval"][metric])
            bx.plot(steps, values, "o-", ms=3, color=f"C{i % 10}", label=name)
    if loss_line:
        ax.axhline(loss_line[0], color="k", ls=":", lw=1, label=loss_line[1])
    if metric_line:
        bx.axhline(metric_line[0], color="k", ls=":", lw=1, label=metric_line[1])
    ax.set_ylabel("train loss (mean of the last 10 steps)")
    bx.set_ylabel(f"held-out {metric}")
    for a in (ax, bx):
        a.set_xlabel("optimizer step")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ a run directory


def _run_report(run_dir: Path, out: Path) -> Report:
    try:
        config = runs.read_json(run_dir / "config.json")
    except (OSError, ValueError) as e:
        raise UsageError(f"{run_dir / 'config.json'} is missing or not JSON ({e}); is {run_dir} a run directory?") from None
    summary = runs.read_json(run_dir / "summary.json") if (run_dir / "summary.json").exists() else None
    train_config = config.get("config", {})
    task = train_config.get("task", "?")
    metric = config.get("metric") or "loss"
    c = curves(run_dir)
    figure = plot_curves({train_config.get("rule", "run"): c}, metric, out / "curves.png",
                         f"{task}: {train_config.get('rule', '?')} at rank {train_config.get('rank', '?')}")
    status = summary["status"] if summary else "unfinished (no summary.json)"
    rows = [["status", status], ["steps", fmt(summary["steps"] if summary else (c["loss"][-1][0] if c["loss"] else 0))],
            ["lora_alpha (α)", fmt(config.get("lora_alpha"))], ["γ = α/r", fmt(config.get("gamma"), ".3g")],
            ["η", fmt(config.get("lr"), ".3g")], ["batch size", fmt(train_config.get("batch_size") or
                                                                    config.get("task_info", {}).get("batch_size"))],
            ["seed", fmt(config.get("seed"))], ["trainable parameters", fmt(config.get("trainable_params"), ",")]]
    if summary:
        rows.append(["final train loss (mean of last 10 steps)", fmt(summary.get("final_loss"))])
        rows += [[f"held-out {k}", fmt(v)] for k, v in summary.get("eval", {}).items()]
        rows.append(["wall time", f"{fmt(summary.get('wall_time_s'), '.1f')} s"])
        if summary.get("reason"):
            rows.append(["note", summary["reason"]])
    text = [f"One run of `{task}` under rule `{train_config.get('rule', '?')}`: "
            f"{'it finished' if status == 'done' else 'status ' + status}."]
    return Report(title=f"loralpha run: {run_dir.name}", subtitle=f"run directory {run_dir}",
                  sections=[Section("Run", text, [Table(["", "value"], rows, "what was run and what it reached")],
                                    [Figure(figure, f"Train loss and held-out {metric} per step")],
                                    [train_command(train_config)] if train_config else [])])


# ------------------------------------------------------------------ a sweep store


def _store_report(store_path: Path, out: Path) -> Report:
    from .demo_report import law_section
    from .records import is_higher_better, load_records, metric_value

    records = load_records(store_path)
    if not records:
        raise UsageError(f"{store_path} holds no trials")
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    metric = next((r.get("metric") for r in records if r.get("metric")), "final_loss")
    varying = [k for k in records[0]["config"] if len({repr(r["config"].get(k)) for r in records}) > 1]
    sections = []
    done = [r for r in records if r["status"] == "done"]
    higher = is_higher_better(metric, None)

    def score(r):
        v = metric_value(r, metric)
        return math.inf if v is None else (-v if higher else v)

    best = sorted(done, key=score)[:20]
    header = ["trial", *varying, "status", "final train loss", f"held-out {metric}", "wall time"]
    rows = [[r["id"][:8], *[fmt(r["config"].get(k)) for k in varying], r["status"], fmt(r.get("final_loss")),
             fmt(metric_value(r, metric)), f"{fmt(r.get('wall_time_s'), '.0f')} s"] for r in best]
    task = records[0]["config"].get("task", "?")
    text = [f"{len(records)} trials of `{task}`: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + "."
            + (f" Varied: {', '.join(varying)}." if varying else "")]
    sections.append(Section("Trials", text, [Table(header, rows, f"the best {len(best)} finished trials by {metric}")],
                            commands=[f"loralpha report {store_path}", f"loralpha fit {store_path} --metric {metric}"]))
    if "rank" in varying and ("alpha" in varying or "coef" in varying):
        sections.append(law_section(records, metric, out, f"loralpha fit {store_path} --metric {metric}"))
    return Report(title=f"loralpha sweep: {store_path.parent.name}", subtitle=f"sweep store {store_path}",
                  sections=sections)


# ------------------------------------------------------------------ entry point


def build(path: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """The report of a demo directory, a run directory or a sweep store (.db); writes report.html,
    report.md and the PNGs into `out` (default: the directory itself, or the store's directory)."""
    from .demo import MANIFEST, STORE

    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist; give a run directory, a sweep store (.db) or a demo directory")
    if path.is_dir() and (path / MANIFEST).exists():
        kind = "demo"
    elif path.is_dir() and (path / "config.json").exists():
        kind = "run"
    elif path.is_file() and path.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        kind = "store"
    elif path.is_dir() and len(stores := sorted(path.glob("*.db"))) == 1 and stores[0].name != STORE:
        path, kind = stores[0], "store"
    else:
        raise UsageError(f"{path} is not a run directory (config.json), a sweep store (.db) or a demo "
                         f"directory ({MANIFEST}); give one of those")
    target = Path(out) if out is not None else (path.parent if kind == "store" else path)
    target.mkdir(parents=True, exist_ok=True)
    if kind == "demo":
        from .demo_report import demo_report

        report = demo_report(path, target)
    elif kind == "run":
        report = _run_report(path, target)
    else:
        report = _store_report(path, target)
    report.subtitle += f" · report built {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    return {"kind": kind, **write(report, target)}
