"""`loralpha demo --quick` end to end: killed mid-way, resumed, and its report's images all load;
`loralpha report` on a run directory and on a sweep store."""

import io
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from loralpha.cli import app, main
from loralpha.reporting import build, train_command
from loralpha.studies.demo import STORE, steps_to_reach

LORALPHA = [sys.executable, "-m", "loralpha"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def _trials(store: Path) -> dict[str, tuple]:
    with sqlite3.connect(store) as db:
        return {row[0]: row[1:] for row in db.execute("SELECT id, status, attempts, finished_at FROM trials")}


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """A quick demo, SIGKILLed once some of its runs are finished, then run again to the end."""
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = subprocess.Popen([*LORALPHA, "demo", "--quick", "--quiet", "--out", str(out)], env=ENV,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    before: dict[str, tuple] = {}
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / STORE).exists():
            try:
                before = _trials(out / STORE)
            except sqlite3.OperationalError:  # the store is being created
                before = {}
            if sum(s in ("done", "diverged") for s, *_ in before.values()) >= 4:
                break
        time.sleep(0.5)
    assert proc.poll() is None, f"the demo ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    calibration = (out / "calibrate.json").stat().st_mtime_ns
    finished = {tid: row for tid, row in _trials(out / STORE).items() if row[0] in ("done", "diverged")}
    done = subprocess.run([*LORALPHA, "demo", "--quick", "--quiet", "--out", str(out)], env=ENV, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"out": out, "finished_before": finished, "calibration_mtime": calibration, "stdout": done.stdout}


def test_killed_demo_reuses_its_finished_parts_and_runs_the_rest_once(demo_dir):
    out = demo_dir["out"]
    after = _trials(out / STORE)
    assert demo_dir["finished_before"], "no run had finished when the demo was killed"
    for tid, row in demo_dir["finished_before"].items():
        assert after[tid] == row  # untouched: same status, one attempt, same finish time
    assert all(status in ("done", "diverged") for status, *_ in after.values())
    assert all(attempts in (1, 2) for _, attempts, _ in after.values())  # a killed run is run again once
    assert (out / "calibrate.json").stat().st_mtime_ns == demo_dir["calibration_mtime"]
    assert "reused calibrate.json" in demo_dir["stdout"]


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_demo_report_images_all_decode_and_are_not_blank(demo_dir):
    page = (demo_dir["out"] / "report.html").read_text()
    parser = _Images()
    parser.feed(page)
    assert len(parser.sources) == 4  # head-to-head, α vs η, spectrum, law
    for src in parser.sources:
        assert src.startswith("data:image/png;base64,")  # embedded: the page needs no other file
        import base64

        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        image.load()
        pixels = np.asarray(image.convert("L"), dtype=float)
        assert image.width > 300 and image.height > 200
        assert pixels.std() > 5  # not one flat colour
        assert (pixels < 128).mean() > 0.005  # something is drawn on the white
    assert "http://" not in page and "https://" not in page


def test_demo_report_states_every_part_and_no_nan(demo_dir):
    md = (demo_dir["out"] / "report.md").read_text()
    for title in ("1. Head-to-head on tweets", "2. α vs η", "3. Spectral suppression", "4. The α*(r) law"):
        assert f"## {title}" in md
    for rule in ("lora-alpha (c = 256, paper)", "calibrated", "fixed", "2rank", "rslora", "loraplus", "full"):
        assert f"| {rule}" in md or rule in md
    assert "nan" not in md.lower().replace("nanmean", "")
    assert "Not run yet" not in md
    assert md.count("```sh") == 4  # every section says how to reproduce it
    head = md.split("\n## 1. Head-to-head on tweets", 1)[1].split("\n## ", 1)[0]
    assert "decisive benchmark (BENCHMARKS.md §7" in head  # a one-seed, untuned head-to-head says what decides it
    for png in ("head_to_head.png", "alpha_vs_eta.png", "spectrum.png", "law.png"):
        assert (demo_dir["out"] / png).stat().st_size > 10_000


def _cells(md: str, section: str, first_cell: str) -> list[str]:
    """The cells of the one markdown table row of section `section` whose first cell is `first_cell`."""
    text = md.split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in text.splitlines() if line.startswith(f"| {first_cell} |")]
    assert len(rows) == 1, (first_cell, rows)
    return [cell.strip() for cell in rows[0].strip().strip("|").split(" | ")]


def _num(value, spec=".4g"):
    return "—" if value is None else format(value, spec)


