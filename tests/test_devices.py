"""A device for every command: `device` (auto | cpu | cuda | cuda:N | mps) and `dtype` (float32 | bfloat16 of the
frozen base weights) of a run. A device this machine lacks is one line naming what it has, from Python and from
every command; bfloat16 stores only frozen weights in bfloat16 (adapters, heads, trained weights and the optimizer
state stay float32) and still trains; the run record states what the run computed on. CPU only: CUDA is mocked
only to check loralpha's own resolution of device names."""

import collections
import math
import signal
from dataclasses import asdict

import pytest
import torch
from safetensors.torch import load_file
from test_bad_input import one_line_usage_error
from test_cli import run
from test_interrupt import fault_at
from transformers import BatchEncoding

from loralpha import AdapterSpec, FitOptions, TrainConfig, checkpoints, devices, fit, runs, train
from loralpha.errors import UsageError
from loralpha.studies import spectrum
from loralpha.sweep import Trial, run_sweep, trial_id
from loralpha.sweep.engine import run_trial
from loralpha.tasks import sft

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = {"width": 32, "depth": 2, "n_eval": 64}
TINY_ARGS = ["--steps", "3", "--batch-size", "16", "--quiet", "--task-options", "width=16,depth=2,n_eval=16"]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")


def tiny(**kw):
    return TrainConfig(**{"rank": 2, "steps": 6, "batch_size": 32, "eval_every": 3, "task_options": TINY, **kw})


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch):
    """torch as it looks on a machine with one CUDA device (nothing is run on it)."""
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)


@pytest.fixture
def terminal_sigint():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


# ------------------------------------------------------------------ resolving a device name


def test_auto_is_the_cpu_on_a_machine_without_cuda_or_mps(no_accelerator):
    assert devices.resolve("auto") == torch.device("cpu")
    assert devices.resolve("cpu") == torch.device("cpu")
    assert devices.available() == ["cpu"]


@pytest.mark.skipif(torch.cuda.is_available() or devices._mps_available(), reason="this machine has an accelerator")
def test_auto_here_is_the_cpu_and_a_default_run_trains_there(tmp_path):
    assert devices.resolve("auto") == torch.device("cpu")
    train(tiny(steps=2), out=tmp_path / "run")
    assert runs.read_json(tmp_path / "run" / "config.json")["runtime"]["device"] == "cpu"


@NO_CUDA
def test_cuda_on_a_machine_without_it_is_one_line_naming_what_there_is():
    for name in ("cuda", "cuda:0"):
        with pytest.raises(UsageError) as e:
            devices.resolve(name)
        why = "has no CUDA" if torch.version.cuda is None else "sees no CUDA device"
        assert str(e.value) == (f"device {name!r} is not available here (torch {torch.__version__} {why}); "
                                f"available: {', '.join(devices.available())}")
        assert "cpu" in devices.available()


def test_a_gpu_index_past_the_last_one_is_refused_with_the_devices_there_are(one_gpu):
    assert devices.resolve("auto") == torch.device("cuda", 0)
    assert devices.resolve("cuda") == devices.resolve("cuda:0") == torch.device("cuda", 0)
    assert devices.available() == ["cuda:0", "cpu"]
    with pytest.raises(UsageError) as e:
        devices.resolve("cuda:1")
    assert str(e.value) == "device 'cuda:1' is not available here (1 CUDA device: cuda:0); available: cuda:0, cpu"


