import json
import math
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from loralpha import cli
from loralpha.errors import UsageError
from loralpha.loop import TrainConfig
from loralpha.sweep import Store, Trial, engine, load, run_sweep, trial_id

TINY = {"steps": 20, "batch_size": 32, "task_options": {"width": 32, "depth": 2, "n_eval": 64}}
TINY_YAML = "fixed: {steps: 20, batch_size: 32, task_options: {width: 32, depth: 2, n_eval: 64}}\n"


def spec_file(tmp_path, grid: str, name: str = "s.yaml", extra: str = ""):
    path = tmp_path / name
    path.write_text("task: teacher-student\n" + TINY_YAML + extra + "grid:\n" + grid)
    return path


def tiny_trials(n: int, **overrides):
    trials = []
    for seed in range(n):
        config = TrainConfig(task="teacher-student", rank=2, seed=seed, **{**TINY, **overrides})
        trials.append(Trial(trial_id(config), config))
    return trials


# --- spec


def test_expansion_is_the_product_with_unique_ids(tmp_path):
    spec = load(spec_file(tmp_path, "  rank: [2, 4, 8]\n  alpha: {log: [1, 100], num: 3}\n  seed: [0, 1]\n",
                          extra="study: demo\nmetric: rel_mse\n"))
    trials = spec.trials()
    assert len(trials) == 3 * 3 * 2
    assert len({t.id for t in trials}) == len(trials)
    assert spec.name == "demo" and all(t.metric == "rel_mse" for t in trials)
    assert spec.grid["alpha"] == [1.0, 10.0, 100.0]  # geometric, both ends included
    first, last = trials[0].config, trials[-1].config
    assert (first.rank, first.alpha, first.seed) == (2, 1.0, 0) and (last.rank, last.alpha, last.seed) == (8, 100.0, 1)
    assert first.steps == 20 and first.task_options == TINY["task_options"]


def test_example_spec_and_integer_log_grids(tmp_path):
    example = load(Path(__file__).parent.parent / "examples" / "teacher-student-sweep.yaml")
    assert len(example.trials()) == 4 * 9 * 2 and example.name == "teacher-student-alpha"
    spec = load(spec_file(tmp_path, "  rank: {log: [1, 64], num: 4}\n"))
    assert spec.grid["rank"] == [1, 4, 16, 64] and all(isinstance(r, int) for r in spec.grid["rank"])


def test_ids_are_stable_and_1e_4_is_0_0001(tmp_path):
    # the literal id pins the hash (sha256 of the sorted-key JSON of asdict(config)); update it only on purpose
    a = load(spec_file(tmp_path, "  rank: [4]\n  lr: [1e-4]\n", "a.yaml")).trials()
    b = load(spec_file(tmp_path, "  rank: [4.0]\n  lr: [0.0001]\n", "b.yaml")).trials()
    assert a[0].config.lr == 1e-4 and isinstance(a[0].config.lr, float) and isinstance(b[0].config.rank, int)
    assert a[0].id == b[0].id == "aeec0b50b31056ec"
    assert trial_id(replace(a[0].config, coef=256)) == trial_id(replace(a[0].config, coef=256.0))
    assert trial_id(replace(a[0].config, seed=1)) != a[0].id


