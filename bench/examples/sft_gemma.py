"""README's LLM example, measured: `loralpha train --task sft-gemma --rule lora-alpha --rank 8 --lr 2e-5 --steps 30
--eval-every 10` (Gemma-3-270M on BBC headline → opening paragraph), its held-out loss and perplexity at steps
0, 10, 20 and 30, and its times: the one-off GGUF conversion, a model load, the run's wall time. Then one
training step's forward + backward with the loss from labelled positions only (`labelled_loss`, what the
task uses) against the full-logits loss (`model(**batch).loss`), alternating, 3 of each, same batch.

    python -m bench.examples.sft_gemma           # → bench/results/sft_gemma.json (needs pip install 'loralpha[llm]')
    python -m bench.examples.sft_gemma --quick   # the same path on a tiny random Llama (no Gemma needed)

The run directory is bench/work/sft-gemma (replaced on every run).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import quick_arg, save, work_dir
from loralpha import TrainConfig, runs, tasks, train
from loralpha.tasks import gemma
from loralpha.tasks.causal_lm import labelled_loss, load_causal_lm, tiny_causal_lm


def tiny_setup(folder: Path) -> dict:
    """A saved tiny Llama and a small prompt/response file: the smoke run's model and data."""
    model, tokenizer = tiny_causal_lm()
    model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    rows = [{"prompt": f"count to {i}", "response": " ".join(str(k) for k in range(i))} for i in range(2, 14)]
    (folder / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"task": "sft", "task_options": {"model": str(folder / "model"), "data": str(folder / "pairs.jsonl"),
                                            "n_eval": 4}}


def step_times(model, config: TrainConfig, repeats: int) -> dict[str, float]:
    """Median seconds of one forward + backward on one training batch: labelled positions only, and full logits."""
    batch = next(iter(tasks.build(config.task, seed=0, batch_size=config.batch_size, **config.task_options).batches))
    ways = {"labelled": lambda: labelled_loss(model, batch), "full": lambda: model(**batch).loss}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(repeats):
        for name, loss in ways.items():
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            loss().backward()
            times[name].append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    quick = quick_arg(__doc__)
    times: dict[str, float | None] = {"convert_s": None}
    with tempfile.TemporaryDirectory() as tmp:
        if quick:
            setup, steps, every = tiny_setup(Path(tmp)), 4, 2
            model_path = setup["task_options"]["model"]
        else:
            setup, steps, every = {"task": "sft-gemma", "task_options": {}}, 30, 10
            converted = (gemma.cache_dir() / gemma.MODEL_FOLDER / gemma.MARKER).is_file()
            t0 = time.perf_counter()
            model_path = str(gemma.model_dir())  # converts the packaged GGUF once
            if not converted:
                times["convert_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_causal_lm(model_path)
        times["load_s"] = time.perf_counter() - t0
        config = TrainConfig(**setup, rule="lora-alpha", rank=8, lr=2e-5, steps=steps, eval_every=every)
        out = work_dir("sft-gemma", quick)
        result = train(config, out=out, overwrite=True)
        step_s = step_times(result.model, config, repeats=1 if quick else 3)
    rows = [r for r in runs.read_metrics(out) if "eval_loss" in r]
    payload = {"command": "loralpha train --task sft-gemma --rule lora-alpha --rank 8 --lr 2e-5 --steps 30 "
                          "--eval-every 10",
               "config": runs.read_json(out / "config.json")["config"],
               "task_info": runs.read_json(out / "config.json")["task_info"],
               "status": result.status, "steps": result.steps, "wall_time_s": result.wall_time_s, **times,
               "evals": [{"step": r["step"], "eval_loss": r["eval_loss"], "perplexity": r["perplexity"]}
                         for r in rows], "step_s": step_s}
    print(f"wrote {save('sft_gemma', payload, quick)}")


if __name__ == "__main__":
    main()