def test_cuda_built_torch_without_a_visible_gpu_says_so(one_gpu, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(UsageError, match=r"\(torch .* sees no CUDA device\); available: cpu$"):
        devices.resolve("cuda")
    assert devices.resolve("auto") == torch.device("cpu")


@pytest.mark.parametrize("kw, message", [
    ({"device": "gpu"}, "unknown device 'gpu'; choose one of: auto, cpu, cuda, cuda:N, mps"),
    ({"device": "cuda:x"}, "unknown device 'cuda:x'"),
    ({"device": "CUDA"}, "unknown device 'CUDA'"),
    ({"dtype": "float16"}, "unknown dtype 'float16' for the frozen base weights; choose float32 or bfloat16"),
    ({"dtype": "bf16"}, "unknown dtype 'bf16'"),
])
def test_bad_device_or_dtype_names_are_refused_when_the_config_is_checked(kw, message):
    with pytest.raises(UsageError) as e:
        TrainConfig(**kw).check()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_device_and_dtype_keep_stored_trial_ids_and_count_once_set():
    assert trial_id(TrainConfig(device="auto", dtype="float32")) == trial_id(TrainConfig()) == "99dab963c411fe0e"
    ids = {trial_id(TrainConfig(device="cuda")), trial_id(TrainConfig(dtype="bfloat16")), trial_id(TrainConfig())}
    assert len(ids) == 3


# ------------------------------------------------------------------ the commands


@NO_CUDA
@pytest.mark.parametrize("command", [
    ["train", *TINY_ARGS],
    ["compare", "--task", "teacher-student", "--rules", "lora-alpha,2rank", "--steps", "2", "--quiet"],
    ["spectrum", "--task", "teacher-student", "--rank", "2"],
    ["calibrate-c", "--task", "teacher-student", "--budget", "40", "--coefs", "1,2"],
    ["calibrate", "--task", "teacher-student", "--steps", "30", "--xs", "1e-3,2e-3,4e-3", "--ys", "1e-3,2e-3,4e-3"],
    ["demo", "--quick", "--quiet"],
])
def test_every_command_refuses_an_unavailable_cuda_in_one_line_before_it_writes(tmp_path, capsys, monkeypatch,
                                                                                command):
    out = tmp_path / "out"
    code, _, err = run([*command, "--device", "cuda", "--out", str(out)], capsys, monkeypatch)
    one_line_usage_error(code, err, f"device 'cuda' is not available here (torch {torch.__version__}")
    assert "available: cpu" in err
    assert not out.exists()


def test_a_bad_dtype_on_the_command_line_is_one_line(tmp_path, capsys, monkeypatch):
    code, _, err = run(["train", *TINY_ARGS, "--dtype", "float16", "--out", str(tmp_path / "r")], capsys, monkeypatch)
    one_line_usage_error(code, err, "unknown dtype 'float16' for the frozen base weights; choose float32 or bfloat16")


def test_train_records_and_shows_the_device_and_the_dtypes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "bf16"
    code, text, err = run(["train", *TINY_ARGS, "--dtype", "bfloat16", "--out", str(out)], capsys, monkeypatch)
    assert code == 0, err
    record = runs.read_json(out / "config.json")
    assert (record["config"]["device"], record["config"]["dtype"]) == ("auto", "bfloat16")  # what was asked
    runtime = record["runtime"]  # what the run computed on, read off the model
    assert runtime == {"device": "cpu", "device_name": devices.device_name(torch.device("cpu")),
                       "base_dtype": "bfloat16", "trainable_dtype": "float32", "autocast": "bfloat16",
                       "threads": torch.get_num_threads()}
    assert runtime["device_name"]
    row = next(line for line in text.splitlines() if "device" in line)
    assert "cpu (" in row and "base bfloat16, trained float32, bfloat16 autocast" in " ".join(text.split())

    out = tmp_path / "fp32"
    code, text, _ = run(["train", *TINY_ARGS, "--out", str(out)], capsys, monkeypatch)
    assert code == 0
    runtime = runs.read_json(out / "config.json")["runtime"]
    assert (runtime["base_dtype"], runtime["trainable_dtype"], runtime["autocast"]) == ("float32", "float32", None)


def test_compare_and_calibrate_take_the_dtype_into_every_run(tmp_path, capsys, monkeypatch):
    out = tmp_path / "cmp"
    code, text, err = run(["compare", "--task", "teacher-student", "--rules", "lora-alpha,full", "--steps", "2",
                           "--batch-size", "16", "--dtype", "bfloat16", "--quiet", "--out", str(out)], capsys,
                          monkeypatch)
    assert code == 0, err
    for rule in ("lora-alpha", "full"):
        assert runs.read_json(out / rule / "config.json")["runtime"]["autocast"] == "bfloat16"
    assert "device: cpu (" in text

    seen = []
    original = train

    def spy(config, **kw):
        seen.append((config.device, config.dtype))
        return original(config, **kw)

    monkeypatch.setattr("loralpha.studies.calibrate_c.train", spy)
    monkeypatch.setattr("loralpha.studies.calibrate.train", spy)
    code, _, err = run(["calibrate", "--task", "teacher-student", "--rank", "2", "--steps", "30", "--budget", "300",
                        "--xs", "1e-3,2e-3,4e-3", "--ys", "1e-3,2e-3,4e-3", "--batch-size", "16", "--task-options",
                        "width=16,depth=2", "--device", "cpu", "--dtype", "bfloat16", "--out", str(tmp_path / "p")],
                       capsys, monkeypatch)
    assert code == 0, err
    code, _, err = run(["calibrate-c", "--task", "teacher-student", "--rank", "2", "--budget", "40", "--coefs", "1,2",
                        "--batch-size", "16", "--task-options", "width=16,depth=2", "--device", "cpu", "--dtype",
                        "bfloat16", "--out", str(tmp_path / "cal")], capsys, monkeypatch)
    assert code == 0, err
    assert seen and set(seen) == {("cpu", "bfloat16")}


def test_a_local_sweep_refuses_a_device_this_machine_lacks_before_any_trial(tmp_path, one_gpu):
    trials = [Trial(trial_id(c), c) for c in (tiny(steps=2), tiny(steps=2, device="cuda:3"))]
    with pytest.raises(UsageError, match=r"device 'cuda:3' is not available here \(1 CUDA device: cuda:0\)"):
        run_sweep(trials, tmp_path / "study.db", workers=1, progress=False)
    assert not (tmp_path / "runs").exists()


@NO_CUDA
def test_a_trial_given_gpus_under_device_auto_fails_rather_than_train_on_the_cpu(tmp_path):
    config = asdict(tiny(steps=2))
    with pytest.raises(UsageError, match=r"given 0\.5 GPU\(s\) but torch .* sees no CUDA device"):
        run_trial(config, str(tmp_path / "run"), gpus=0.5)
    assert run_trial({**config, "device": "cpu"}, str(tmp_path / "cpu"), gpus=0.5)["status"] == "done"


def test_the_spectrum_is_measured_in_float32_only():
    with pytest.raises(UsageError, match="the spectrum is measured in float32; dtype='bfloat16' is not taken"):
        spectrum.measure(TrainConfig(steps=0, dtype="bfloat16", task_options=TINY))
    result = spectrum.measure(TrainConfig(steps=0, rank=2, device="cpu", task_options={**TINY, "width": 8}), k=1)
    assert result["device"] == "cpu" and math.isfinite(result["adapter"]["eigenvalues"][0])


# ------------------------------------------------------------------ batches follow the model


def test_batches_are_moved_recursively_and_keep_their_shape():
    Pair = collections.namedtuple("Pair", "x y")
    t = torch.ones(2)
    batch = {"a": t, "b": [t, (t, 3, "s")], "enc": BatchEncoding({"input_ids": t}), "pair": Pair(t, None), "n": 1}
    meta = torch.device("meta")  # a device every torch has: the tensors leave the CPU without any memory
    moved = devices.to_device(batch, meta)
    assert moved["a"].device == meta and moved["b"][0].device == meta and moved["b"][1][0].device == meta
    assert moved["b"][1][1:] == (3, "s") and isinstance(moved["b"], list) and isinstance(moved["b"][1], tuple)
    assert isinstance(moved["enc"], BatchEncoding) and moved["enc"]["input_ids"].device == meta
    assert isinstance(moved["pair"], Pair) and moved["pair"].x.device == meta and moved["pair"].y is None
    assert moved["n"] == 1 and batch["a"].device.type == "cpu"  # the original is left as it was
    same = devices.to_device(batch, torch.device("cpu"))
    assert same["a"] is t and same["b"][1][0] is t  # already there: no copy


def test_fit_hands_the_loss_every_batch_on_the_model_device(toy, monkeypatch):
    moved, given, depth = [], [], [0]
    real = devices.to_device

    def to_device(batch, device):  # the real one recurses through this name: record the outermost call only
        depth[0] += 1
        out = real(batch, device)
        depth[0] -= 1
        if depth[0] == 0:
            moved.append((device, out))
        return out

    monkeypatch.setattr(devices, "to_device", to_device)
    batches = [{"x": [torch.randn(4, 12)], "y": (torch.randint(0, 3, (4,)),)} for _ in range(3)]

    def loss(model, batch):
        given.append(batch)
        return torch.nn.functional.cross_entropy(model(batch["x"][0]), batch["y"][0])

    spec = AdapterSpec(rule="lora-alpha", rank=2, targets=["q", "v"], heads=["head"])
    result = fit(toy, batches, loss, spec, FitOptions(lr=1e-3, steps=5, device="cpu"))
    assert result.status == "done" and len(given) == 5
    assert all(g is m for g, (_, m) in zip(given, moved)) and {d for d, _ in moved} == {torch.device("cpu")}
    assert devices.device_of(result.model) == torch.device("cpu")


# ------------------------------------------------------------------ bfloat16 base, float32 training


def dtypes_by_kind(model):
    kinds = {}
    for name, p in model.named_parameters():
        kind = ("lora" if "lora_" in name else "head" if "modules_to_save" in name else
                "head (frozen original)" if "original_module" in name else "base")
        kinds.setdefault(kind, set()).add((p.dtype, p.requires_grad))
    return kinds


def test_bfloat16_stores_only_frozen_weights_so_and_keeps_training_in_float32(toy, monkeypatch, tmp_path):
    states = []
    save = checkpoints.save

    def spy(path, step, named, opt, *args, **kw):
        states.append({k: v.dtype for s in opt.state.values() for k, v in s.items() if k != "step"})
        return save(path, step, named, opt, *args, **kw)

    monkeypatch.setattr(checkpoints, "save", spy)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 12, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(4)]
    spec = AdapterSpec(rule="lora-alpha", rank=2, targets=["q", "v"], heads=["head"])
    result = fit(toy, batches, lambda m, b: torch.nn.functional.cross_entropy(m(b[0]), b[1]), spec,
                 FitOptions(lr=1e-4, steps=4, dtype="bfloat16", track_every=2), out=tmp_path / "run",
                 checkpoint_every=2)
    assert result.status == "done"
    assert [r["step"] for r in result.signal_drift] == [1, 2, 4]  # the tracker works on bfloat16 base weights
    assert all(math.isfinite(r["mean"]["update_norm"]) and r["mean"]["grad_norm"] > 0 for r in result.signal_drift)
    assert dtypes_by_kind(result.model) == {"lora": {(torch.float32, True)}, "head": {(torch.float32, True)},
                                            "head (frozen original)": {(torch.bfloat16, False)},
                                            "base": {(torch.bfloat16, False)}}
    assert states and set(states[0].values()) == {torch.float32}  # Adam's moments of float32 parameters
    saved = load_file(str(tmp_path / "run" / "adapter" / "adapter_model.safetensors"))
    assert {t.dtype for t in saved.values()} == {torch.float32}