@pytest.mark.parametrize("text, message", [
    ("task: teacher-student\ngrid: {seed: [0]}\nsteps: 5\n", "unknown key 'steps'"),
    ("task: teacher-student\nfixed: {stepz: 5}\ngrid: {seed: [0]}\n", "unknown key fixed.stepz"),
    ("task: teacher-student\ngrid: {rnk: [1, 2]}\n", "unknown key grid.rnk"),
    ("task: teacher-student\ngrid: {}\n", "grid is empty"),
    ("task: teacher-student\n", "grid is empty"),
    ("task: teacher-student\ngrid: {rank: []}\n", "grid.rank is an empty list"),
    ("task: teacher-student\ngrid: {rank: [0, 4]}\n", "trial 1 (rank=0): rank must be a positive integer"),
    ("task: teacher-student\ngrid: {rule: [lora-alpha, lora]}\n", "(rule='lora'): unknown rule 'lora'"),
    ("task: teacher-student\nfixed: {steps: many}\ngrid: {seed: [0]}\n", "fixed.steps: expected an integer"),
    ("task: teacher-student\ngrid: {lr: [1e-4, fast]}\n", "grid.lr: expected a number or null, got 'fast'"),
    ("task: teacher-student\ngrid: {alpha: {log: [0, 10], num: 3}}\n", "grid.alpha: log needs two positive"),
    ("task: teacher-student\ngrid: {rule: {log: [1, 10], num: 3}}\n", "grid.rule: a log grid needs a numeric field"),
    ("task: teacher-student\ngrid: {seed: 3}\n", "grid.seed: expected a list of values"),
    ("task: teacher-student\ngrid: {seed: [0, 0]}\n", "grid.seed gives the value 0 twice"),
    ("task: teacher-student\nfixed: {seed: 1}\ngrid: {seed: [0]}\n", "grid.seed: seed is also in fixed"),
    ("task: teacher-student\ngrid: {task: [tweets]}\n", "grid.task: give the task at the top level"),
    ("grid: {seed: [0]}\n", "missing key 'task'"),
    ("study: ../../etc\ntask: teacher-student\ngrid: {seed: [0]}\n", "must be a plain name"),
    ("- just\n- a list\n", "expected a mapping"),
])
def test_bad_specs_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as e:
        load(path).trials()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("task: teacher-student\ngrid:\n  seed: [0, 1\n  rank: [2]\n")
    with pytest.raises(UsageError, match=r"malformed YAML in .*broken\.yaml:4:"):
        load(path)
    with pytest.raises(UsageError, match="does not exist"):
        load(tmp_path / "missing.yaml")


def test_cli_bad_spec_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    path = tmp_path / "bad.yaml"
    path.write_text("task: teacher-student\nfixed: {stepz: 5}\ngrid: {seed: [0]}\n")
    monkeypatch.setattr(sys, "argv", ["loralpha", "sweep", str(path), "--store", str(tmp_path / "s.db")])
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "stepz" in err


# --- store


def test_store_round_trip(tmp_path):
    path = tmp_path / "study" / "study.db"
    trials = tiny_trials(3)
    with Store(path) as store:
        assert store.add(trials) == 3 and store.add(trials) == 0
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        claimed = store.claim("h:1")
        assert claimed == trials[0] and store.counts()["running"] == 1
        store.finish(claimed.id, {"status": "done", "final_loss": 0.5, "eval": {"rel_mse": 0.25, "bad": math.nan},
                                  "wall_time_s": 1.5, "run_dir": "/r", "load_time_s": 0.25, "train_time_s": 1.0,
                                  "eval_time_s": 0.5})
        second = store.claim("h:1")
        store.finish(second.id, {"status": "diverged", "final_loss": math.inf, "eval": {}, "wall_time_s": 0.1,
                                 "reason": "loss is nan at step 3"})
        store.fail(store.claim("h:1").id, "boom")
        assert store.claim("h:1") is None
        store.add(trials)  # re-adding keeps every status
    with Store(path) as store:  # reopened
        assert store.counts() == {"pending": 0, "running": 0, "done": 1, "diverged": 1, "failed": 1}
        rows = {r["id"]: r for r in store.records()}
        done = rows[trials[0].id]
        assert set(done) == {"id", "config", "status", "final_loss", "eval", "metric", "run_dir", "error",
                             "wall_time_s", "attempts", "worker", "started_at", "finished_at", "load_time_s",
                             "train_time_s", "eval_time_s"}
        assert (done["load_time_s"], done["train_time_s"], done["eval_time_s"]) == (0.25, 1.0, 0.5)
        assert done["config"] == json.loads(json.dumps(asdict(trials[0].config)))
        assert TrainConfig(**done["config"]) == trials[0].config
        assert done["eval"] == {"rel_mse": 0.25, "bad": None} and done["final_loss"] == 0.5
        assert (done["status"], done["run_dir"], done["wall_time_s"], done["attempts"], done["worker"]) == \
            ("done", "/r", 1.5, 1, "h:1")
        assert rows[trials[1].id]["final_loss"] is None and rows[trials[1].id]["error"] == "loss is nan at step 3"
        assert rows[trials[2].id]["error"] == "boom"
        assert [r["id"] for r in store.records("failed")] == [trials[2].id]
        raw = store.db.execute("SELECT final_loss, eval FROM trials").fetchall()
        assert "NaN" not in json.dumps(raw) and "Infinity" not in json.dumps(raw)


