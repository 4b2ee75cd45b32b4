"""README.md and docs/findings.md quote no figure by hand: each rendered block is what bench/render/docs.py renders
from the stored result files, and an edited figure or a changed result makes the check fail."""

import copy
import json
from pathlib import Path

import pytest

from bench.render import blocks, docs

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


def test_a_table_whose_budget_failed_gives_way_in_the_headline_to_its_tasks_table_at_the_budget_that_passed(
        monkeypatch):
    original = blocks.load
    tasks = original(blocks.RESULTS / "decisive.json")["tasks"]
    after = blocks.successors(tasks)
    failed = next(name for name, t in tasks.items() if t["complete"] and name in after)
    later = after[failed]
    assert tasks[later]["steps"] > tasks[failed]["steps"] and not tasks[failed]["budget"]["holds"]
    if not tasks[later]["complete"]:
        running = blocks.decisive_headline()
        assert f"on {failed}," in running and f"{later} is running" in running

    def finished(path):  # the longer table complete, its budget passed (its figures: a copy of the failed one's)
        data = copy.deepcopy(original(path))
        if path.name == "decisive.json":
            data["tasks"][later] = {**copy.deepcopy(data["tasks"][failed]), "steps": tasks[later]["steps"],
                                    "budget": {**tasks[failed]["budget"], "gain": 0.01, "holds": True}}
        return data

    monkeypatch.setattr(blocks, "load", finished)
    said = blocks.decisive_headline()
    assert f"on {later}," in said and f"on {failed}," not in said
