import json
import sys

import pytest

from loralpha import cli, runs


def run(args, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["loralpha", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_rules_table_shows_alpha_and_gamma(capsys, monkeypatch):
    code, out, _ = run(["rules", "--ranks", "8,64"], capsys, monkeypatch)
    assert code == 0
    assert "724.1, 90.5" in out and "2048, 32" in out  # lora-alpha: α = 256·√r, γ = 256/√r
    assert "16, 2" in out and "0.0002" in out


def test_train_writes_a_run_directory(tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / "run"
    code, out, _ = run(["train", "--steps", "20", "--rank", "4", "--quiet", "--out", str(out_dir)], capsys, monkeypatch)
    assert code == 0
    summary = runs.read_json(out_dir / "summary.json")
    assert summary["status"] == "done" and summary["steps"] == 20
    assert "rel_mse" in out


def test_diverged_run_says_so_and_exits_1(tmp_path, capsys, monkeypatch):
    code, _, err = run(["train", "--steps", "50", "--lr", "10", "--quiet", "--out", str(tmp_path / "d")],
                       capsys, monkeypatch)
    assert code == 1
    assert "run diverged" in err and "lower --lr" in err
    assert runs.read_json(tmp_path / "d" / "summary.json")["status"] == "diverged"


@pytest.mark.parametrize("args, message", [
    (["--task", "mnist"], "unknown task 'mnist'; choose one of: teacher-student"),
    (["--rule", "lora"], "unknown rule 'lora'; choose one of: lora-alpha"),
    (["--rank", "0"], "rank must be a positive integer"),
    (["--rank", "-3"], "rank must be a positive integer"),
    (["--coef", "-2"], "coef c must be a positive finite number"),
    (["--alpha", "inf"], "alpha must be a positive finite number"),
    (["--lr", "0"], "learning rate must be a positive finite number"),
    (["--targets", "attn"], "target 'attn' matches no linear module; available: fc1, fc2, fc3, fc4, fc5"),
    (["--rank-pattern", "fc1:4"], "--rank-pattern takes NAME=RANK pairs"),
    (["--task", "classify", "--data", "/no/such/file.csv"], "data file /no/such/file.csv does not exist"),
    (["--task", "classify"], "task 'classify' needs --data (a .csv or .jsonl file"),
    (["--model", "x"], "apply to text tasks, not teacher-student"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, args, message):
    code, _, err = run(["train", "--steps", "2", "--quiet", "--out", str(tmp_path / "r"), *args], capsys, monkeypatch)
    assert code == 2
    assert message in err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("command", ["train", "compare", "spectrum", "calibrate", "calibrate-c"])
def test_every_command_that_trains_a_task_takes_the_task_flags(tmp_path, capsys, monkeypatch, command):
    code, _, err = run([command, "--task", "teacher-student", "--model", "x", "--out", str(tmp_path / "o")], capsys,
                       monkeypatch)
    assert code == 2 and "error: model=" not in err  # said in the command line's terms
    assert "--model, --data, --eval-data and --max-length apply to text tasks, not teacher-student" in err
    assert not (tmp_path / "o").exists()


def test_taken_output_directory_is_refused(tmp_path, capsys, monkeypatch):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "keep.txt").write_text("mine")
    code, _, err = run(["train", "--steps", "2", "--out", str(tmp_path / "r")], capsys, monkeypatch)
    assert code == 2 and "already exists" in err
    assert (tmp_path / "r" / "keep.txt").read_text() == "mine"


def test_train_passes_task_options(tmp_path, capsys, monkeypatch):
    out_dir = tmp_path / "small"
    code, _, _ = run(["train", "--steps", "3", "--rank", "2", "--batch-size", "16", "--quiet", "--out", str(out_dir),
                      "--task-options", "width=16,depth=2,n_eval=32"], capsys, monkeypatch)
    assert code == 0
    assert runs.read_json(out_dir / "config.json")["config"]["task_options"] == {
        "teacher": "low-rank", "width": 16, "depth": 2, "n_eval": 32}


def test_train_in_a_log_prints_a_progress_line_every_tenth_of_the_steps(tmp_path, capsys, monkeypatch):
    code, out, _ = run(["train", "--steps", "20", "--rank", "2", "--out", str(tmp_path / "r")], capsys, monkeypatch)
    assert code == 0  # capsys is no terminal: no rich bar, plain lines
    lines = [line for line in out.splitlines() if line.startswith("train: step ")]
    assert [line.split()[2] for line in lines] == [f"{2 * k}/20" for k in range(1, 11)]
    assert "(50%)  loss " in lines[4] and "rel_mse " in lines[4] and " left" in lines[4] and "━" not in out
    code, out, _ = run(["train", "--steps", "20", "--rank", "2", "--quiet", "--out", str(tmp_path / "q")], capsys,
                       monkeypatch)
    assert code == 0 and "train: step" not in out


def test_train_prints_the_baseline_and_says_when_a_run_ended_there(tmp_path, capsys, monkeypatch):
    tiny = ["train", "--steps", "3", "--batch-size", "16", "--task-options", "width=16,depth=2,n_eval=16", "--quiet"]
    code, out, _ = run([*tiny, "--lr", "1e-3", "--out", str(tmp_path / "learns")], capsys, monkeypatch)
    assert code == 0 and "baseline: untouched model (step 0)" in out and "rel_mse 1 " in out
    assert "ended at its baseline" not in out
    # a step far below float32 resolution leaves the weights, and so the metric, exactly where they started
    code, out, _ = run([*tiny, "--lr", "1e-30", "--out", str(tmp_path / "stuck")], capsys, monkeypatch)
    assert code == 0 and "the run ended at its baseline: held-out rel_mse 1 is no better than" in " ".join(out.split())


def test_the_majority_class_is_the_baseline_of_a_classifier(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"metric": "accuracy", "higher_is_better": True,
                                                      "task_info": {"eval_majority_accuracy": 0.65}}))
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 0, "accuracy": 0.3}) + "\n")
    reference = runs.baseline(tmp_path)
    assert reference == {"metric": "accuracy", "name": "majority class", "value": 0.65, "higher_is_better": True}
    assert runs.at_baseline(0.65, reference) and runs.at_baseline(0.6, reference)
    assert not runs.at_baseline(0.66, reference) and not runs.at_baseline(None, reference)
    lower = {"metric": "eval_loss", "name": "untouched model (step 0)", "value": 2.9, "higher_is_better": False}
    assert runs.at_baseline(2.9, lower) and not runs.at_baseline(2.5, lower)


def test_a_bad_learning_rate_is_refused_before_torch_loads():
    import subprocess

    code = ("import sys\nfrom loralpha import cli\nsys.argv = ['loralpha', 'train', '--lr', '0']\n"
            "try:\n    cli.main()\nexcept SystemExit as e:\n    print(e.code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert "learning rate must be a positive finite number" in done.stderr
