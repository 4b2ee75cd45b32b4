"""The smoke mode of every benchmark runs and writes parseable results; BENCHMARKS.md's files exist."""

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
BENCH = ROOT / "bench"


def benchmarks() -> list[str]:
    """bench's runnable benchmarks, as `folder.module`: every module with a `main` in a folder of bench/ other than
    render/ (the renderers). Helpers (a benchmark's plan, analysis, tables, figures) have no `main`."""
    found = []
    for path in sorted(BENCH.glob("*/*.py")):
        if path.parent.name == "render":
            continue
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
            found.append(f"{path.parent.name}.{path.stem}")
    return found


def test_the_benchmarks_are_found_by_folder():
    found = benchmarks()
    assert {"suite.quality", "suite.alpha_vs_eta", "decisive.run", "calibration.run", "frontier.run",
            "device.gpu_check", "device.targets", "examples.rl_arith"} <= set(found)
    assert not {"decisive.plan", "decisive.analysis", "calibration.plan", "calibration.tables", "frontier.plan",
                "frontier.analysis"} & set(found)
    assert len(found) == 19, found


@pytest.mark.parametrize("script", benchmarks())
def test_quick_mode_runs(script):
    done = subprocess.run([sys.executable, "-m", f"bench.{script}", "--quick"], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    written = Path(done.stdout.strip().splitlines()[-1].removeprefix("wrote "))
    payload = json.loads(written.read_text())
    assert payload["machine"]["torch"] and written.parent.name == "quick"


def _render(results, out):
    done = subprocess.run([sys.executable, "-m", "bench.render.benchmarks", "--results", str(results),
                           "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return out.read_text()


SECTION_FILES = ("quality", "convergence", "search_cost", "law", "tracker_overhead", "hessian_cost", "peft_step",
                 "sweep_engines", "memory")


def test_tables_render_the_numbers_of_the_result_files_they_are_given(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(BENCH / "results" / "memory.json", results / "memory.json")  # a stored result, as it is
    tracker = {"machine": {"date": "2001-02-03 04:05 UTC", "cores": 3, "cpu": "test-cpu", "torch": "9.9"},
               "task": "teacher-student", "steps": 40, "plain_step_s": 0.01234, "tracked_step_s": 0.05678,
               "overhead": {"every 2": 0.4321, "every 10": 0.0456}}  # made-up figures, so each can be looked for
    (results / "tracker_overhead.json").write_text(json.dumps(tracker))
    text = _render(results, tmp_path / "B.md")
    for n in range(1, 7):
        assert f"## {n}. " in text
    memory = json.loads((results / "memory.json").read_text())
    section = text[text.index("## 6. Memory"):].splitlines()
    rows = [line for line in section if line.startswith("| ") and not line.startswith(("| task ", "| --- "))]
    assert rows == [f"| {r['task']} | {r['rule']} | {round(r['built_mib'])} | {round(r['peak_mib'])} | "
                    f"{round(r['added_mib'])} |" for r in memory["rows"]]
    assert f"Results: `{results / 'memory.json'}` ({memory['machine']['date']}; load average" in text
    assert "plain step 0.012 s, tracked 0.057 s" in text
    assert "| every 2 | 43.2% |" in text and "| every 10 | 4.6% |" in text
    assert "LoRA r = 8, 40 steps" in text and "(2001-02-03 04:05 UTC)" in text
    for name in SECTION_FILES:  # the two given files are rendered, every other one is said to be missing
        said = f"*Not measured yet: no {name}.json in bench/results" in text
        assert said == (name not in ("memory", "tracker_overhead")), name


def test_tables_from_an_empty_folder_say_every_section_is_not_measured(tmp_path):
    (tmp_path / "empty").mkdir()
    text = _render(tmp_path / "empty", tmp_path / "B.md")
    for name in SECTION_FILES:
        assert f"*Not measured yet: no {name}.json in bench/results (run `python -m bench.suite.{name}`).*" in text
        assert f"python -m bench.suite.{name}   # (no result file yet)" in text
    assert not [line for line in text.splitlines() if line.startswith("|")]  # no table, so no number
    assert "Results: `" not in text and "Machine: ? CPU cores" in text


def test_benchmarks_md_names_existing_results():
    text = (ROOT / "BENCHMARKS.md").read_text()
    named = sorted(set(re.findall(r"bench/results/[\w./-]+?\.json", text)))
    assert named, "BENCHMARKS.md names no result files"
    for name in named:
        payload = json.loads((ROOT / name).read_text())
        assert "machine" in payload, name
    for section in ("Quality", "Convergence", "Search cost", "The law", "Overheads", "Memory"):
        assert section in text


def test_benchmarks_md_is_what_its_renderer_renders_from_the_stored_results(tmp_path):
    """The whole file, §7 and §9 included: decisive.json and calibration.json are in turn what the committed records
    give (tests/test_decisive.py, tests/test_calibration_bench.py)."""
    text = _render(BENCH / "results", tmp_path / "BENCHMARKS.md")
    assert "## 7. The decisive benchmark" in text and "## 9. " in text
    assert text == (ROOT / "BENCHMARKS.md").read_text()  # no figure was edited by hand
