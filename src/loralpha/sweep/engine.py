"""Executors: run a study's trials, each in a fresh process, and record them in its store.

    <study dir>/study.db          the store (the study directory is the store's folder)
    <study dir>/runs/<trial id>/  each trial's run directory (see loralpha.runs)

`run_sweep` adds the trials to the store, hands trials left `running` by a dead
process back, then runs every pending trial of the sweep:

- engine "local": up to `workers` trials at a time, each in its own process
  (forked from a server that has torch imported, so a trial starts in
  milliseconds; "spawn" where there is no fork server). A trial whose process
  raises or dies (segfault, os._exit, OOM kill) is `failed` with the reason; the
  others go on. With workers > 1 each trial runs torch on cores // workers threads
  (at least 1), so the workers never run more threads than the machine has cores.
- engine "ray": the same per-trial function as Ray tasks (one process per
  trial, `cpus_per_trial` threads), results written to the store by this process.
  On a multi-node cluster the study directory must be on a shared filesystem.

Devices: `device` and `dtype` are fields of each trial's config, so a sweep may set
them in `fixed` or grid over them. Local trials with device cuda all use the one GPU
they see (CUDA device 0), several at a time with `workers` > 1: small trials share it.
On Ray, `gpus_per_trial` (fractional allowed, e.g. 0.25 puts four trials on a GPU)
reserves GPUs per trial and Ray makes them the only ones the trial's process sees, so
a trial with device auto trains on that GPU; one that sees no CUDA device fails with
that reason instead of training on the CPU.

Trials are claimed from the store, so several sweeps on one store share the work
and never run a trial twice; done/diverged/failed trials are never rerun.

As with any multiprocessing, a script that calls `run_sweep` must do so under
`if __name__ == "__main__":`, since each trial's process imports the script.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import devices, runs
from ..checks import positive_int
from ..errors import UsageError
from .spec import Spec, Trial, load
from .store import Store, worker_name

ENGINES = ("local", "ray")
_TRIAL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Test hooks (for tests/test_sweep.py only): a trial whose id is listed in CRASH_ENV dies with os._exit(CRASH_CODE)
# before training; DELAY_ENV seconds of sleep before each trial make a sweep slow enough to kill mid-way.
CRASH_ENV = "LORALPHA_SWEEP_TEST_CRASH"
DELAY_ENV = "LORALPHA_SWEEP_TEST_DELAY"
CRASH_CODE = 77
_PRELOAD = ["torch", "peft", "transformers", "loralpha.loop", "loralpha.adapters", "loralpha.tasks.teacher_student",
            "loralpha.sweep.engine"]


def run_trial(config: dict[str, Any], run_dir: str, threads: int | None = None, gpus: float = 0.0) -> dict[str, Any]:
    """Train one trial into `run_dir` (replacing whatever is there) and return its JSON-safe summary. A trial
    given `gpus` (Ray's gpus_per_trial) with device auto must see a CUDA device, so auto resolves to it."""
    import torch

    from ..loop import TrainConfig, train

    if threads:
        torch.set_num_threads(threads)
    if gpus > 0 and config.get("device", "auto") == "auto" and not torch.cuda.is_available():
        raise UsageError(f"the trial was given {gpus:g} GPU(s) but torch {torch.__version__} sees no CUDA device "
                         f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); it would train on the "
                         "CPU under device auto: install a CUDA build of torch on the workers, or set device: cpu")
    return runs.clean(train(TrainConfig(**config), out=run_dir, overwrite=True).summary())


