"""The bad-input matrix: everything a user can get wrong gives one line saying what was wrong and what
would be right, no traceback, and exit status 2 from the CLI (a `UsageError` from Python).

Cases tested elsewhere are not repeated here: unknown task/rule, rank 0/-3, coef -2, alpha inf, lr 0 and
targets that match nothing (tests/test_cli.py, tests/test_train.py); bad spec keys, empty grids and the
YAML line (tests/test_sweep.py::test_bad_specs_name_the_key, ::test_malformed_yaml_names_file_and_line);
corrupted and newer-schema stores (tests/test_sweep.py::test_store_refuses_what_it_cannot_read); malformed
data files at the loader (tests/test_text_tasks.py, tests/test_sft.py); run directories of a sweep under
<study>/runs/<trial id> (tests/test_sweep.py::test_local_sweep_isolates_crashes_and_records_everything)."""

import errno
import math
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import Toy
from test_cli import run

from loralpha import AdapterSpec, FitOptions, TrainConfig, fit, runs, scaling
from loralpha.errors import UsageError
from loralpha.sweep import Store, Trial, run_sweep, trial_id
from loralpha.sweep import store as store_module

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"width": 32, "depth": 2, "n_eval": 64}
SPEC_HEAD = "task: teacher-student\nfixed: {steps: 2, batch_size: 8, task_options: {width: 8, depth: 1, n_eval: 8}}\n"


def one_line_usage_error(code, err, message):
    assert code == 2, err
    assert message in err, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


