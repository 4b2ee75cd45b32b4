"""The teacher-student task: the teacher's perturbation Δ = W_teacher − W0 has the rank asked for (low rank by
default, full rank with teacher="full-rank") and the norm scale·‖W0‖. With one layer the teacher is linear,
y = W_teacher·x, so its weight is read back from a batch by least squares, independently of how it was built."""

import pytest
import torch
from test_cli import run

from loralpha import runs
from loralpha.tasks import teacher_student

WIDTH = 16


def perturbation(**options):
    task = teacher_student.build(width=WIDTH, depth=1, n_eval=16, batch_size=4 * WIDTH, **options)
    x, y = next(iter(task.batches))  # (64, 16) each; y = W_teacher x
    w_teacher = torch.linalg.lstsq(x.double(), y.double()).solution.T  # (d_out, d_in)
    w0 = task.model.fc1.weight.detach().double()
    return w_teacher - w0, w0, task


def numerical_rank(matrix, tol=1e-4):
    s = torch.linalg.svdvals(matrix)
    return int((s > tol * s[0]).sum())


def test_the_default_teacher_is_w0_plus_a_rank_8_perturbation():
    delta, w0, task = perturbation()
    assert task.info["teacher"] == "low-rank" and task.info["teacher_rank"] == 8
    assert numerical_rank(delta) == 8
    assert float(delta.norm() / w0.norm()) == pytest.approx(0.3, rel=1e-4)


@pytest.mark.parametrize("teacher_rank", [1, 3])
def test_teacher_rank_sets_the_rank_of_the_perturbation(teacher_rank):
    delta, _, _ = perturbation(teacher_rank=teacher_rank)
    assert numerical_rank(delta) == teacher_rank


def test_the_full_rank_teacher_perturbs_every_direction():
    delta, w0, task = perturbation(teacher="full-rank", scale=0.5)
    assert task.info["teacher"] == "full-rank"
    s = torch.linalg.svdvals(delta)
    assert numerical_rank(delta) == WIDTH and float(s[-1] / s[0]) > 1e-3  # no direction left out
    assert float(delta.norm() / w0.norm()) == pytest.approx(0.5, rel=1e-4)
    low, _, _ = perturbation(scale=0.5)
    assert not torch.allclose(delta, low)  # another teacher, not the low-rank one


def test_train_teacher_flag_reaches_the_task(tmp_path, capsys, monkeypatch):
    code, _, err = run(["train", "--steps", "2", "--rank", "2", "--batch-size", "16", "--teacher", "full-rank",
                        "--quiet", "--task-options", "width=16,depth=2,n_eval=16", "--out", str(tmp_path / "run")],
                       capsys, monkeypatch)
    assert code == 0, err
    assert runs.read_json(tmp_path / "run" / "config.json")["task_info"]["teacher"] == "full-rank"