def test_store_hands_back_trials_of_dead_workers_only(tmp_path):
    trials = tiny_trials(3)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with Store(tmp_path / "s.db") as store:
        store.add(trials)
        store.claim(engine.worker_name(dead.pid))  # a worker that has exited
        store.claim(engine.worker_name(os.getppid()))  # a live one
        store.claim("elsewhere:1")  # another host: not ours to judge
        assert store.reset_stale() == [trials[0].id]
        assert store.counts() == {"pending": 1, "running": 2, "done": 0, "diverged": 0, "failed": 0}


@pytest.mark.parametrize("content, message", [
    (b"this is not a database, just text\n" * 10, "is not a usable loralpha study database"),
    ("other", "an SQLite database but not a loralpha study"),
    ("newer", "schema version 99, newer than"),
    ("corrupt", "not a usable loralpha study database"),
])
def test_store_refuses_what_it_cannot_read(tmp_path, content, message):
    path = tmp_path / "s.db"
    if content == "other":
        sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    elif content == "newer":
        Store(path).close()
        with sqlite3.connect(path) as db:
            db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    elif content == "corrupt":
        with Store(path) as store:
            store.add(tiny_trials(50))
        data = bytearray(path.read_bytes())
        data[4096:16384] = b"\xff" * 12288  # pages 2-4: the tables
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(content)
    with pytest.raises(UsageError) as e:
        Store(path).records()
    assert message in str(e.value) and "\n" not in str(e.value)


def _hammer(path, start, out):
    store = Store(path)
    start.wait()
    got = []
    while True:
        trial = store.claim(f"h:{os.getpid()}")
        if trial is None:
            break
        got.append(trial.id)
        time.sleep(0.002)  # a moment of "work", so that the others get the CPU too
        store.finish(trial.id, {"status": "done", "final_loss": 1.0, "eval": {}, "wall_time_s": 0.0})
    out.put(got)


def test_claim_never_hands_out_a_trial_twice(tmp_path):
    path = tmp_path / "s.db"
    trials = tiny_trials(120)
    with Store(path) as store:
        store.add(trials)
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(path, start, out)) for _ in range(3)]
    for p in procs:
        p.start()
    start.set()
    claimed = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    everything = [tid for got in claimed for tid in got]
    assert sorted(everything) == sorted(t.id for t in trials)  # each exactly once
    assert sum(1 for got in claimed if got) >= 2  # they really competed
    with Store(path) as store:
        assert {r["attempts"] for r in store.records()} == {1}


# --- executors