@pytest.fixture
def files(tmp_path):
    """Data files and would-be models, by name, under tmp_path."""
    rows = "".join(f"text {i},{'pos' if i % 2 else 'neg'}\n" for i in range(12))
    content = {
        "good.csv": "text,label\n" + rows,
        "empty.csv": "",
        "empty.jsonl": "\n",
        "bad.jsonl": '{"text": "a", "label": "x"}\n{"text": "b", "label": \n',
        "nolabel.csv": "text,label\nfine,pos\nno label here\nother,neg\n",
        "blanklabel.jsonl": '{"text": "a", "label": "x"}\n{"text": "b", "label": "  "}\n',
        "sft.jsonl": '{"prompt": "a", "response": "b"}\n' * 10,
        "weights.bin": "not a model",
    }
    for name, text in content.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["--rank", "2.5"], "Invalid value for '--rank': Input should be a valid integer"),
    (["--rank", "eight"], "Invalid value for '--rank'"),
    (["--rnk", "4"], "No such option: --rnk (Possible options: --lr, --rank"),
    (["--coef", "nan"], "coef c must be a positive finite number, got nan"),
    (["--coef", "0"], "coef c must be a positive finite number, got 0.0"),
    (["--rule", "fixed", "--alpha", "-1"], "alpha must be a positive finite number, got -1.0"),
    (["--rule", "rslora", "--alpha", "nan"], "alpha must be a positive finite number, got nan"),
    (["--lr", "inf"], "learning rate must be a positive finite number, got inf"),
    (["--lr", "-1e-4"], "learning rate must be a positive finite number, got -0.0001"),
    (["--lr", "nan"], "learning rate must be a positive finite number, got nan"),
    (["--checkpoint-every", "0"], "checkpoint_every must be a positive integer, got 0"),
    (["--resume", "--overwrite"], "--resume continues a run and --overwrite replaces it; choose one"),
    (["--task", "classify", "--data", "{tmp}/empty.csv"], "empty.csv:1: no column 'text' in the header"),
    (["--task", "classify", "--data", "{tmp}/empty.jsonl"], "empty.jsonl has no rows"),
    (["--task", "classify", "--data", "{tmp}/bad.jsonl"], "bad.jsonl:2: not valid JSON"),
    (["--task", "classify", "--data", "{tmp}/nolabel.csv"], "nolabel.csv:3: row has no 'label' value"),
    (["--task", "classify", "--data", "{tmp}/blanklabel.jsonl"], "blanklabel.jsonl:2: missing field 'label'"),
    (["--task", "classify", "--data", "{tmp}/good.csv", "--batch-size", "2", "--model", "{tmp}/no-such-model"],
     "no-such-model': there is no such file or folder; give a folder written by save_pretrained, or a hub id"),
    (["--task", "classify", "--data", "{tmp}/good.csv", "--batch-size", "2", "--model", "{tmp}/empty-dir"],
     "empty-dir': the folder has no config.json, so it is not a saved model"),
    (["--task", "sft", "--data", "{tmp}/sft.jsonl", "--batch-size", "2", "--model", "{tmp}/weights.bin"],
     "cannot load a causal language model from '{tmp}/weights.bin': it is a file; give the folder"),
    (["--out", "{tmp}/taken"], "already exists and is not empty; pass --overwrite to replace it, --resume to "
                              "continue its run, or choose another --out"),
    (["--out", "{tmp}/good.csv"], "good.csv is a file; give a directory for --out"),
])
def test_cli_train_bad_input_is_one_line_and_exit_2(files, capsys, monkeypatch, args, message):
    args = [a.format(tmp=files) for a in args]
    out = [] if "--out" in args else ["--out", str(files / "run")]
    code, _, err = run(["train", "--steps", "2", "--quiet", *out, *args], capsys, monkeypatch)
    one_line_usage_error(code, err, message.format(tmp=files))
    assert (files / "taken" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("kw, message", [
    ({"rank": 2.5}, "rank must be a positive integer (1, 2, 8, ...), got 2.5"),
    ({"rank": -1}, "rank must be a positive integer"),
    ({"rank": "8"}, "rank must be a positive integer (1, 2, 8, ...), got '8'"),
    ({"rank": True}, "rank must be a positive integer"),
    ({"coef": math.nan}, "coef c must be a positive finite number, got nan"),
    ({"coef": math.inf}, "coef c must be a positive finite number, got inf"),
    ({"coef": 0.0}, "coef c must be a positive finite number"),
    ({"rule": "fixed", "alpha": 0.0}, "alpha must be a positive finite number"),
    ({"rule": "rslora", "alpha": -math.inf}, "alpha must be a positive finite number, got -inf"),
    ({"lr": math.inf}, "learning rate must be a positive finite number, got inf"),
    ({"lr": -1e-4}, "learning rate must be a positive finite number"),
    ({"head_lr": 0.0}, "head learning rate must be a positive finite number"),
    ({"rank_pattern": {"fc1": 0}}, "rank for pattern 'fc1' must be a positive integer"),
    ({"steps": 2.5}, "steps must be a positive integer, got 2.5"),
])
def test_api_bad_config_is_one_line_before_anything_is_built(kw, message):
    with pytest.raises(UsageError) as e:
        TrainConfig(**kw).check()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_api_fit_rejects_bad_values_and_lists_the_modules_a_target_could_name(toy):
    spec = AdapterSpec(rule="lora-alpha", rank=2, targets=["k"])
    with pytest.raises(UsageError, match="target 'k' matches no linear module; available: head, q, v"):
        fit(toy, [], lambda m, b: m(b).sum(), spec, FitOptions(lr=1e-3, steps=1))
    ok = replace(spec, targets=["q"])
    for options, kw, message in [({"lr": math.nan}, {}, "learning rate must be a positive finite number, got nan"),
                                 ({"steps": 0}, {}, "steps must be a positive integer, got 0"),
                                 ({"lr": None}, {}, "fit needs a learning rate: pass lr="),
                                 ({}, {"checkpoint_every": 5}, "checkpoints and resuming need a run directory")]:
        with pytest.raises(UsageError, match=message):
            fit(Toy(), [], lambda m, b: m(b).sum(), ok, FitOptions(**{"lr": 1e-3, "steps": 1, **options}), **kw)
    for coef in (0, -1, math.nan, math.inf):
        with pytest.raises(UsageError, match="coef c must be a positive finite number"):
            scaling.lora_alpha("lora-alpha", 8, coef=coef)


def test_read_only_output_directory_is_refused_before_training(tmp_path, monkeypatch):
    write_text = Path.write_text

    def read_only(self, *args, **kwargs):
        if self.name == ".write-test":  # runs.prepare's probe: what a read-only mount answers
            raise OSError(errno.EROFS, "Read-only file system")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", read_only)
    with pytest.raises(UsageError, match=r"cannot write to output directory .*run: Read-only file system$"):
        runs.prepare(tmp_path / "run")


def test_full_disk_is_refused_before_the_first_step(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runs.shutil, "disk_usage", lambda path: runs.shutil._ntuple_diskusage(10**9, 10**9, 4096))
    code, _, err = run(["train", "--steps", "2", "--quiet", "--task-options", "width=32,depth=2,n_eval=64",
                        "--checkpoint-every", "1", "--out", str(tmp_path / "run")], capsys, monkeypatch)
    one_line_usage_error(code, err, "only 0.0 MiB free in")
    assert "adapter, metrics and checkpoints); free some space or choose another --out" in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # not one step was trained


# --- sweeps: engine, spec, store


def write_spec(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("spec, extra, message", [
    (SPEC_HEAD + "grid: {seed: [0]}\n", ["--engine", "dask"], "unknown engine 'dask'; choose local or ray"),
    (SPEC_HEAD + "grid: {seed: [0]}\n", ["--workers", "0"], "workers must be a positive integer, got 0"),
    (SPEC_HEAD + "grid:\n  seed: [0, 1\n  rank: [2]\n", [], "malformed YAML in {tmp}/s.yaml:5:"),
    (SPEC_HEAD + "grid: {}\n", [], "grid is empty; give at least one field with a list of values"),
    (SPEC_HEAD + "grid: {rank: [2, 4.5]}\n", [], "s.yaml: grid.rank: expected an integer, got 4.5"),
    (SPEC_HEAD + "grid: {coef: [.nan]}\n", [], "coef c must be a positive finite number, got nan"),
    ("study: /tmp/elsewhere\n" + SPEC_HEAD + "grid: {seed: [0]}\n", [], "must be a plain name"),
    (SPEC_HEAD + "grid:\n  seed: !!python/object/apply:os.system [touch pwned]\n", [],
     "s.yaml:4:9: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'; "
     "a spec holds plain values only"),
])
def test_cli_sweep_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, spec, extra, message):
    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path, spec)
    code, _, err = run(["sweep", str(path), "--store", str(tmp_path / "study" / "study.db"), "--no-progress", *extra],
                       capsys, monkeypatch)
    one_line_usage_error(code, err, message.format(tmp=tmp_path))
    assert not (tmp_path / "pwned").exists() and not Path("/tmp/elsewhere").exists()


