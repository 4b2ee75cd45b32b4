"""The sweep engines: local with 2 workers against 1 (speed-up), and Ray's per-trial overhead.

    python -m bench.suite.sweep_engines           # ~1 min on 2 cores
    python -m bench.suite.sweep_engines --quick   # local engine only, tiny trials: a smoke run

Speed-up: the same 4 teacher-student trials (the paper's MLP, rank 8, 100 steps, different
seeds) run into a fresh store (after one untimed trial that starts the engine's fork server) with
`run_sweep(engine="local")` at 1 worker (torch's own threads) and at 2 workers (1 thread each),
alternating, 2 repeats; speed-up = median wall(1) / median wall(2).

Ray overhead: near-empty trials (an MLP of width 16, 3 steps) through engine "local" and
engine "ray" (1 worker each) at K = 1 and K = 4 trials, fresh stores, alternating. Per engine the
wall time is fixed + K × per-trial; Ray's per-trial overhead is its slope minus the local
engine's, and its fixed cost (ray.init and shutdown) the difference of the intercepts.
"""

from __future__ import annotations

import shutil
import statistics
import time

from bench.common import quick_arg, save, work_dir
from loralpha import TrainConfig
from loralpha.sweep import Trial, run_sweep, trial_id


def trials(n: int, **fields) -> list[Trial]:
    out = []
    for seed in range(n):
        c = TrainConfig(task="teacher-student", rule="lora-alpha", rank=8, seed=seed, **fields)
        out.append(Trial(trial_id(c), c))
    return out


def timed(ts: list[Trial], name: str, quick: bool, **kw) -> float:
    folder = work_dir("engines", quick) / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    start = time.perf_counter()
    counts = run_sweep(ts, folder / "study.db", progress=False, **kw)
    wall = time.perf_counter() - start
    if counts["done"] != len(ts):
        raise RuntimeError(f"{name}: {counts}")
    shutil.rmtree(folder, ignore_errors=True)
    return wall


def run(quick: bool) -> dict:
    if quick:
        work = trials(2, steps=5, eval_every=5, batch_size=32, task_options={"width": 16, "depth": 2, "n_eval": 16})
        repeats = 1
    else:
        work = trials(4, steps=100, eval_every=100)
        repeats = 2
    warm = timed(work[:1], "warm-up", quick, workers=1)  # starts the fork server (once per process), untimed
    walls = {1: [], 2: []}
    for _ in range(repeats):
        for w in (1, 2):
            walls[w].append(timed(work, f"speedup-{w}", quick, workers=w))
    w1, w2 = statistics.median(walls[1]), statistics.median(walls[2])
    print(f"local engine, {len(work)} trials: 1 worker {w1:.1f} s, 2 workers {w2:.1f} s, speed-up {w1 / w2:.2f}×",
          flush=True)
    result = {"warm_up_s": warm, "speedup": {"trials": len(work), "steps": work[0].config.steps, "repeats": repeats,
                                             "wall_1": walls[1], "wall_2": walls[2], "speedup": w1 / w2}}
    if quick:
        result["ray"] = {"skipped": "--quick runs the local engine only"}
        return result
    tiny = dict(steps=3, eval_every=3, batch_size=16, task_options={"width": 16, "depth": 2, "n_eval": 16})
    ks = (1, 4)
    ray_walls = {(e, k): [] for e in ("local", "ray") for k in ks}
    for _ in range(1):
        for k in ks:
            for engine in ("local", "ray"):
                ray_walls[(engine, k)].append(timed(trials(k, **tiny), f"{engine}-{k}", quick, engine=engine,
                                                    workers=1))
    fits = {}
    for engine in ("local", "ray"):
        a, b = (statistics.median(ray_walls[(engine, k)]) for k in ks)
        slope = (b - a) / (ks[1] - ks[0])
        fits[engine] = {"per_trial_s": slope, "fixed_s": a - slope * ks[0],
                        "walls": {k: ray_walls[(engine, k)] for k in ks}}
    overhead = fits["ray"]["per_trial_s"] - fits["local"]["per_trial_s"]
    print(f"ray: {fits['ray']['per_trial_s']:.2f} s/trial vs local {fits['local']['per_trial_s']:.2f} s/trial "
          f"→ overhead {overhead:.2f} s/trial; fixed {fits['ray']['fixed_s']:.1f} s vs "
          f"{fits['local']['fixed_s']:.1f} s", flush=True)
    result["ray"] = {"ks": ks, "fits": fits, "per_trial_overhead_s": overhead,
                     "fixed_overhead_s": fits["ray"]["fixed_s"] - fits["local"]["fixed_s"]}
    return result


def main() -> None:
    quick = quick_arg(__doc__)
    print(f"wrote {save('sweep_engines', run(quick), quick)}")


if __name__ == "__main__":
    main()