def _execute(config: dict[str, Any], run_dir: str, threads: int | None, hooks: dict[str, Any],
             gpus: float = 0.0) -> tuple[str, Any]:
    """run_trial, with its exception turned into ("error", message) and the traceback into run_dir/error.txt."""
    if hooks.get("delay"):
        time.sleep(hooks["delay"])
    if hooks.get("crash"):  # test hook: die the way a segfault would, without a word
        os._exit(CRASH_CODE)
    try:
        return "ok", run_trial(config, run_dir, threads, gpus)
    except BaseException as e:  # noqa: BLE001 — anything a trial raises is that trial's failure
        try:
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            (Path(run_dir) / "error.txt").write_text(traceback.format_exc())
        except OSError:
            pass
        return "error", f"{type(e).__name__}: {e}".splitlines()[0] if str(e) else type(e).__name__


def _local_child(conn, config, run_dir, threads, hooks, driver_pid) -> None:
    """A local trial's process: ignores Ctrl-C (the driver decides), dies with its driver, reports through `conn`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.filterwarnings("ignore", category=FutureWarning)  # as the CLI: library deprecations are not the user's

    def watchdog() -> None:
        while True:
            time.sleep(0.5)
            try:
                os.kill(driver_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass

    threading.Thread(target=watchdog, daemon=True).start()
    result = _execute(config, run_dir, threads, hooks)
    try:
        conn.send(result)
    finally:
        conn.close()


def _ray_trial(config, run_dir, threads, hooks, gpus):
    return _execute(config, run_dir, threads, hooks, gpus)


def _death(exitcode: int | None) -> str:
    if exitcode is None:
        return "trial process did not exit"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"trial process was killed by {name}"
    return f"trial process exited with code {exitcode} without a result"


def _context():
    import multiprocessing as mp

    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return mp.get_context("spawn")


class _Display:
    """A rich progress bar over the sweep's trials with done/running/diverged/failed counts."""

    def __init__(self, store: Store, ids: list[str], enabled: bool, title: str):
        self.store, self.ids, self.last = store, ids, 0.0
        self.progress = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn(title), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     TextColumn("{task.fields[info]}"), transient=False)
            self.task = self.progress.add_task(title, total=len(ids), info="")
            self.progress.start()
            self.update(force=True)

    def update(self, force: bool = False) -> None:
        if self.progress is None or (not force and time.monotonic() - self.last < 0.25):
            return
        self.last = time.monotonic()
        c = self.store.counts(self.ids)
        info = (f"[green]done {c['done']}[/]  running {c['running']}  [yellow]diverged {c['diverged']}[/]  "
                f"[red]failed {c['failed']}[/]  pending {c['pending']}")
        self.progress.update(self.task, completed=c["done"] + c["diverged"] + c["failed"], info=info)

    def close(self) -> None:
        if self.progress is not None:
            self.update(force=True)
            self.progress.stop()


def _hooks(trial: Trial) -> dict[str, Any]:
    crash = {t.strip() for t in os.environ.get(CRASH_ENV, "").split(",") if t.strip()}
    delay = float(os.environ.get(DELAY_ENV) or 0)
    return {"crash": trial.id in crash, "delay": delay}


def _claim(store: Store, me: str, ids: list[str], study_dir: Path) -> tuple[Trial | None, Path | None]:
    """The next pending trial of this sweep, marked running by `me`, and its run directory."""
    trial = store.claim(me, ids)
    if trial is None:
        return None, None
    run_dir = study_dir / "runs" / trial.id
    store.set_run_dir(trial.id, run_dir)
    return trial, run_dir


