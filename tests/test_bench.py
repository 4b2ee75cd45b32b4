"""The smoke mode of every bench script runs and writes parseable results; BENCHMARKS.md's files exist."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
BENCH = ROOT / "bench"
NOT_BENCHMARKS = ("common.py", "tables.py", "headline.py")  # helpers, not benchmarks


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py") if p.name not in NOT_BENCHMARKS))
def test_quick_mode_runs(script):
    done = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    written = Path(done.stdout.strip().splitlines()[-1].removeprefix("wrote "))
    payload = json.loads(written.read_text())
    assert payload["machine"]["torch"] and written.parent.name == "quick"


def test_tables_render_from_results(tmp_path):
    out = tmp_path / "B.md"
    done = subprocess.run([sys.executable, str(BENCH / "tables.py"), "--results", str(BENCH / "results" / "quick"),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    for n in range(1, 7):
        assert f"## {n}. " in text


def test_benchmarks_md_names_existing_results():
    text = (ROOT / "BENCHMARKS.md").read_text()
    named = sorted(set(re.findall(r"bench/results/[\w./-]+?\.json", text)))
    assert named, "BENCHMARKS.md names no result files"
    for name in named:
        payload = json.loads((ROOT / name).read_text())
        assert "machine" in payload, name
    for section in ("Quality", "Convergence", "Search cost", "The law", "Overheads", "Memory"):
        assert section in text


def test_benchmarks_md_is_what_tables_py_renders_from_the_stored_results(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    done = subprocess.run([sys.executable, str(BENCH / "tables.py"), "--results", str(BENCH / "results"),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.read_text() == (ROOT / "BENCHMARKS.md").read_text()  # no figure was edited by hand


def _row(text: str, first_cell: str) -> str:
    """The markdown table row of `text` whose first cell is `first_cell`."""
    rows = [line for line in text.splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, f"expected one row starting with {first_cell!r}, found {len(rows)}"
    return rows[0]


def test_findings_tables_quote_the_stored_bench_results():
    """docs/findings.md copies three bench tables by hand: each figure must match its JSON."""
    text = (ROOT / "docs" / "findings.md").read_text()
    results = BENCH / "results"
    for r in json.loads((results / "alpha_vs_eta.json").read_text())["rows"]:
        row = _row(text, r["variant"])
        for key in ("final_loss", "rel_mse", "drift_ratio"):
            if r[key] is not None:
                assert f"| {r[key]:.4g} |" in row, (r["variant"], key, r[key], row)
    for r in json.loads((results / "equivalence.json").read_text())["rows"]:
        row = _row(text, f"{r['eps']:g} | {r['weight_decay']:g}")
        assert f"| {r['relative_difference']:.2e} |" in row, (r, row)
    tracker = json.loads((results / "tracker_overhead.json").read_text())
    assert f"plain step {tracker['plain_step_s']:.3f} s, tracked step {tracker['tracked_step_s']:.3f} s" in text
    for k, v in tracker["overhead"].items():
        row = next(line for line in text.splitlines() if re.match(rf"\| {k}( \(|\s*\|)", line))
        assert row.rstrip().endswith(f"| {100 * v:.1f}% |"), (k, v, row)
