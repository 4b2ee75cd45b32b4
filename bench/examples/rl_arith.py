"""rl-arith measured: the embedded Gemma-3-270M's held-out accuracy before any training, the time of one GRPO
step, then lora-alpha (untuned: its default η, the task's full-FT 1e-6), 2rank (η 2e-4) and full (the targeted
q_proj/v_proj weights, η 1e-6) at an equal budget of GRPO steps on two seeds, each with its held-out accuracy
and wall time.

    python -m bench.examples.rl_arith                       # → docs/results/rl-arith/*.json (needs loralpha[llm])
    python -m bench.examples.rl_arith --only base,step      # the base accuracy and the step time alone
    python -m bench.examples.rl_arith --steps 100 --seeds 0,1 --rules lora-alpha,2rank,full
    python -m bench.examples.rl_arith --quick               # the same path on a tiny random Llama (seconds)

Every part is one JSON file, written when it finishes; a rerun skips the files that exist (delete one to redo it).
Run directories go to bench/work/rl-arith/, checkpointed every CHECKPOINT_EVERY steps: a run stopped part-way
continues from its checkpoint on the next call; its record then says `resumed_from` (the step), and its times
are those of the last piece alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, machine, save, work_dir
from loralpha import TrainConfig, runs, tasks, train
from loralpha.checkpoints import CHECKPOINT
from loralpha.tasks.causal_lm import tiny_causal_lm

OUT = ROOT / "docs" / "results" / "rl-arith"
RULES, SEEDS, STEPS = ("lora-alpha", "2rank", "full"), (0, 1), 100  # the comparison's runs, rule × seed
CHECKPOINT_EVERY = 5  # GRPO steps between a run's checkpoints (a step took 11-14 s on one core)


def tiny_options(folder: Path) -> dict[str, Any]:
    """A saved tiny random Llama and a small problems file: the smoke run's model and data."""
    model, tokenizer = tiny_causal_lm()
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    rows = [{"prompt": f"{a} + {b} =", "answer": a + b} for a in range(1, 6) for b in range(1, 5)]
    (folder / "sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"model": str(folder / "model"), "data": str(folder / "sums.jsonl"), "n_eval": 4, "generations": 4,
            "max_new_tokens": 4}


def write(name: str, payload: dict[str, Any]) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=float) + "\n")
    print(f"wrote {path}", flush=True)
    return path


def base_accuracy(options: dict[str, Any]) -> dict[str, Any]:
    """The untouched model on the held-out set: greedy accuracy, format rate, sampled mean reward."""
    t0 = time.perf_counter()
    task = tasks.build("rl-arith", **options)
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    task.model.eval()
    metrics = task.evaluate(task.model)
    return {"model": task.info["model"], "n_eval": task.info["n_eval"], "data": task.info["data"], **metrics,
            "load_s": load, "eval_s": time.perf_counter() - t0}


def step_time(options: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Seconds of GRPO steps under lora-alpha r = 8 (sampling + scoring + forward/backward + AdamW), each on its
    own batch, with the batch's mean reward."""
    config = TrainConfig(task="rl-arith", rule="lora-alpha", rank=8, steps=repeats, eval_every=10**6,
                         task_options=options)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(config, out=Path(tmp) / "run", evaluate=False)
        rows = [r for r in runs.read_metrics(Path(tmp) / "run") if "loss" in r]
    per_step = result.train_time_s / max(result.steps, 1)
    return {"steps": result.steps, "s_per_step": per_step,
            "mean_reward": [1 - r["loss"] for r in rows], "batch": tasks.TASKS["rl-arith"].batch_size,
            "generations": options.get("generations", 8), "note": "mean: train_time_s / steps (no evaluation)"}


def one_run(rule: str, seed: int, steps: int, options: dict[str, Any], quick: bool) -> dict[str, Any]:
    config = TrainConfig(task="rl-arith", rule=rule, rank=8, seed=seed, steps=steps, eval_every=steps,
                         task_options=options)
    out = work_dir("rl-arith", quick) / f"{rule}-s{seed}-{steps}steps"
    again = (out / CHECKPOINT).is_file()  # a run stopped part-way (the session ended, say) continues from there
    result = train(config, out=out, overwrite=not again, resume=again, checkpoint_every=CHECKPOINT_EVERY)
    rows = runs.read_metrics(out)
    evals = [r for r in rows if "accuracy" in r]
    losses = [r["loss"] for r in rows if "loss" in r]
    return {"rule": rule, "seed": seed, "rank": 8, "steps": result.steps, "status": result.status,
            "lr": runs.read_json(out / "config.json")["lr"],
            "before": {k: v for k, v in evals[0].items() if k != "step"} if evals else None,
            "after": result.eval, "train_reward_last10": 1 - statistics.fmean(losses[-10:]) if losses else None,
            "wall_time_s": result.wall_time_s, "train_time_s": result.train_time_s, "eval_time_s": result.eval_time_s,
            "load_time_s": result.load_time_s, "resumed_from": result.resumed_from,
            "train_reward": [1 - v for v in losses]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small, fast smoke run on a tiny random Llama")
    p.add_argument("--only", default="base,step,runs", help="parts to run: base, step, runs")
    p.add_argument("--steps", type=int, default=STEPS, help="GRPO steps of every run")
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    p.add_argument("--rules", default=",".join(RULES))
    p.add_argument("--step-repeats", type=int, default=3)
    args = p.parse_args()
    parts = set(args.only.split(","))
    if args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            options = tiny_options(Path(tmp))
            payload = {"base": base_accuracy(options), "step": step_time(options, 2),
                       "runs": [one_run(rule, 0, 2, options, True) for rule in args.rules.split(",")]}
        print(f"wrote {save('rl_arith', payload, quick=True)}")
        return
    options: dict[str, Any] = {}
    if "base" in parts and not (OUT / "base.json").exists():
        write("base", base_accuracy(options))
    if "step" in parts and not (OUT / "step.json").exists():
        write("step", step_time({**options, "eval_samples": 0}, args.step_repeats))
    if "runs" in parts:
        for seed in (int(s) for s in args.seeds.split(",")):
            for rule in args.rules.split(","):
                name = f"{rule}-s{seed}-{args.steps}steps"
                if not (OUT / f"{name}.json").exists():
                    write(name, one_run(rule, seed, args.steps, options, False))


if __name__ == "__main__":
    main()
