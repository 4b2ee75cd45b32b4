"""The results store of a study: one SQLite file (WAL mode), safe to share between processes.

    meta    key -> value: schema_version, and what the sweep recorded (study, metric, spec)
    trials  id, config (JSON of asdict(TrainConfig)), status, final_loss, eval (JSON), metric,
            run_dir, error, worker (host:pid), attempts, started_at, finished_at (UTC ISO), wall_time_s

A trial's status goes pending -> running -> done | diverged | failed. `claim` takes a
pending trial in a `BEGIN IMMEDIATE` transaction, so two processes never get the same
one; `reset_stale` hands trials whose worker process on this host is dead back to
pending. Every writer waits for a lock (busy timeout) instead of failing; a store still
locked after BUSY_TIMEOUT_S is a UsageError naming it. No NaN or inf is ever written: a
non-finite number is stored as NULL.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import runs
from ..checks import finite_float
from ..config import TrainConfig
from ..errors import UsageError
from .spec import Trial

SCHEMA_VERSION = 2  # 2 added load_time_s, train_time_s, eval_time_s (a v1 store is upgraded on opening)
STATUSES = ("pending", "running", "done", "diverged", "failed")
FINISHED = ("done", "diverged", "failed")
BUSY_TIMEOUT_S = 60.0
TIME_SPLIT = ("load_time_s", "train_time_s", "eval_time_s")  # a trial's wall time: building, training, evaluating

_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE trials (
    id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    final_loss REAL,
    eval TEXT,
    metric TEXT,
    run_dir TEXT,
    error TEXT,
    worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at TEXT,
    finished_at TEXT,
    wall_time_s REAL,
    load_time_s REAL,
    train_time_s REAL,
    eval_time_s REAL
);
CREATE INDEX trials_status ON trials (status);
"""