def _run_local(store: Store, ids: list[str], study_dir: Path, workers: int, threads: int | None,
               display: _Display) -> None:
    from multiprocessing.connection import wait

    ctx = _context()
    me = worker_name()
    active: dict[Any, tuple[Trial, Any]] = {}  # read end of the trial's pipe -> (trial, process)
    try:
        while True:
            while len(active) < workers:
                trial, run_dir = _claim(store, me, ids, study_dir)
                if trial is None:
                    break
                r, w = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_local_child, name=f"trial-{trial.id}",
                                   args=(w, asdict(trial.config), str(run_dir), threads, _hooks(trial), os.getpid()))
                try:
                    proc.start()
                except BaseException:  # Ctrl-C while the process starts: the claimed trial is handed back too
                    w.close()
                    r.close()
                    store.release(trial.id)
                    raise
                w.close()
                active[r] = (trial, proc)
                display.update(force=True)
            if not active:
                break
            for r in wait(list(active), timeout=1.0):
                trial, proc = active.pop(r)
                try:
                    kind, payload = r.recv()
                except (EOFError, OSError):
                    kind, payload = "died", None
                r.close()
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
                if kind == "ok":
                    store.finish(trial.id, payload)
                else:
                    store.fail(trial.id, payload if kind == "error" else _death(proc.exitcode))
                display.update(force=True)
            display.update()
    except BaseException:
        for r, (trial, proc) in active.items():  # Ctrl-C or a bug: stop the trials and hand them back
            proc.kill()
            proc.join()
            r.close()
            store.release(trial.id)
        raise


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError("engine ray needs Ray; install it with: pip install 'loralpha[ray]'") from None
    return ray


@contextlib.contextmanager
def ray_session(workers: int | None = None, address: str | None = None):
    """Ray started for the duration (a local Ray with `workers` CPUs, or the cluster at `address`) and shut down
    after, unless it was running already: several sweeps in a row (the rounds of a bracketed sweep) share one."""
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            options["address"] = address
        else:
            options["num_cpus"] = workers or os.cpu_count() or 1
        try:
            ray.init(**options)
        except ConnectionError as e:
            raise UsageError(f"cannot reach the Ray cluster at {address}: {str(e).splitlines()[0]}") from None
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _run_ray(store: Store, ids: list[str], study_dir: Path, workers: int | None, address: str | None,
             cpus_per_trial: float, gpus_per_trial: float, threads: int | None, display: _Display) -> None:
    with ray_session(workers, address) as ray:
        _run_ray_trials(ray, store, ids, study_dir, workers, cpus_per_trial, gpus_per_trial, threads, display)


def _run_ray_trials(ray, store: Store, ids: list[str], study_dir: Path, workers: int | None, cpus_per_trial: float,
                    gpus_per_trial: float, threads: int | None, display: _Display) -> None:
    me = worker_name()
    threads = threads or max(1, int(cpus_per_trial))
    task = ray.remote(max_calls=1, max_retries=0)(_ray_trial).options(num_cpus=cpus_per_trial,
                                                                      num_gpus=gpus_per_trial)
    in_flight = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // max(cpus_per_trial, 1e-9)))
    active: dict[Any, Trial] = {}
    try:
        while True:
            while len(active) < in_flight:
                trial, run_dir = _claim(store, me, ids, study_dir)
                if trial is None:
                    break
                try:
                    ref = task.remote(asdict(trial.config), str(run_dir), threads, _hooks(trial), gpus_per_trial)
                except BaseException:  # Ctrl-C while Ray submits it: the claimed trial is handed back too
                    store.release(trial.id)
                    raise
                active[ref] = trial
                display.update(force=True)
            if not active:
                break
            ready, _ = ray.wait(list(active), num_returns=1, timeout=1.0)
            for ref in ready:
                trial = active.pop(ref)
                try:
                    kind, payload = ray.get(ref)
                except Exception as e:  # noqa: BLE001 — the worker died or Ray failed the task
                    kind, payload = "error", f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}"
                if kind == "ok":
                    store.finish(trial.id, payload)
                else:
                    store.fail(trial.id, payload)
                display.update(force=True)
            display.update()
    except BaseException:
        for ref, trial in active.items():
            ray.cancel(ref, force=True)
            store.release(trial.id)
        raise


