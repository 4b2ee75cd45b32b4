"""`loralpha compare`: a finished run with the same config is reused, a changed one is retrained, and Ctrl-C
stops the whole comparison (an interrupted rule is trained again on the next call)."""

import itertools
import re
import signal

import pytest
from test_cli import run

from loralpha import runs, tasks

pytestmark = pytest.mark.usefixtures("one_thread")
# teacher-student at its own size (compare takes no task options), a few steps of a small batch: about 1 s a rule
def compare_args(rules, out, steps=4):
    return ["compare", "--task", "teacher-student", "--rules", rules, "--rank", "2", "--steps", str(steps),
            "--batch-size", "16", "--eval-every", "4", "--quiet", "--out", str(out)]


@pytest.fixture(autouse=True)
def terminal_sigint():
    """Ctrl-C as in a terminal: a test run started as a background job begins with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def stamps(out, rules):
    return {rule: (out / rule / "summary.json").stat().st_mtime_ns for rule in rules}


def announced(out_text):
    """The rule lines compare prints before each run: rule -> reused or not."""
    found = re.findall(r"^([a-z0-9-]+)( \(reused\))?$", out_text, flags=re.MULTILINE)
    return {rule: bool(reused) for rule, reused in found}


def test_a_finished_run_is_reused_and_a_changed_config_retrains(tmp_path, capsys, monkeypatch):
    out = tmp_path / "cmp"
    code, text, err = run(compare_args("lora-alpha,2rank", out), capsys, monkeypatch)
    assert code == 0, err
    assert announced(text) == {"lora-alpha": False, "2rank": False}
    first = stamps(out, ["lora-alpha", "2rank"])
    metrics = {rule: (out / rule / "metrics.jsonl").read_text() for rule in first}

    code, text, err = run(compare_args("lora-alpha,2rank", out), capsys, monkeypatch)
    assert code == 0, err
    assert announced(text) == {"lora-alpha": True, "2rank": True}
    assert stamps(out, first) == first  # not retrained: the files are the same files
    assert {rule: (out / rule / "metrics.jsonl").read_text() for rule in first} == metrics
    for rule in first:  # the table shows the reused runs' own numbers
        summary = runs.read_json(out / rule / "summary.json")
        assert re.search(rf"│ {re.escape(rule)} .*│ done .*│ +{summary['final_loss']:.4f} │", text), rule

    # one more rule is trained beside the reused ones; a changed step count retrains every rule
    code, text, _ = run(compare_args("lora-alpha,fixed", out), capsys, monkeypatch)
    assert code == 0 and announced(text) == {"lora-alpha": True, "fixed": False}
    assert stamps(out, ["lora-alpha"]) == {"lora-alpha": first["lora-alpha"]}
    code, text, _ = run(compare_args("lora-alpha,2rank", out, steps=5), capsys, monkeypatch)
    assert code == 0 and announced(text) == {"lora-alpha": False, "2rank": False}
    for rule, stamp in stamps(out, first).items():
        assert stamp != first[rule] and runs.read_json(out / rule / "summary.json")["steps"] == 5


def interrupt_build(monkeypatch, build_number, step):
    """Ctrl-C (a real SIGINT) during training step `step` of the `build_number`-th task built from now on."""
    build, builds = tasks.build, itertools.count(1)

    def faulty_build(*args, **kwargs):
        task = build(*args, **kwargs)
        if next(builds) == build_number:
            calls, inner = itertools.count(1), task.loss

            def loss(model, batch):
                if next(calls) == step:
                    signal.raise_signal(signal.SIGINT)
                return inner(model, batch)

            task.loss = loss
        return task

    monkeypatch.setattr(tasks, "build", faulty_build)


def test_ctrl_c_stops_the_comparison_and_the_next_call_finishes_it(tmp_path, capsys, monkeypatch):
    out = tmp_path / "cmp"
    rules = "lora-alpha,2rank,fixed"
    interrupt_build(monkeypatch, build_number=2, step=2)  # during 2rank, the second rule
    code, text, _ = run(compare_args(rules, out), capsys, monkeypatch)
    assert code == 130
    assert announced(text) == {"lora-alpha": False, "2rank": False}  # fixed never started
    assert not (out / "fixed").exists() and "held-out rel_mse" not in text  # no table of a half comparison
    assert runs.read_json(out / "lora-alpha" / "summary.json")["status"] == "done"
    cut = runs.read_json(out / "2rank" / "summary.json")
    assert cut["status"] == "interrupted" and cut["steps"] == 2  # the step in progress finished, then it stopped
    done = stamps(out, ["lora-alpha"])

    monkeypatch.undo()
    code, text, err = run(compare_args(rules, out), capsys, monkeypatch)
    assert code == 0, err
    assert announced(text) == {"lora-alpha": True, "2rank": False, "fixed": False}  # an interrupted run is not reused
    assert stamps(out, ["lora-alpha"]) == done
    for rule in ("2rank", "fixed"):
        summary = runs.read_json(out / rule / "summary.json")
        assert summary["status"] == "done" and summary["steps"] == 4


def test_the_printed_rerun_command_reuses_the_runs(tmp_path, capsys, monkeypatch):
    out = tmp_path / "cmp"
    code, text, _ = run([*compare_args("lora-alpha", out), "--coef", "100", "--teacher", "full-rank"], capsys,
                        monkeypatch)
    assert code == 0
    assert runs.read_json(out / "lora-alpha" / "config.json")["task_info"]["teacher"] == "full-rank"
    rerun = re.search(r"\(rerun: loralpha (.*?)\)", " ".join(text.split())).group(1).split()
    assert "--teacher" in rerun and "--task-options" not in rerun  # a task flag is said as its flag
    code, text, _ = run([*rerun, "--quiet"], capsys, monkeypatch)
    assert code == 0 and announced(text) == {"lora-alpha": True}


def test_report_renders_a_compare_folder_and_its_command_reruns_it(tmp_path, capsys, monkeypatch):
    out = tmp_path / "cmp"
    code, _, err = run(compare_args("lora-alpha,2rank", out), capsys, monkeypatch)
    assert code == 0, err
    code, text, err = run(["report", str(out)], capsys, monkeypatch)
    assert code == 0, err
    assert text.startswith("compare report:")
    report = (out / "report.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in report.splitlines() if line.startswith("| ")}
    for rule in ("lora-alpha", "2rank"):
        rel_mse = runs.read_json(out / rule / "summary.json")["eval"]["rel_mse"]
        assert f"{rel_mse:.4g}" in rows[rule] and " done " in rows[rule]
    assert "held-out rel_mse" in report and (out / "compare.png").is_file()
    assert "Baseline (untouched model (step 0)): held-out rel_mse" in report
    rerun = next(line for line in report.splitlines() if line.startswith("loralpha compare "))
    code, text, _ = run([*rerun.split()[1:], "--quiet"], capsys, monkeypatch)
    assert code == 0 and announced(text) == {"lora-alpha": True, "2rank": True}  # the same runs: reused
