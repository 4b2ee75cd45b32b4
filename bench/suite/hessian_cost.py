"""Hessian top-eigenvalue cost (HVPs, seconds) and its error against a dense reference.

    python -m bench.suite.hessian_cost           # MLP width 32, depth 3, r = 4 (~1 min)
    python -m bench.suite.hessian_cost --quick   # width 8, depth 2, no Lanczos k = 5: a smoke run

A small teacher-student MLP in float64, adapted with `lora-alpha` (r = 4) and trained 20 steps so
that B ≠ 0; one fixed batch of 256. In both spaces of `loralpha.diagnostics.hessian` (adapter: A, B; full:
the weights of the adapted layers) the top eigenvalue from `top_eigenvalues` (Lanczos k = 1 and
k = 5, power iteration) is compared with the largest eigenvalue of the dense Hessian (one HVP per
basis vector, symmetrised, `torch.linalg.eigvalsh`). Times are medians of 3 repeats, on 1 torch thread.
"""

from __future__ import annotations

import statistics
import time

import torch

from bench.common import quick_arg, save
from loralpha import adapters, tasks
from loralpha.adapters import AdapterSpec
from loralpha.diagnostics.hessian import HVP, adapter_parameters, differentiable, full_parameters, top_eigenvalues


def dense_top(model, loss, space: str) -> tuple[float, float, int]:
    params = adapter_parameters(model) if space == "adapter" else full_parameters(model)
    frozen = [p for p in model.parameters() if all(p is not q for q in params)]
    flags = [p.requires_grad for p in frozen]
    for p in frozen:
        p.requires_grad_(False)
    try:
        with differentiable(params):
            start = time.perf_counter()
            hvp = HVP(loss, params)
            eye = torch.eye(hvp.size, dtype=torch.float64)
            dense = torch.stack([hvp(e) for e in eye])
            values = torch.linalg.eigvalsh((dense + dense.T) / 2)
            return float(values[-1]), time.perf_counter() - start, hvp.size
    finally:
        for p, flag in zip(frozen, flags):
            p.requires_grad_(flag)


def run(quick: bool) -> dict:
    torch.set_num_threads(1)  # tiny matrices: one thread avoids thread-pool stalls on a busy machine
    torch.manual_seed(0)
    width, depth = (8, 2) if quick else (32, 3)
    task = tasks.build("teacher-student", batch_size=256, width=width, depth=depth, n_eval=16)
    spec = AdapterSpec(rule="lora-alpha", rank=4, targets=task.targets)
    model = adapters.adapt(task.model, spec).double()
    opt = adapters.optimizer(model, spec, lr=5e-5)
    it = iter(task.batches)
    for _ in range(20):
        x, y = next(it)
        opt.zero_grad()
        task.loss(model, (x.double(), y.double())).backward()
        opt.step()
    x, y = next(it)
    batch = (x.double(), y.double())

    def loss():
        return task.loss(model, batch)

    rows = []
    repeats = 1 if quick else 3
    for space in ("adapter", "full"):
        reference, dense_s, size = dense_top(model, loss, space)
        rows.append({"space": space, "method": "dense eigvalsh", "size": size, "lambda": reference, "hvps": size,
                     "seconds": dense_s, "rel_error": 0.0})
        methods = (("lanczos", 1), ("power", 1)) if quick else (("lanczos", 1), ("lanczos", 5), ("power", 1))
        for method, k in methods:
            times, out = [], None
            for _ in range(repeats):
                start = time.perf_counter()
                out = top_eigenvalues(model, loss, space=space, k=k, method=method)
                times.append(time.perf_counter() - start)
            lam = out["eigenvalues"][0]
            rows.append({"space": space, "method": f"{method} k={k}" if method == "lanczos" else method, "size": size,
                         "lambda": lam, "hvps": out["hvp_calls"], "seconds": statistics.median(times),
                         "rel_error": abs(lam - reference) / abs(reference)})
        for r in rows[-1 - len(methods):]:
            print(f"{space} ({size}): {r['method']}: λ = {r['lambda']:.6g}, {r['hvps']} HVPs, {r['seconds']:.3f} s, "
                  f"rel. error {r['rel_error']:.1e}", flush=True)
    return {"width": width, "depth": depth, "rank": 4, "rule": "lora-alpha", "batch": 256, "dtype": "float64",
            "threads": 1, "rows": rows}


def main() -> None:
    quick = quick_arg(__doc__)
    print(f"wrote {save('hessian_cost', run(quick), quick)}")


if __name__ == "__main__":
    main()