def test_local_sweep_isolates_crashes_and_records_everything(tmp_path, monkeypatch, capsys):
    ok = tiny_trials(3)
    crash = ok[1]
    raises = Trial("raises", replace(ok[0].config, task_options={**TINY["task_options"], "bogus": 1}))
    diverges = Trial("diverges", replace(ok[0].config, lr=10.0))
    monkeypatch.setenv(engine.CRASH_ENV, crash.id)  # test hook: that trial's process calls os._exit
    counts = run_sweep([*ok, raises, diverges], tmp_path / "study" / "study.db", workers=2, progress=False)
    assert counts == {"pending": 0, "running": 0, "done": 2, "diverged": 1, "failed": 2}
    with Store(tmp_path / "study" / "study.db") as store:
        rows = {r["id"]: r for r in store.records()}
    assert rows[crash.id]["status"] == "failed" and f"exited with code {engine.CRASH_CODE}" in rows[crash.id]["error"]
    assert rows["raises"]["error"] == "UsageError: teacher-student does not take bogus"
    assert (tmp_path / "study" / "runs" / "raises" / "error.txt").exists()
    assert rows["diverges"]["status"] == "diverged" and "exceeds" in rows["diverges"]["error"]
    for t in (ok[0], ok[2]):
        row = rows[t.id]
        assert row["status"] == "done" and row["final_loss"] > 0 and "rel_mse" in row["eval"]
        assert row["run_dir"] == str(tmp_path / "study" / "runs" / t.id)
        assert json.loads((tmp_path / "study" / "runs" / t.id / "summary.json").read_text())["status"] == "done"
    assert {r["attempts"] for r in rows.values()} == {1}

    # the CLI on a spec: default store studies/<study>/study.db, a table, exit 1 naming the failed trial
    monkeypatch.chdir(tmp_path)
    path = spec_file(tmp_path, "  seed: [0, 1]\n", "cli.yaml")
    crashed = load(path).trials()[1].id
    monkeypatch.setenv(engine.CRASH_ENV, crashed)
    monkeypatch.setattr(sys, "argv", ["loralpha", "sweep", str(path), "--workers", "2", "--no-progress"])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out, err = capsys.readouterr()
    assert e.value.code == 1 and f"1 trials failed; the first, {crashed}" in err
    assert "studies/cli/study.db" in out and "done" in out
    assert Store(tmp_path / "studies" / "cli" / "study.db").counts()["done"] == 1


def _sweep_command(spec, store, *extra):
    return [sys.executable, "-m", "loralpha", "sweep", str(spec), "--store", str(store), "--no-progress",
            "--threads", "1", *extra]  # torch on 1 thread: many threads on a few shared cores crawl


def _env(**extra):
    return {**os.environ, "HF_HUB_OFFLINE": "1", **extra}


