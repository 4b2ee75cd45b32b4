"""Progress of `loralpha train` where no terminal shows its bar (a log, a pipe, a batch job): a plain line every
tenth of the steps, read from the run's metrics.jsonl as the loop writes it (one line-buffered row per step).
A rich bar on a non-terminal prints nothing until the run ends."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from ..studies.probe_log import duration

SHARE = 10  # a line every 1/SHARE of the steps


class LogProgress:
    """`with LogProgress(out, steps, say):` prints `train: step 40/200 (20%)  loss 0.41  accuracy 0.62  · 12 s,
    ~48 s left` through `say` each time the run in `out` passes another tenth of its steps."""

    def __init__(self, out: Path, steps: int, say, poll_s: float = 0.5):
        self.path, self.steps, self.say, self.poll_s = Path(out) / "metrics.jsonl", steps, say, poll_s
        self.next = 1  # the next tenth to say
        self.position = 0
        self.metrics: dict[str, float] = {}
        self.first: tuple[int, float] | None = None  # (step, time) when the first trained step was seen
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> LogProgress:
        self.began = time.time()
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()
        self._read()  # the rows written since the last look

    def _watch(self) -> None:
        while not self.stop.wait(self.poll_s):
            self._read()

    def _read(self) -> None:
        try:
            if self.path.stat().st_mtime < self.began - 1:  # an earlier run's rows, not yet replaced
                return
            if self.path.stat().st_size < self.position:  # a resumed run cut the rows after its checkpoint
                self.position = 0
            with self.path.open() as f:
                f.seek(self.position)
                text = f.read()
        except OSError:
            return
        complete = text[:text.rfind("\n") + 1]  # a row still being written waits for the next look
        self.position += len(complete)
        for line in complete.splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            self._row(row)

    def _row(self, row: dict[str, Any]) -> None:
        step = row.get("step", 0)
        self.metrics.update({k: v for k, v in row.items() if k not in ("step", "loss", "lr")})
        if step < 1 or "loss" not in row:
            return
        now = time.time()
        if self.first is None:
            self.first = (step, now)
        if step * SHARE < self.next * self.steps:
            return
        while self.next * self.steps <= step * SHARE:
            self.next += 1
        held = "".join(f"  {k} {v:.4g}" for k, v in list(self.metrics.items())[:2] if isinstance(v, (int, float)))
        first_step, first_time = self.first
        left = ""
        if step > first_step and step < self.steps:
            left = f", ~{duration((now - first_time) / (step - first_step) * (self.steps - step))} left"
        self.say(f"train: step {step}/{self.steps} ({100 * step // self.steps}%)  loss {row['loss']:.4g}{held}  · "
                 f"{duration(now - self.began)}{left}")