@pytest.mark.parametrize("kind, message", [
    ("corrupted", "is not a usable loralpha study database"),
    ("newer", "has schema version 3, newer than this loralpha's 2; upgrade loralpha to read it"),
    ("locked", "is locked by another process (waited 0.2 s); let it finish, or stop it if it is stuck, and rerun"),
])
def test_cli_sweep_on_a_store_it_cannot_use_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, kind, message):
    store = tmp_path / "study.db"
    Store(store).close()
    if kind == "corrupted":
        store.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    elif kind == "newer":
        with sqlite3.connect(store) as db:
            db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    else:  # another process holds the write lock for longer than the busy timeout
        monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.2)
        holder = sqlite3.connect(store, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
    path = write_spec(tmp_path, SPEC_HEAD + "grid: {seed: [0]}\n")
    code, _, err = run(["sweep", str(path), "--store", str(store), "--no-progress"], capsys, monkeypatch)
    one_line_usage_error(code, err, message)
    if kind == "locked":
        holder.execute("ROLLBACK")
        with Store(store) as s:
            assert s.records() == []  # nothing was half-written


def test_api_trial_ids_and_locked_stores(tmp_path, monkeypatch):
    config = TrainConfig(rank=2, steps=2, task_options=TINY)
    with pytest.raises(UsageError, match=r"trial id '\.\./escape' must be letters, digits"):
        run_sweep([Trial("../escape", config)], tmp_path / "s.db", progress=False)
    assert not (tmp_path / "s.db").exists()

    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.2)
    with Store(tmp_path / "s.db") as store:
        store.add([Trial(trial_id(config), config)])
        holder = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(UsageError, match="s.db is locked by another process"):
            store.claim("h:1")
        holder.execute("ROLLBACK")
        assert store.claim("h:1").id == trial_id(config)  # the lock is gone: it works again

