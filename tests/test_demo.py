"""`loralpha demo --quick` end to end: killed mid-way, resumed, and its report's images all load;
`loralpha report` on a run directory and on a sweep store."""

import io
import json
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
    for png in ("head_to_head.png", "alpha_vs_eta.png", "spectrum.png", "law.png"):
        assert (demo_dir["out"] / png).stat().st_size > 10_000


def test_report_rebuilds_from_the_demo_directory_alone(demo_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(demo_dir["out"], copy, ignore=shutil.ignore_patterns("report.*", "*.png"))
    result = CliRunner().invoke(app, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    assert (copy / "report.html").exists() and (copy / "law.png").exists()


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
