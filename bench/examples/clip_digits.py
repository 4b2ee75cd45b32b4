"""clip-digits measured: the untouched model's held-out metrics, then `lora-alpha` (untuned: its default η, the
task's full-FT rate 2e-5, c = 256) against `2rank` (η 2e-4) and `full` (η 2e-5, the targeted modules) at one
budget, 3 seeds each, with each run's time. Every run is

    loralpha train --task clip-digits --rule RULE --rank 8 --steps STEPS --eval-every EVERY --seed SEED

(batch 64, cosine schedule, heads at 1e-3). The budget is meant to reach the plateau of the held-out loss;
each run records its held-out curve and the relative change of eval_loss over the last fifth of the steps,
so a reader can check that it flattened.

    python -m bench.examples.clip_digits           # → docs/results/clip-digits/clip_digits.json (runs resumable)
    python -m bench.examples.clip_digits --quick   # the same path on a tiny text tower and a small pairs file

Run directories: bench/work/{full,quick}/clip-digits/RULE-sSEED; a finished one is reused, so an
interrupted measurement resumes where it stopped (the result file is rewritten after every run).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench.common import ROOT, bench_parser, machine, mean_std, save, work_dir
from loralpha import TrainConfig, runs, train

RULES = ("lora-alpha", "2rank", "full")
METRICS = ("zero_shot_accuracy", "recall_at_1", "eval_loss")
OUT = ROOT / "docs" / "results" / "clip-digits" / "clip_digits.json"


def tiny_setup(folder: Path) -> dict:
    """A tiny BERT text tower and 40 synthetic 28×28 pairs (a bright square in one of four quadrants)."""
    import numpy as np
    import torch
    from transformers import BertConfig, BertModel

    from loralpha.tasks.causal_lm import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder / "text")
    tokenizer.save_pretrained(folder / "text")
    rng = np.random.default_rng(0)
    lines = ["image,caption"]
    for i in range(40):
        r, c = divmod(i % 4, 2)
        image = rng.integers(0, 40, (28, 28)).astype(np.uint8)
        image[2 + 14 * r:12 + 14 * r, 2 + 14 * c:12 + 14 * c] = 250
        np.save(folder / f"{i}.npy", image)
        lines.append(f"{i}.npy,a square in quadrant {i % 4}")
    (folder / "pairs.csv").write_text("\n".join(lines) + "\n")
    return {"data": str(folder / "pairs.csv"), "text_model": str(folder / "text"), "pretrain_epochs": 1,
            "embed_dim": 8}


def one_run(rule: str, seed: int, steps: int, every: int, batch: int | None, options: dict, out: Path,
            reuse: bool) -> dict:
    """A finished run of `rule` at `seed` (with `reuse`, one its directory already holds), as a result row."""
    summary_path = out / "summary.json"
    done = reuse and summary_path.is_file() and runs.read_json(summary_path).get("status") == "done"
    if done and runs.read_json(out / "config.json")["config"]["steps"] != steps:
        done = False  # another budget: run it again
    if not done:
        config = TrainConfig(task="clip-digits", rule=rule, rank=8, steps=steps, eval_every=every, seed=seed,
                             batch_size=batch, task_options=options)
        train(config, out=out, overwrite=True)
    summary = runs.read_json(summary_path)
    record = runs.read_json(out / "config.json")
    curve = [{k: r[k] for k in ("step", *METRICS) if k in r} for r in runs.read_metrics(out) if "eval_loss" in r]
    tail = [r for r in curve if r["step"] >= steps * 4 // 5]
    change = (tail[-1]["eval_loss"] - tail[0]["eval_loss"]) / tail[0]["eval_loss"] if len(tail) > 1 else None
    return {"rule": rule, "seed": seed, "status": summary["status"], "lr": record["lr"],
            "lora_alpha": record.get("lora_alpha"), "gamma": record.get("gamma"),
            "trainable_params": record["trainable_params"], "final": {k: summary["eval"].get(k) for k in METRICS},
            "base": {k: curve[0].get(k) for k in METRICS} if curve else None,
            "last_fifth_eval_loss_change": change, "curve": curve,
            "wall_time_s": summary["wall_time_s"], "train_time_s": summary.get("train_time_s"),
            "eval_time_s": summary.get("eval_time_s"), "load_time_s": summary.get("load_time_s"),
            "task_info": record.get("task_info")}


def summarise(rows: list[dict]) -> dict:
    """Per rule: mean, std and n over seeds of each final metric and of the wall time; the base metrics."""
    out: dict = {}
    for rule in RULES:
        mine = [r for r in rows if r["rule"] == rule and r["status"] == "done"]
        if not mine:
            continue
        out[rule] = {k: dict(zip(("mean", "std", "n"), mean_std(r["final"][k] for r in mine))) for k in METRICS}
        out[rule]["wall_time_s"] = dict(zip(("mean", "std", "n"), mean_std(r["wall_time_s"] for r in mine)))
        out[rule]["seeds"] = [r["seed"] for r in mine]
    base = [r["base"] for r in rows if r.get("base")]
    out["base"] = {k: dict(zip(("mean", "std", "n"), mean_std(b[k] for b in base))) for k in METRICS}
    return out


def main() -> None:
    p = bench_parser(__doc__)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--eval-every", type=int, default=15)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--rules", default=",".join(RULES))
    args = p.parse_args()
    quick = args.quick
    seeds = [0] if quick else [int(s) for s in args.seeds.split(",")]
    rules = [r for r in args.rules.split(",") if r]
    steps, every = (3, 3) if quick else (args.steps, args.eval_every)
    command = (f"loralpha train --task clip-digits --rule RULE --rank 8 --steps {steps} --eval-every {every} "
               "--seed SEED")
    with tempfile.TemporaryDirectory() as tmp:
        options, batch = (tiny_setup(Path(tmp)), 8) if quick else ({}, None)
        rows: list[dict] = []
        for seed in seeds:  # seed-major: an interrupted measurement has every rule at the seeds it reached
            for rule in rules:
                rows.append(one_run(rule, seed, steps, every, batch, options,
                                    work_dir("clip-digits", quick) / f"{rule}-s{seed}", reuse=not quick))
                payload = {"command": command, "rules": rules, "seeds": seeds, "steps": steps, "eval_every": every,
                           "complete": len(rows) == len(rules) * len(seeds), "summary": summarise(rows),
                           "runs": rows}
                if not quick:
                    OUT.parent.mkdir(parents=True, exist_ok=True)
                    OUT.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=float) + "\n")
    if quick:
        print(f"wrote {save('clip_digits', payload, quick)}")
    else:
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
