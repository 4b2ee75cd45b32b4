"""Spectra after training (`loralpha.studies.spectrum` with steps > 0) and the `loralpha spectrum` command.
(Spectra at initialisation and the solvers: tests/test_hessian.py.)"""

import json
import math
import re
from dataclasses import replace

import pytest
from PIL import Image
from test_cli import run

from loralpha import TrainConfig, tasks
from loralpha.errors import UsageError
from loralpha.studies import spectrum

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"width": 16, "depth": 2, "n_eval": 16}
BASE = TrainConfig(task="teacher-student", rule="lora-alpha", rank=2, steps=4, batch_size=16, task_options=TINY)


def spy_on_measured_models(monkeypatch):
    """The LoRA B matrices of every model whose spectrum is taken, as they are when it is taken."""
    seen, real = [], spectrum.top_eigenvalues

    def top_eigenvalues(model, loss, **kwargs):
        seen.append({n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n})
        return real(model, loss, **kwargs)

    monkeypatch.setattr(spectrum, "top_eigenvalues", top_eigenvalues)
    return seen


def test_after_training_b_has_moved_and_both_spectra_are_taken_there(monkeypatch):
    seen = spy_on_measured_models(monkeypatch)
    at_init = spectrum.measure(replace(BASE, steps=0), k=2)
    trained = spectrum.measure(BASE, k=2)
    assert len(seen) == 4  # adapter and full space, at init and after training
    assert all(float(b.abs().max()) == 0 for b in seen[0].values())  # at init B = 0
    assert len(seen[2]) == 2 and all(float(b.abs().max()) > 0 for b in seen[2].values())  # 4 steps later it is not
    assert trained["steps"] == 4 and at_init["steps"] == 0
    for space in ("adapter", "full"):
        values = trained[space]["eigenvalues"]
        assert len(values) == 2 and all(math.isfinite(v) for v in values) and values[0] >= values[1]
        assert not trained[space]["reused"] and trained[space]["hvp_calls"] > 0
        assert trained[space]["step_gap"]["gap"] > 0
    # W moved, so the full-weight curvature is the trained point's own, not the one at init
    assert trained["full"]["eigenvalues"][0] != pytest.approx(at_init["full"]["eigenvalues"][0], rel=1e-6)
    assert trained["suppression"] == pytest.approx(trained["adapter"]["eigenvalues"][0]
                                                   / trained["full"]["eigenvalues"][0])
    with pytest.raises(UsageError, match="only at initialisation"):
        spectrum.measure(BASE, k=2, full_top=at_init["full_top"])


def test_a_sweep_after_training_takes_every_full_spectrum_afresh(tmp_path):
    results = spectrum.sweep(BASE, ["lora-alpha", "2rank"], [1, 2], tmp_path, k=1)
    assert [(r["rule"], r["rank"]) for r in results] == [("lora-alpha", 1), ("lora-alpha", 2), ("2rank", 1),
                                                         ("2rank", 2)]
    assert [r["full"]["reused"] for r in results] == [False] * 4
    fulls = [r["full"]["eigenvalues"][0] for r in results]
    assert len({round(v, 9) for v in fulls}) == 4  # four different trained points, four different curvatures


def test_spectrum_command_writes_json_and_plot_and_prints_the_table(tmp_path, capsys, monkeypatch):
    build = tasks.build  # the command takes no task options: make its teacher-student the tiny one
    monkeypatch.setattr(tasks, "build", lambda name, **kw: build(name, **{**TINY, **kw}))
    out = tmp_path / "spec"
    code, text, err = run(["spectrum", "--task", "teacher-student", "--rules", "lora-alpha,2rank", "--ranks", "1,2",
                           "--steps", "2", "--k", "2", "--batch-size", "16", "--out", str(out)], capsys, monkeypatch)
    assert code == 0, err
    saved = json.loads((out / "spectrum.json").read_text())
    results = saved["results"]
    assert [(r["rule"], r["rank"], r["steps"]) for r in results] == [("lora-alpha", 1, 2), ("lora-alpha", 2, 2),
                                                                     ("2rank", 1, 2), ("2rank", 2, 2)]
    assert saved["config"]["steps"] == 2 and saved["config"]["batch_size"] == 16
    for r in results:
        assert len(r["adapter"]["eigenvalues"]) == len(r["full"]["eigenvalues"]) == 2
        assert not r["full"]["reused"]
        lam_a, lam_f = (r[s]["eigenvalues"][0] for s in ("adapter", "full"))
        # its table row: rule, rank, γ, η, λ_max adapter, λ_max full, their ratio
        cells = [r["rule"], str(r["rank"]), f"{r['gamma']:.3g}", f"{r['lr']:.2g}", f"{lam_a:.4g}", f"{lam_f:.4g}",
                 f"{r['suppression']:.3g}"]
        row = "│ " + " +│ +".join(map(re.escape, cells)) + " │"
        assert re.search(row, text), (row, text)
        assert f"{r['rule']} r={r['rank']}: λ_adapter {lam_a:.4g}, λ_full {lam_f:.4g}" in text
    assert f"wrote {out / 'spectrum.json'} and {out / 'spectrum.png'}" in " ".join(text.split())
    image = Image.open(out / "spectrum.png")
    image.load()
    assert image.width > 600 and image.height > 300