def test_killed_sweep_resumes_in_two_concurrent_sweeps_that_run_each_trial_once(tmp_path, monkeypatch):
    # one sweep process is SIGKILLed mid-way; two sweeps then share the rest of the same store
    spec = spec_file(tmp_path, "  seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n")
    store_path = tmp_path / "study" / "study.db"
    slow = _env(**{engine.DELAY_ENV: "0.3"})  # test hook: a pause before each trial, so there is time to act
    proc = subprocess.Popen(_sweep_command(spec, store_path, "--workers", "1"), env=slow, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and proc.poll() is None:
        if store_path.exists():
            with Store(store_path) as store:
                counts = store.counts()
                if counts["done"] and counts["running"]:  # a trial finished and the next one is claimed
                    break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep, its fork server and its running trial
    proc.wait()
    with Store(store_path) as store:
        before = {r["id"]: r for r in store.records()}
    finished = {tid: r for tid, r in before.items() if r["status"] in ("done", "diverged")}
    cut = [tid for tid, r in before.items() if r["status"] == "running"]
    assert 1 <= len(finished) < 10, proc.stderr.read().decode()[-2000:]
    assert len(cut) == 1  # the trial the kill interrupted, left `running` by a dead process

    # the rest: a sweep process, joined as soon as it has claimed a trial by a second sweep (this process)
    other = subprocess.Popen(_sweep_command(spec, store_path, "--workers", "1"), env=slow,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while time.monotonic() < deadline and other.poll() is None:
        with Store(store_path) as store:
            if any(r["worker"] and r["worker"].endswith(f":{other.pid}") for r in store.records("running")):
                break
        time.sleep(0.05)
    monkeypatch.setenv(engine.DELAY_ENV, "0.3")
    run_sweep(load(spec), store_path, workers=1, threads=1, progress=False)
    assert other.wait(timeout=150) == 0, other.stderr.read().decode()[-2000:]
    with Store(store_path) as store:
        after = {r["id"]: r for r in store.records()}
    assert len(after) == 10 and {r["status"] for r in after.values()} == {"done"}
    for tid, row in finished.items():  # never rerun
        assert after[tid]["attempts"] == 1 and after[tid]["finished_at"] == row["finished_at"]
    assert after[cut[0]]["attempts"] == 2  # run once more, over its half-written run directory
    assert json.loads((tmp_path / "study" / "runs" / cut[0] / "summary.json").read_text())["status"] == "done"
    assert all(r["attempts"] == 1 for tid, r in after.items() if tid != cut[0])  # shared, never run twice
    workers = {after[tid]["worker"] for tid in after if tid not in finished}
    assert len(workers) == 2, workers  # both sweeps took part


def test_ray_engine_is_a_usage_error_without_ray(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(UsageError, match=r"pip install 'loralpha\[ray\]'"):
        run_sweep(tiny_trials(1), tmp_path / "s.db", engine="ray", progress=False)
    with pytest.raises(UsageError, match="unknown engine"):
        run_sweep(tiny_trials(1), tmp_path / "s.db", engine="dask", progress=False)
    with pytest.raises(UsageError, match="apply to engine ray"):
        run_sweep(tiny_trials(1), tmp_path / "s.db", gpus_per_trial=1, progress=False)
    assert not (tmp_path / "s.db").exists()  # refused before anything was written


def test_ray_engine_gives_the_local_results(tmp_path):
    pytest.importorskip("ray", reason="Ray is optional: pip install 'loralpha[ray]'")
    trials = [*tiny_trials(3), Trial("diverges", replace(tiny_trials(1)[0].config, lr=10.0))]
    run_sweep(trials, tmp_path / "local" / "study.db", workers=2, progress=False)
    run_sweep(trials, tmp_path / "ray" / "study.db", workers=2, engine="ray", progress=False)

    def results(path):
        with Store(path) as store:
            return {r["id"]: (r["status"], r["final_loss"], r["eval"], r["attempts"]) for r in store.records()}

    local, ray = results(tmp_path / "local" / "study.db"), results(tmp_path / "ray" / "study.db")
    assert local.keys() == ray.keys() and local["diverges"][0] == "diverged"
    for tid in local:
        assert ray[tid][0] == local[tid][0] and ray[tid][3] == 1
        assert ray[tid][1] == (None if local[tid][1] is None else pytest.approx(local[tid][1], rel=1e-6, abs=0))
        assert ray[tid][2] == pytest.approx(local[tid][2], rel=1e-6)
    assert (tmp_path / "ray" / "runs" / trials[0].id / "summary.json").exists()


# --- Ctrl-C


@pytest.fixture
def terminal_sigint():
    """Ctrl-C as in a terminal: a test run started as a background job begins with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def ctrl_c_sweep(trials, store_path, running, give_up_s, settle_s=1.5, **kwargs):
    """Run the sweep and press Ctrl-C (SIGINT to this process) `settle_s` after `running` of its trials are running
    (time for their processes to start: a Ctrl-C while one starts is the xfail test below), or after `give_up_s`
    seconds whatever the store says. Returns whether the trials were seen running, and the seconds it took."""
    seen, finished = threading.Event(), threading.Event()

    def watch():
        deadline = time.monotonic() + give_up_s
        while time.monotonic() < deadline and not finished.is_set():
            try:
                with Store(store_path) as store:
                    if store.counts()["running"] >= running:
                        seen.set()
                        break
            except (UsageError, sqlite3.Error):  # the store is being created
                pass
            time.sleep(0.05)
        finished.wait(settle_s if seen.is_set() else 0)
        if not finished.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=watch, daemon=True)
    start = time.monotonic()
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(trials, store_path, progress=False, **kwargs)
    finally:
        finished.set()
        watcher.join()
    return seen.is_set(), time.monotonic() - start


def assert_handed_back(store_path, trials, claimed):
    with Store(store_path) as store:
        rows = {r["id"]: r for r in store.records()}
    assert {tid: r["status"] for tid, r in rows.items()} == {t.id: "pending" for t in trials}
    assert all(r["worker"] is None for r in rows.values())
    assert sorted(r["attempts"] for r in rows.values()) == [0] * (len(trials) - claimed) + [1] * claimed


@pytest.mark.usefixtures("terminal_sigint")
def test_ctrl_c_of_a_local_sweep_hands_its_running_trials_back_to_pending(tmp_path, monkeypatch):
    trials, store_path = tiny_trials(3), tmp_path / "study" / "study.db"
    monkeypatch.setenv(engine.DELAY_ENV, "60")  # test hook: every trial sleeps first, so both are running at Ctrl-C
    seen, seconds = ctrl_c_sweep(trials, store_path, running=2, give_up_s=60, workers=2)
    assert seen and seconds < 30  # stopped at once: the trials' processes were killed, not waited for
    assert_handed_back(store_path, trials, claimed=2)
    assert not any((tmp_path / "study" / "runs" / t.id / "summary.json").exists() for t in trials)
    monkeypatch.delenv(engine.DELAY_ENV)
    assert run_sweep(trials, store_path, workers=2, progress=False)["done"] == 3  # the next sweep runs them all
    with Store(store_path) as store:
        assert sorted(r["attempts"] for r in store.records()) == [1, 2, 2]


@pytest.mark.usefixtures("terminal_sigint")
def test_ctrl_c_of_a_ray_sweep_hands_its_running_trials_back_to_pending(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="Ray is optional: pip install 'loralpha[ray]'")
    trials, store_path = tiny_trials(2), tmp_path / "study" / "study.db"
    monkeypatch.setenv(engine.DELAY_ENV, "60")
    seen, seconds = ctrl_c_sweep(trials, store_path, running=2, give_up_s=45, settle_s=3, workers=2, engine="ray")
    if not seen:
        pytest.skip(f"Ray started no trial within 45 s on this machine ({seconds:.0f} s in all)")
    assert_handed_back(store_path, trials, claimed=2)


def test_ctrl_c_while_a_trials_process_starts_hands_it_back(tmp_path, monkeypatch):
    real_context = engine._context

    def ctrl_c():
        raise KeyboardInterrupt

    class Starting:  # the sweep's multiprocessing context, with Ctrl-C arriving as a trial's process starts
        def __init__(self):
            self.ctx = real_context()

        def Pipe(self, *args, **kwargs):
            return self.ctx.Pipe(*args, **kwargs)

        def Process(self, *args, **kwargs):
            proc = self.ctx.Process(*args, **kwargs)
            proc.start = ctrl_c
            return proc

    monkeypatch.setattr(engine, "_context", Starting)
    trials, store_path = tiny_trials(1), tmp_path / "study" / "study.db"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(trials, store_path, workers=1, progress=False)
    with Store(store_path) as store:
        assert store.counts()["pending"] == 1 and store.counts()["running"] == 0


def test_a_version_1_store_is_upgraded_in_place_and_keeps_its_trials(tmp_path):
    path = tmp_path / "study.db"
    trials = tiny_trials(2)
    with Store(path) as store:
        store.add(trials)
        store.finish(store.claim("h:1").id, {"status": "done", "final_loss": 0.5, "eval": {}, "wall_time_s": 2.0})
    with sqlite3.connect(path) as db:  # as the first loralpha wrote it: no wall-time split
        for name in ("load_time_s", "train_time_s", "eval_time_s"):
            db.execute(f"ALTER TABLE trials DROP COLUMN {name}")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with Store(path) as store:
        rows = store.records()
        assert [r["status"] for r in rows] == ["done", "pending"] and rows[0]["wall_time_s"] == 2.0
        assert rows[0]["train_time_s"] is None
        store.finish(store.claim("h:1").id, {"status": "done", "final_loss": 0.4, "eval": {}, "wall_time_s": 3.0,
                                             "load_time_s": 1.0, "train_time_s": 2.5, "eval_time_s": 0.5})
        assert store.records()[1]["eval_time_s"] == 0.5
        assert store.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"


@pytest.mark.parametrize("workers, cores, threads", [(1, 2, None), (2, 2, 1), (2, 16, 8), (3, 16, 5), (4, 2, 1)])
def test_local_workers_share_the_cores_out_and_never_run_more_threads_than_cores(workers, cores, threads):
    from loralpha.sweep.engine import local_threads

    assert local_threads(workers, cores) == threads
    if threads:
        assert workers * threads <= max(cores, workers)


def test_many_connections_opening_one_new_store_at_once_all_get_it(tmp_path):
    path = tmp_path / "study.db"
    trials = tiny_trials(8)
    start, errors = threading.Barrier(8), []

    def open_and_add(trial):  # each opens the not-yet-existing file and adds its trial at the same moment
        start.wait()
        try:
            with Store(path) as store:
                store.add([trial])
        except Exception as e:  # collected: the assertion below names it
            errors.append(e)

    threads = [threading.Thread(target=open_and_add, args=(t,)) for t in trials]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Store(path) as store:
        assert len(store.records()) == 8


def test_a_store_opened_while_another_connection_is_writing_the_new_file_waits_for_it(tmp_path):
    # a writer that holds the new file's reserved lock makes SQLite refuse the switch to WAL at once, without
    # its busy wait: Store must retry until the writer is done, not report the store as locked
    path = tmp_path / "study.db"
    writer = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")
    done = threading.Timer(0.3, writer.execute, args=("COMMIT",))
    done.start()
    try:
        with Store(path) as store:
            store.add(tiny_trials(1))
            assert len(store.records()) == 1
    finally:
        done.join()
        writer.close()


# --- bracketed sweeps (loralpha.studies.bracket plans them; tests/test_protocol.py runs one end to end)

BRACKET_YAML = ("task: teacher-student\n" + TINY_YAML.replace("steps: 20", "steps: 12, eval_every: 4")
                + "grid: {rule: [lora-alpha, 2rank]}\n")


@pytest.mark.parametrize("section, message", [
    ("{axes: lr}", "bracket: unknown key 'axes'; it has: axis, start"),
    ("{axis: rank}", "bracket.axis: rank is not a number field"),
    ("{axis: lrr}", "bracket.axis: 'lrr' is not a config field"),
    ("{step_decades: -1}", "bracket.step_decades: expected a positive number, got -1"),
    ("{max_points: 2}", "bracket.max_points: expected an integer from 3 to 100, got 2"),
    ("{first_points: 9}", "bracket.first_points: expected an integer from 3 to 8, got 9"),
    ("{start: fast}", "bracket.start: expected a positive number, got 'fast'"),
    ("{start: {lora: 1e-3}}", "bracket.start: no group 'lora'; the groups are: rule=2rank, rule=lora-alpha"),
    ("{axis: alpha}", "bracket.start: default is the rule's default η, for axis lr"),
    ("{choose: {metric: rel_mse, seed: [0]}}", "bracket.choose: unknown key 'seed'; it has: metric, seeds"),
    ("{seeds_at_best: [0, 1]}", "bracket.seeds_at_best: seed 0 already chooses"),
    ("{report: {metrics: [rel_mse], seeds: [3]}}", "bracket.report.seeds: seed 3 never runs at the best point"),
    ("{margin: {accuracy: 0.1}}", "bracket.margin: 'accuracy' is not a report metric (eval_loss)"),
    ("[lr]", "bracket must be a mapping"),
])
def test_bad_bracket_sections_are_one_line_naming_the_key(tmp_path, section, message):
    path = tmp_path / "bad.yaml"
    path.write_text(BRACKET_YAML + f"bracket: {section}\n")
    with pytest.raises(UsageError) as e:
        load(path)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("fixed: {lr: 1e-3}\ngrid: {rule: [2rank]}\nbracket: {}\n", "fixed.lr: lr is the bracketed axis"),
    ("grid: {seed: [0, 1]}\nbracket: {}\n", "grid.seed: a bracketed spec gives its seeds in bracket"),
    ("grid: {rule: [2rank]}\nbracket: {}\n", "its trials are planned round by round"),  # no expand()
])
def test_a_bracketed_spec_owns_its_axis_and_seeds(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text("task: teacher-student\n" + text)
    with pytest.raises(UsageError, match=message):
        load(path).trials()


def test_cli_bad_bracket_key_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    path = tmp_path / "bad.yaml"
    path.write_text(BRACKET_YAML + "bracket: {max_pts: 4}\n")
    monkeypatch.setattr(sys, "argv", ["loralpha", "sweep", str(path), "--store", str(tmp_path / "s.db")])
    with pytest.raises(SystemExit) as e:
        cli.main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "max_pts" in err


def bracket_spec(tmp_path, extra=""):
    path = tmp_path / "bracket.yaml"
    path.write_text(BRACKET_YAML + "bracket: {start: {lora-alpha: 2e-4, 2rank: 5e-2}, max_points: 4, "
                    "choose: rel_mse, seeds_at_best: [1]" + extra + "}\n")
    return path


def test_a_killed_bracketed_sweep_resumes_without_training_a_finished_trial_again(tmp_path):
    from loralpha.studies import bracket

    spec = bracket_spec(tmp_path)
    store_path = tmp_path / "study" / "study.db"
    slow = _env(**{engine.DELAY_ENV: "0.3"})
    proc = subprocess.Popen(_sweep_command(spec, store_path, "--workers", "1"), env=slow, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and proc.poll() is None:
        if store_path.exists():
            with Store(store_path) as store:
                counts = store.counts()
                if counts["done"] >= 2 and counts["running"]:
                    break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with Store(store_path) as store:
        before = {r["id"]: r for r in store.records()}
    finished = {tid: r for tid, r in before.items() if r["status"] in ("done", "diverged")}
    assert finished and [r["status"] for r in before.values()].count("running") == 1, proc.stderr.read().decode()

    rerun = subprocess.run(_sweep_command(spec, store_path, "--workers", "2"), env=_env(), capture_output=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    with Store(store_path) as store:
        after = {r["id"]: r for r in store.records()}
    for tid, row in finished.items():  # never trained again
        assert after[tid]["attempts"] == 1 and after[tid]["finished_at"] == row["finished_at"]
    trials, groups = bracket.plan(load(spec), after)
    assert all(g.settled for g in groups) and {t.id for t in trials} == set(after)
    assert {r["status"] for r in after.values()} <= {"done", "diverged"}


def test_a_bracketed_sweep_on_ray_gives_the_local_store(tmp_path):
    pytest.importorskip("ray", reason="Ray is optional: pip install 'loralpha[ray]'")
    from loralpha.studies import bracket

    spec = load(bracket_spec(tmp_path, ", first_points: 3"))
    for where, engine_name in (("local", "local"), ("ray", "ray")):
        bracket.run(spec, tmp_path / where / "study.db", workers=2, engine=engine_name, threads=1, progress=False)

    def results(path):
        with Store(path) as store:
            return {r["id"]: (r["status"], r["eval"], r["attempts"]) for r in store.records()}

    local, ray = results(tmp_path / "local" / "study.db"), results(tmp_path / "ray" / "study.db")
    assert local.keys() == ray.keys() and len(local) >= 8
    for tid in local:
        assert ray[tid][0] == local[tid][0] and ray[tid][2] == 1
        assert ray[tid][1] == pytest.approx(local[tid][1], rel=1e-6)
    with Store(tmp_path / "ray" / "study.db") as store:
        assert store.get_meta("spec") == spec.data()