@pytest.mark.parametrize("rule, frozen", [("full", "bfloat16"), ("full-model", None)])
def test_a_full_weights_rule_under_bfloat16_trains_its_weights_in_float32(tmp_path, rule, frozen):
    out = tmp_path / rule
    result = train(tiny(rule=rule, lr=1e-4, targets=["fc1"], dtype="bfloat16"), out=out)
    assert result.status == "done" and math.isfinite(result.final_loss)
    weights = dict(result.model.named_parameters())
    assert weights["fc1.weight"].dtype == torch.float32 and weights["fc1.weight"].requires_grad
    assert weights["fc2.weight"].dtype == (torch.bfloat16 if frozen else torch.float32)
    assert weights["fc2.weight"].requires_grad == (frozen is None)
    runtime = runs.read_json(out / "config.json")["runtime"]
    assert (runtime["base_dtype"], runtime["trainable_dtype"]) == (frozen, "float32")
    assert {t.dtype for t in load_file(str(out / "adapter" / "full_weights.safetensors")).values()} == {torch.float32}


def test_a_short_bfloat16_run_of_the_tiny_llama_learns(tmp_path):
    losses = {}
    for dtype in ("float32", "bfloat16"):
        model, tok = sft.tiny_causal_lm()
        records = [{"prompt": f"What is {i} plus {i}?", "response": f" {2 * i}."} for i in range(16)]
        examples = sft.tokenize(records, tok, max_length=32)
        batches = [sft.pad(examples[k:k + 8], tok.pad_token_id) for k in (0, 8)]
        spec = AdapterSpec(rule="lora-alpha", rank=4, targets=["q_proj", "v_proj"])
        result = fit(model, batches, sft.labelled_loss, spec,
                     FitOptions(lr=1e-3, steps=30, schedule="constant", dtype=dtype), out=tmp_path / dtype)
        assert result.status == "done"
        assert {p.dtype for p in result.model.parameters() if not p.requires_grad} == {getattr(torch, dtype)}
        losses[dtype] = [r["loss"] for r in runs.read_metrics(tmp_path / dtype) if "loss" in r]
    bf16 = losses["bfloat16"]
    assert len(bf16) == 30 and all(math.isfinite(v) for v in bf16)
    assert sum(bf16[-2:]) < 0.9 * sum(bf16[:2])  # it learns
    assert bf16[0] == pytest.approx(losses["float32"][0], rel=0.02)  # the same model, rounded
    assert bf16 != losses["float32"]  # computed in bfloat16 indeed


def test_a_bfloat16_run_resumed_from_its_checkpoint_matches_an_uninterrupted_one(tmp_path, monkeypatch,
                                                                                 terminal_sigint):
    config = tiny(steps=8, eval_every=4, dtype="bfloat16")
    assert train(config, out=tmp_path / "whole").status == "done"
    fault_at(monkeypatch, 5, lambda: signal.raise_signal(signal.SIGINT))
    assert train(config, out=tmp_path / "cut", checkpoint_every=3).status == "interrupted"
    monkeypatch.undo()
    assert train(config, out=tmp_path / "cut", checkpoint_every=3, resume=True).resumed_from == 5
    for name in ("metrics.jsonl", "adapter/adapter_model.safetensors"):  # the same numbers, bit for bit
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "cut" / name).read_bytes()
    whole, cut = (runs.read_json(tmp_path / d / "summary.json") for d in ("whole", "cut"))
    assert (whole["final_loss"], whole["eval"]) == (cut["final_loss"], cut["eval"])
