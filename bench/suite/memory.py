"""Peak memory (RSS) per task and rule.

    python -m bench.suite.memory           # teacher-student × 6 rules, tweets and bbc-news × 3 rules, 10 steps each
                                           # (~2 min)
    python -m bench.suite.memory --quick   # a tiny MLP, one rule: a smoke run

Each (task, rule) trains in its own fresh Python process (`loralpha.train`, rank 8, the batch
sizes of quality.py, 10 steps, one held-out evaluation of 200 examples at the end); the process
reports its peak resident set size (`resource.getrusage(RUSAGE_SELF).ru_maxrss`) after building
the task (model and data, before any adapter) and after training. The difference is what the
rule's adapter, optimizer state and activations add on top of the loaded model. On the text tasks
only lora-alpha, 2rank and full run: rank, rslora and loraplus have 2rank's parameter shapes.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench.common import quick_arg, save

CHILD = r"""
import json, resource, sys, torch
from loralpha import TrainConfig, tasks
from loralpha.loop import train
cfg = json.loads(sys.argv[1])
torch.manual_seed(0)
tasks.build(cfg["task"], batch_size=cfg.get("batch_size"), **cfg.get("task_options", {}))
built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = train(TrainConfig(**cfg))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"built_kib": built, "peak_kib": peak, "status": result.status}))
"""

RULES = ["lora-alpha", "rank", "2rank", "rslora", "loraplus", "full"]
TEXT_RULES = ["lora-alpha", "2rank", "full"]  # rank, rslora, loraplus have 2rank's shapes: only α differs
TASKS = {"teacher-student": dict(batch_size=None, task_options={}),
         "tweets": dict(batch_size=8, task_options={"n_eval": 200}),
         "bbc-news": dict(batch_size=8, task_options={"n_eval": 200, "max_length": 64})}


def measure(task: str, rule: str, steps: int, batch_size, task_options) -> dict:
    cfg = {"task": task, "rule": rule, "rank": 8, "steps": steps, "eval_every": steps, "batch_size": batch_size,
           "task_options": task_options}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    out = json.loads(done.stdout.strip().splitlines()[-1])
    row = {"task": task, "rule": rule, "steps": steps, "status": out["status"],
           "built_mib": out["built_kib"] / 1024, "peak_mib": out["peak_kib"] / 1024}
    row["added_mib"] = row["peak_mib"] - row["built_mib"]
    print(f"{task} | {rule} | built {row['built_mib']:.0f} MiB | peak {row['peak_mib']:.0f} MiB", flush=True)
    return row


def run(quick: bool) -> dict:
    if quick:
        plan = [("teacher-student", "lora-alpha", 3, 32, {"width": 32, "depth": 2, "n_eval": 16})]
    else:
        plan = [(t, r, 10, s["batch_size"], s["task_options"]) for t, s in TASKS.items()
                for r in (RULES if t == "teacher-student" else TEXT_RULES)]
    return {"rank": 8, "rows": [measure(*p) for p in plan]}


def main() -> None:
    quick = quick_arg(__doc__)
    print(f"wrote {save('memory', run(quick), quick)}")


if __name__ == "__main__":
    main()
