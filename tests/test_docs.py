"""README.md and docs/*.md quote no figure by hand: each rendered block is what bench/render/docs.py renders from
the stored result files, and an edited figure or a changed result makes the check fail. A rendered block is tables
and short sentences, never a paragraph-long one. README stays a short way in: commands first, links that resolve."""

import copy
import json
import re
from pathlib import Path

import pytest

from bench.render import blocks, docs, v1

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", docs.FILES, ids=lambda p: p.name)
def test_every_rendered_block_is_what_its_data_renders(path):
    text = path.read_text()
    names = [m.group(2) for m in docs.BLOCK.finditer(text)]
    assert names, f"{path.name} has no rendered blocks"
    assert set(names) <= set(docs.BLOCKS)
    assert docs.fill(text) == text  # run python -m bench.render.docs after a new result lands


def test_every_renderer_is_used_once():
    names = [m.group(2) for path in docs.FILES for m in docs.BLOCK.finditer(path.read_text())]
    assert sorted(names) == sorted(docs.BLOCKS)


def test_an_edited_figure_is_put_back():
    text = (ROOT / "docs" / "findings.md").read_text()
    edited = text.replace("| 1e-08 | 0 | 1.10e-05 |", "| 1e-08 | 0 | 1.00e-05 |")
    assert edited != text
    assert docs.fill(edited) == text


def test_a_changed_result_changes_the_rendered_block(monkeypatch):
    original = blocks.load

    def altered(path):
        data = copy.deepcopy(original(path))
        if path.name == "equivalence.json":
            data["rows"][1]["relative_difference"] = 2e-3
        return data

    monkeypatch.setattr(blocks, "load", altered)
    text = (ROOT / "docs" / "findings.md").read_text()
    assert "| 1e-08 | 0 | 2.00e-03 |" in docs.fill(text)


def test_the_alpha_equals_r_column_reads_the_grid_at_alpha_equals_r():
    fit = json.loads((ROOT / "docs" / "results" / "sweep-teacher-student-alpha" / "fit.json").read_text())
    by_rank = {o["rank"]: o for o in fit["optima"]}
    assert blocks._at(by_rank[32], 32.0) == pytest.approx(0.602, abs=5e-4)  # α = r = 32 is a grid point
    assert blocks._at(by_rank[8], 8.0) is None  # α = 8 is not
    rows = {line.split(" | ")[0].lstrip("| "): line for line in blocks.law_teacher_student().splitlines()
            if line.startswith("| ") and line[2].isdigit()}
    assert "| 0.602 |" in rows["32"] and "not on the grid" in rows["8"]


def test_a_table_whose_budget_failed_gives_way_in_the_results_to_its_tasks_table_at_the_budget_that_passed(
        monkeypatch):
    original = v1.load
    tasks = original(v1.RESULTS / "decisive.json")["tasks"]
    after = v1.successors(tasks)
    failed = next(name for name, t in tasks.items() if t["complete"] and name in after)
    later = after[failed]
    assert tasks[later]["steps"] > tasks[failed]["steps"] and not tasks[failed]["budget"]["holds"]

    def running(path):  # the longer table not finished yet: the failed one is said, with the longer one running
        data = copy.deepcopy(original(path))
        if path.name == "decisive.json":
            data["tasks"][later] = {**data["tasks"][later], "complete": False, "trials_done": 3}
        return data

    monkeypatch.setattr(v1, "load", running)
    said = "\n".join(line for line in v1.results().splitlines() if line.startswith("- "))  # the words under it
    assert f"on {failed} by " in said and f"{failed}'s budget test failed; {later} is running (3 of" in said
    monkeypatch.setattr(v1, "load", original)
    said = "\n".join(line for line in v1.results().splitlines() if line.startswith("- "))
    assert f"on {later} by " in said and f"on {failed} by " not in said and "budget test failed" not in said


README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 150  # the rest belongs on a page of docs/


def _sentences(block: str) -> list[str]:
    """The sentences of a block's prose: a table row or a figure is no sentence, and a paragraph or a list item
    ends one."""
    paragraphs = re.split(r"\n\s*\n|\n(?=- )", block)
    prose = [" ".join(line for line in para.splitlines() if not line.startswith(("|", "!["))) for para in paragraphs]
    return [s for para in prose for s in re.split(r"(?<=[.!?:])\s+(?=[A-Z`*(\[])", para) if s.strip()]


def test_a_long_sentence_is_found():
    said = "Short one. " + " ".join(["Word"] * 61) + ".\n\n| a | " + " ".join(["cell"] * 80) + " |"
    assert [len(s.split()) for s in _sentences(said)] == [2, 61]
    assert [len(s.split()) for s in _sentences("- one item\n- " + " ".join(["word"] * 30))] == [3, 31]


@pytest.mark.parametrize("path", docs.FILES, ids=lambda p: p.name)
def test_no_rendered_block_is_a_paragraph_long_sentence(path):
    for m in docs.BLOCK.finditer(path.read_text()):  # a long finding is a table, with BENCHMARKS.md for the figures
        for sentence in _sentences(m.group(3)):
            assert len(sentence.split()) <= 60, f"block {m.group(2)}: a sentence of {len(sentence.split())} words"


def test_the_readme_shows_a_command_before_any_rendered_block():
    text = README.read_text()
    first_block = docs.BLOCK.search(text)
    first_fence = re.search(r"^```(sh|bash)?$", text, re.M)
    assert first_fence and (not first_block or first_fence.start() < first_block.start())


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_points_at_an_existing_file(page):
    links = [target for target in LINK.findall(page.read_text()) if not re.match(r"[a-z]+:", target)]
    missing = [t for t in links if t.split("#")[0] and not (page.parent / t.split("#")[0]).exists()]
    assert not missing, f"{page.name}: links to no file: {missing}"


def test_the_benchmarks_summary_names_every_section():
    text = (ROOT / "BENCHMARKS.md").read_text()
    summary = text[text.index("## Summary"):text.index("\n## 1. ")]
    sections = re.findall(r"^## (\d+)\. ", text, re.M)
    assert sections == [str(n) for n in range(1, len(sections) + 1)]
    bullets = [line for line in summary.splitlines() if line.startswith("- ")]
    for n in sections:
        assert any(line.startswith(f"- **§{n} ") for line in bullets), f"the Summary says nothing of §{n}"


def test_the_calibrators_budgets_in_its_page_are_the_codes():
    from loralpha.studies.calibrate_method import horizons, least_budget

    page = (ROOT / "docs" / "calibrate.md").read_text()
    least = least_budget(9, 1)  # the default 3 × 3 map, one seed
    probe = horizons(9, 1, least, 10_000)[0]
    assert f"The least budget is {least} steps (the map alone, {probe} steps a probe)" in page
    # 140: the least budget with the map's widening reserve, the check and its walking reserve all kept
    assert horizons(9, 1, 140, 10_000)[2:] == (5, 2) and horizons(9, 1, 139, 10_000)[2:] != (5, 2)
    assert "; 140 runs the map, its\n  reserve and the check with its walk." in page