def test_demo_report_rows_carry_each_rules_own_values(demo_dir):
    out = demo_dir["out"]
    md = (out / "report.md").read_text()
    manifest = json.loads((out / "demo.json").read_text())
    plan, trials = manifest["plan"], manifest["trials"]

    def summary(tid):  # the run's own record, in the sweep's layout OUT/runs/<trial id>
        return json.loads((out / "runs" / tid / "summary.json").read_text())

    r, point = plan["rank"], json.loads((out / "calibrate.json").read_text())["settings"]["lora-alpha"]
    c = point["coef"]
    full_ft, usual = (2e-5, "(full-FT rate)"), (2e-4, "(usual LoRA rate)")
    expected = {  # label -> (first cell, α by the rule's formula at rank r, η)
        "lora-alpha": ("lora-alpha (c = 256, paper)", 256 * math.sqrt(r), full_ft),
        "lora-alpha-calibrated": (f"lora-alpha (c = {c:.4g}, calibrated)", c * math.sqrt(r),
                                  (point["lr"], "(calibrated)")),
        "fixed": ("fixed", 16, usual), "2rank": ("2rank", 2 * r, usual), "rslora": ("rslora", 16 * math.sqrt(r), usual),
        "loraplus": ("loraplus", 16, usual), "full": ("full", None, full_ft)}
    assert set(trials["head_to_head"]) == set(expected)
    for label, tid in trials["head_to_head"].items():
        name, alpha, (eta, rate) = expected[label]
        cells, s = _cells(md, "1. Head-to-head", name), summary(tid)
        assert cells[1:3] == ([f"{alpha:.4g}", f"{alpha / r:.3g}"] if alpha else ["—", "—"]), label
        shown_eta, shown_rate = cells[3].split(" ", 1)
        assert float(shown_eta) == pytest.approx(eta, rel=1e-12) and shown_rate == rate, label
        assert cells[4:7] == [s["status"], _num(s["final_loss"]), _num(s["eval"].get("accuracy"))], label

    ae_r, eta0 = plan["ae_rank"], 5e-5  # α vs η: rule fixed with α = r at the full-FT η, then α × k or η × k
    variants = {"base": (ae_r, eta0), **{f"α × {k}": (k * ae_r, eta0) for k in plan["ae_factors"]},
                **{f"η × {k}": (ae_r, k * eta0) for k in plan["ae_factors"]}}
    assert set(trials["alpha_vs_eta"]) == set(variants)
    for label, tid in trials["alpha_vs_eta"].items():
        cells, s = _cells(md, "2. α vs η", label), summary(tid)
        assert cells[1:3] == [f"{variants[label][0]:g}", f"{variants[label][1]:g}"], label
        assert cells[3].split(" at step ")[0] == s["status"], label
        assert cells[4:6] == [_num(s["final_loss"]), _num(s["eval"].get("rel_mse"))], label


def test_report_rebuilds_from_the_demo_directory_alone(demo_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(demo_dir["out"], copy, ignore=shutil.ignore_patterns("report.*", "*.png"))
    result = CliRunner().invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    assert (copy / "report.html").exists() and (copy / "law.png").exists()


def test_report_rebuilds_a_moved_demo_directory(demo_dir, tmp_path):
    moved = tmp_path / "moved"
    shutil.move(demo_dir["out"], moved)
    try:
        result = CliRunner().invoke(app, ["report", str(moved)])
        assert result.exit_code == 0, result.output
        assert "| lora-alpha (c = 256, paper) |" in (moved / "report.md").read_text()
    finally:
        shutil.move(moved, demo_dir["out"])


def test_report_of_a_run_directory(tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--task", "teacher-student", "--rank", "2", "--steps", "12",
                                      "--eval-every", "4", "--task-options", "width=32,depth=2", "--quiet",
                                      "--out", str(run)])
    assert result.exit_code == 0, result.output
    written = build(run)
    assert written["kind"] == "run" and [p.name for p in written["figures"]] == ["curves.png"]
    md = written["markdown"].read_text()
    assert "| status | done |" in md and "rel_mse" in md
    assert ("loralpha train --task teacher-student --rank 2 --eval-every 4 --steps 12 "
            "--task-options depth=2,width=32") in md


def test_report_of_a_sweep_store_fits_the_law(tmp_path):
    spec = tmp_path / "law.yaml"
    spec.write_text("study: law\ntask: teacher-student\nmetric: rel_mse\n"
                    "fixed: {rule: fixed, lr: 5.0e-5, steps: 20, eval_every: 20, task_options: {width: 32, depth: 2}}\n"
                    "grid: {rank: [2, 4], alpha: [16, 256, 4096]}\n")
    store = tmp_path / "law" / "study.db"
    result = CliRunner().invoke(app, ["sweep", str(spec), "--store", str(store), "--workers", "1"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["report", str(store)])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "law" / "report.md").read_text()
    assert "## Trials" in md and "## The α*(r) law" in md and "6 trials of `teacher-student`: 6 done" in md
    assert (tmp_path / "law" / "law.png").exists()


@pytest.mark.parametrize("args, message", [
    (["report", "/no/such/place"], "does not exist"),
    (["report", "{tmp}"], "is not a run directory"),
    (["demo", "--out", "{tmp}/file.txt"], "is a file"),
    (["demo", "--out", "{tmp}"], "holds something other than a demo"),
])
def test_bad_demo_and_report_input_is_one_line(tmp_path, args, message, capsys, monkeypatch):
    (tmp_path / "file.txt").write_text("x")
    monkeypatch.setattr(sys, "argv", ["loralpha", *(a.replace("{tmp}", str(tmp_path)) for a in args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_steps_to_reach_uses_the_final_loss_window():
    losses = [(i, 10.0 - i) for i in range(1, 11)] + [(11, 0.0)]
    assert steps_to_reach(losses, target=5.5, window=10) == 10  # mean of 9..0 = 4.5 ≤ 5.5; mean at step 9 undefined
    assert steps_to_reach(losses, target=4.0, window=10) == 11
    assert steps_to_reach(losses, target=-1.0) is None


def test_train_command_lists_only_what_differs_from_the_defaults():
    config = {"task": "tweets", "rule": "rslora", "rank": 8, "alpha": 16.0, "lr": 2e-4, "steps": 200, "dora": True,
              "track_every": 10, "task_options": {"model": None, "n_eval": 100}}
    assert train_command(config) == ("loralpha train --task tweets --rule rslora --lr 0.0002 --dora "
                                     "--track signal-drift:10 --task-options n_eval=100")
    assert json.dumps(config)  # untouched