def trials_of(spec_or_trials: Spec | str | Path | Iterable[Trial]) -> tuple[list[Trial], Spec | None]:
    """The trials of a spec, a spec file or a list of trials (and the spec, if there is one)."""
    if isinstance(spec_or_trials, (str, Path)):
        spec_or_trials = load(spec_or_trials)
    if isinstance(spec_or_trials, Spec):
        return spec_or_trials.trials(), spec_or_trials
    trials = list(spec_or_trials)
    if not all(isinstance(t, Trial) for t in trials):
        raise UsageError("run_sweep takes a Spec, a spec file or a list of Trials")
    for t in trials:  # the id names the run directory: a plain name, never a path
        if not _TRIAL_ID.fullmatch(t.id):
            raise UsageError(f"trial id {t.id!r} must be letters, digits, '_' and '-' (it names a directory)")
        t.config.check()
    if len({t.id for t in trials}) != len(trials):
        raise UsageError("trial ids repeat; give each trial its own id")
    return trials, None


def local_threads(workers: int, cores: int | None = None) -> int | None:
    """torch threads per trial for `workers` local workers on `cores` (default: this machine's): the cores
    shared out, C // N each and at least 1, so that N workers never run more threads than there are cores;
    None (torch's own choice) for one worker."""
    if workers <= 1:
        return None
    return max(1, (cores or os.cpu_count() or 1) // workers)


def run_sweep(spec_or_trials: Spec | str | Path | Iterable[Trial], store_path: str | Path, workers: int | None = None,
              engine: str = "local", address: str | None = None, progress: bool = True, cpus_per_trial: float = 1.0,
              gpus_per_trial: float = 0.0, threads: int | None = None) -> dict[str, int]:
    """Run every trial of the sweep that is not finished in the store at `store_path`; returns the sweep's
    status -> count. `workers`: trials at a time (local default: os.cpu_count(); ray default: the cluster's
    CPUs / cpus_per_trial). `address`: a Ray cluster (default: a local Ray with `workers` CPUs).
    `threads`: torch threads per trial (default: local, the cores shared out, see `local_threads`;
    ray, cpus_per_trial rounded down, at least 1)."""
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):  # a trial's process importing the script
        raise RuntimeError("run_sweep was called while a trial process was starting: "
                           "call it under if __name__ == '__main__':")
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; choose local or ray")
    if workers is not None:
        workers = positive_int(workers, "workers")
    if not cpus_per_trial > 0 or not gpus_per_trial >= 0:
        raise UsageError(f"cpus per trial must be > 0 and gpus per trial ≥ 0, got {cpus_per_trial}, {gpus_per_trial}")
    if engine == "local" and (cpus_per_trial != 1.0 or gpus_per_trial != 0.0):
        raise UsageError("cpus and gpus per trial apply to engine ray; the local engine runs one trial per worker")
    if threads is not None:
        threads = positive_int(threads, "threads")
    if engine == "local" and address:
        raise UsageError("an address applies to engine ray")
    if engine == "ray":
        _ray()
    trials, spec = trials_of(spec_or_trials)
    if not trials:
        raise UsageError("the sweep has no trials")
    if engine == "local":  # local trials run here: a device or precision this machine lacks is refused up front
        for device, dtype in sorted({(t.config.device, t.config.dtype) for t in trials}):
            if (device, dtype) != ("auto", "float32"):
                devices.autocast_dtype(devices.resolve(device), dtype)
    store_path = Path(store_path).resolve()
    with Store(store_path) as store:
        if spec is not None:
            store.set_meta("study", spec.name)
            store.set_meta("metric", spec.metric)
            store.set_meta("spec", {"task": spec.task, "fixed": spec.fixed, "grid": spec.grid, "metric": spec.metric})
        store.add(trials)
        store.reset_stale()
        ids = [t.id for t in trials]
        display = _Display(store, ids, progress, f"sweep {spec.name if spec else store_path.parent.name}")
        try:
            if engine == "local":
                n = workers or os.cpu_count() or 1
                _run_local(store, ids, store_path.parent, n, threads or local_threads(n), display)
            else:
                _run_ray(store, ids, store_path.parent, workers, address, cpus_per_trial, gpus_per_trial, threads,
                         display)
        finally:
            display.close()
        return store.counts(ids)