def worker_name(pid: int | None = None) -> str:
    """host:pid of a worker process (this one by default)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _is_locked(error: sqlite3.Error) -> bool:
    return "locked" in str(error) or "busy" in str(error)


def _locked(path: Path) -> UsageError:
    return UsageError(f"store {path} is locked by another process (waited {BUSY_TIMEOUT_S:g} s); let it finish, "
                      "or stop it if it is stuck, and rerun")


def _alive(worker: str | None) -> bool:
    """Is `worker` (host:pid) a live process? Unknown hosts count as alive: they are not ours to judge."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname():
        return bool(worker)
    try:
        pid_n = int(pid)
    except ValueError:
        return False
    if pid_n == os.getpid():  # not claimed by this process's current sweep: a past life with a reused pid
        return False
    try:
        os.kill(pid_n, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class Store:
    """The trials of one study in one SQLite file (created on first use)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            raise UsageError(f"store {self.path} is a directory; give a file such as {self.path / 'study.db'}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise UsageError(f"cannot open store {self.path}: {getattr(e, 'strerror', None) or e}") from None
        try:
            self.db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._opening()
        except sqlite3.DatabaseError as e:
            self.db.close()
            if _is_locked(e):
                raise _locked(self.path) from None
            raise UsageError(f"store {self.path} is not a usable loralpha study database ({e})") from None

    def _opening(self) -> None:
        """WAL mode and the schema. While another process is creating the same new file, SQLite can answer
        "locked" at once, without its busy wait (switching the journal mode needs the file to itself): so
        retry here, as long as the busy timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self.db.execute("PRAGMA journal_mode = WAL")
                self._init()
                return
            except sqlite3.OperationalError as e:
                if not _is_locked(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _tables(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _init(self) -> None:
        tables = self._tables()
        if not tables:
            with self._write():  # a new file: create the schema unless another process just did
                tables = self._tables()
                if not tables:
                    for statement in filter(str.strip, _SCHEMA.split(";")):  # not executescript: it would commit
                        self.db.execute(statement)
                    self.db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                                    (str(SCHEMA_VERSION),))
                    return
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() \
            if "meta" in tables else None
        if row is None or "trials" not in tables:
            raise UsageError(f"store {self.path} is an SQLite database but not a loralpha study (no schema version)")
        try:
            version = int(row[0])
        except ValueError:
            raise UsageError(f"store {self.path} has a bad schema version {row[0]!r}") from None
        if version > SCHEMA_VERSION:
            raise UsageError(f"store {self.path} has schema version {version}, newer than this loralpha's "
                             f"{SCHEMA_VERSION}; upgrade loralpha to read it")
        if version < 2:
            with self._write():  # v1 -> v2: the wall-time split (NULL for trials recorded before it)
                columns = {r[1] for r in self.db.execute("PRAGMA table_info(trials)")}
                for name in TIME_SPLIT:
                    if name not in columns:
                        self.db.execute(f"ALTER TABLE trials ADD COLUMN {name} REAL")
                self.db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        check = self.db.execute("PRAGMA quick_check").fetchone()
        if not check or check[0] != "ok":
            raise UsageError(f"store {self.path} is corrupted ({check[0] if check else 'no answer'})")

    class _Tx:
        def __init__(self, db: sqlite3.Connection, path: Path):
            self.db, self.path = db, path

        def __enter__(self):
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                if _is_locked(e):
                    raise _locked(self.path) from None
                raise
            return self.db

        def __exit__(self, kind, *_):
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")
            return False

    def _write(self) -> Store._Tx:
        """A write transaction that takes the lock up front (BEGIN IMMEDIATE)."""
        return Store._Tx(self.db, self.path)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    # --- meta

    def set_meta(self, key: str, value: Any) -> None:
        with self._write():
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                            (key, json.dumps(runs.clean(value), sort_keys=True)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            return default
        try:
            return json.loads(row[0])
        except json.JSONDecodeError:
            return row[0]

    # --- trials

    def add(self, trials: Iterable[Trial]) -> int:
        """Insert trials as pending; a trial already in the store keeps its row. Returns how many were new."""
        rows = [(t.id, json.dumps(runs.clean(asdict(t.config)), sort_keys=True), t.metric) for t in trials]
        with self._write():
            before = self.db.total_changes
            self.db.executemany("INSERT OR IGNORE INTO trials (id, config, metric) VALUES (?, ?, ?)", rows)
            return self.db.total_changes - before

    def reset_stale(self) -> list[str]:
        """Trials `running` under a worker process of this host that no longer exists go back to pending."""
        with self._write():
            stale = [tid for tid, worker in self.db.execute("SELECT id, worker FROM trials WHERE status = 'running'")
                     if not _alive(worker)]
            self.db.executemany("UPDATE trials SET status = 'pending' WHERE id = ? AND status = 'running'",
                                [(t,) for t in stale])
        return stale

    def claim(self, worker: str | None = None, ids: Iterable[str] | None = None) -> Trial | None:
        """Mark one pending trial (the oldest; among `ids` if given) running under `worker` and return it."""
        worker = worker or worker_name()
        wanted = set(ids) if ids is not None else None
        with self._write():
            cursor = self.db.execute("SELECT id, config, metric FROM trials WHERE status = 'pending' ORDER BY rowid")
            row = next((r for r in cursor if wanted is None or r[0] in wanted), None)
            cursor.close()
            if row is None:
                return None
            self.db.execute("UPDATE trials SET status = 'running', worker = ?, attempts = attempts + 1, "
                            "started_at = ?, finished_at = NULL, error = NULL WHERE id = ?", (worker, _now(), row[0]))
        return Trial(row[0], TrainConfig(**json.loads(row[1])), row[2] or "final_loss")

    def set_run_dir(self, tid: str, run_dir: str | Path) -> None:
        with self._write():
            self.db.execute("UPDATE trials SET run_dir = ? WHERE id = ?", (str(run_dir), tid))

    def finish(self, tid: str, summary: dict[str, Any]) -> None:
        """Record a trial's `RunResult.summary()`: status done or diverged (anything else: failed)."""
        status = summary.get("status")
        error = None
        if status not in ("done", "diverged"):
            status, error = "failed", f"run ended as {status!r}: {summary.get('reason')}"
        elif status == "diverged":
            error = summary.get("reason")
        # validation metrics by name, and the test split's (if any) as test:<name> beside them
        held = {**(summary.get("eval") or {}), **runs.test_metrics(summary)}
        eval_ = {str(k): finite_float(v) for k, v in held.items()}
        with self._write():
            self.db.execute(
                "UPDATE trials SET status = ?, final_loss = ?, eval = ?, run_dir = COALESCE(?, run_dir), error = ?, "
                "finished_at = ?, wall_time_s = ?, load_time_s = ?, train_time_s = ?, eval_time_s = ? WHERE id = ?",
                (status, finite_float(summary.get("final_loss")), json.dumps(eval_, sort_keys=True),
                 summary.get("run_dir"), error, _now(), finite_float(summary.get("wall_time_s")),
                 *(finite_float(summary.get(k)) for k in TIME_SPLIT), tid))

    def fail(self, tid: str, error: str) -> None:
        with self._write():
            self.db.execute("UPDATE trials SET status = 'failed', error = ?, finished_at = ? WHERE id = ?",
                            (str(error), _now(), tid))

    def release(self, tid: str) -> None:
        """Hand a running trial back (pending), e.g. when the sweep is interrupted."""
        with self._write():
            self.db.execute("UPDATE trials SET status = 'pending', worker = NULL WHERE id = ? AND status = 'running'",
                            (tid,))

    def records(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every trial (or those with `status`) in insertion order, as dicts with keys id, config (dict),
        status, final_loss, eval (dict), metric, run_dir, error, wall_time_s, attempts, worker,
        started_at, finished_at, load_time_s, train_time_s, eval_time_s (wall_time_s is train + eval)."""
        if status is not None and status not in STATUSES:
            raise UsageError(f"unknown status {status!r}; choose one of: {', '.join(STATUSES)}")
        query = ("SELECT id, config, status, final_loss, eval, metric, run_dir, error, wall_time_s, attempts, worker, "
                 "started_at, finished_at, load_time_s, train_time_s, eval_time_s FROM trials")
        rows = self.db.execute(query + (" WHERE status = ? ORDER BY rowid" if status else " ORDER BY rowid"),
                               (status,) if status else ())
        out = []
        for r in rows:
            out.append({"id": r[0], "config": json.loads(r[1]), "status": r[2], "final_loss": r[3],
                        "eval": json.loads(r[4]) if r[4] else {}, "metric": r[5], "run_dir": r[6], "error": r[7],
                        "wall_time_s": r[8], "attempts": r[9], "worker": r[10], "started_at": r[11],
                        "finished_at": r[12], **dict(zip(TIME_SPLIT, r[13:16]))})
        return out

    def statuses(self) -> dict[str, str]:
        """id -> status of every trial."""
        return dict(self.db.execute("SELECT id, status FROM trials"))

    def counts(self, ids: Iterable[str] | None = None) -> dict[str, int]:
        """status -> number of trials (of `ids` if given), every status present (0 when none)."""
        out = dict.fromkeys(STATUSES, 0)
        if ids is None:
            for status, n in self.db.execute("SELECT status, COUNT(*) FROM trials GROUP BY status"):
                out[status] = n
        else:
            statuses = self.statuses()
            for tid in ids:
                if tid in statuses:
                    out[statuses[tid]] += 1
        return out
