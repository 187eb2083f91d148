"""The results store: one SQLite file, a `runs` table and a tidy `cells` table (one row per measured cell).

Why SQLite: one file, transactions, and several writers at once without a server. The file runs in WAL mode with
a busy timeout, so two sweeps writing to it at the same time queue for the write lock instead of failing. Every
cell is written in its own transaction (BEGIN IMMEDIATE ... COMMIT): a sweep killed at any instant, even with
kill -9, leaves either the whole row or nothing. (run_id, cell_key) is the primary key and inserts ignore a row
already there, so a cell is stored exactly once even when two processes race on the same run.

A file that is not a SQLite database, fails `PRAGMA quick_check`, or is some other program's database is reported
with its path and left exactly as it is: this module never deletes, truncates or re-creates a store.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from models.common import os_error_line
from models.errors import ToolkitError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 120_000

RUN_COLUMNS = {
    "run_id": "TEXT PRIMARY KEY", "created": "TEXT NOT NULL", "args_hash": "TEXT NOT NULL",
    "args": "TEXT NOT NULL",  # the sweep's canonical arguments (JSON): what makes two runs "the same"
    "argv": "TEXT", "seed": "INTEGER NOT NULL", "device": "TEXT NOT NULL",
    "environment": "TEXT NOT NULL",  # JSON: CPU model, cores, OS, Python, runtime versions, ...
    "git_commit": "TEXT", "cells_total": "INTEGER NOT NULL", "finished": "TEXT",
}

CELL_COLUMNS = {
    "run_id": "TEXT NOT NULL", "cell_key": "TEXT NOT NULL", "seq": "INTEGER",
    "model": "TEXT NOT NULL", "overrides": "TEXT NOT NULL", "family": "TEXT", "format": "TEXT NOT NULL",
    "converter": "TEXT NOT NULL", "precision": "TEXT NOT NULL", "device": "TEXT NOT NULL",
    "threads": "INTEGER NOT NULL", "height": "INTEGER NOT NULL", "width": "INTEGER NOT NULL",
    "mode": "TEXT",  # the runtime's execution mode when not its default (onnxruntime "parallel"); NULL = default
    "params": "INTEGER", "madds": "INTEGER", "iterations": "INTEGER", "warmup": "INTEGER",
    "mean_ms": "REAL", "median_ms": "REAL", "p10_ms": "REAL", "p90_ms": "REAL", "std_ms": "REAL",
    "min_ms": "REAL", "max_ms": "REAL", "cv": "REAL", "ci95_low_ms": "REAL", "ci95_high_ms": "REAL",
    "unstable": "INTEGER", "load_ms": "REAL", "first_ms": "REAL", "peak_rss_mb": "REAL", "overhead_us": "REAL",
    "loadavg": "REAL", "cpus": "TEXT", "runtime_versions": "TEXT",
    "cpu_median_ms": "REAL",  # median process CPU time per iteration (with 1 thread: the uncontended cost)
    "attempts": "INTEGER", "attempt_cvs": "TEXT",  # runs before rounds: timed attempts (retries), their CVs
    "units": "TEXT",  # Core ML compute units (Mac, iPhone); NULL elsewhere
    "device_state": "TEXT",  # JSON, phones: temperatures before and after, cool-down waits, the core mask used
    "runtime_median_ms": "REAL",  # median of the runtime's own per-iteration timer, where it has one (Core ML)
    "session": "TEXT",  # the group timing this cell was part of: cells of one session have paired rounds
    "n_rounds": "INTEGER", "per_round": "INTEGER", "switch_warmup": "INTEGER",
    "round_cv": "REAL",  # spread of the per-round medians (bench/stats.py)
    "rounds": "TEXT",  # JSON: the round of each sample in samples_ms (NULL: one burst)
    "artifact": "TEXT", "artifact_bytes": "INTEGER", "export_seconds": "REAL",
    "parity_verdict": "TEXT", "parity_max_rel": "REAL", "parity_cosine": "REAL", "parity_top1": "REAL",
    "status": "TEXT NOT NULL",  # ok | failed | not run: <reason>
    "stage": "TEXT",  # where a failed cell failed: export, parity, load, run, timeout, crash
    "error": "TEXT", "samples_ms": "TEXT", "cpu_samples_ms": "TEXT", "finished": "TEXT NOT NULL",
    # 0: the cell has no per-iteration samples, only the aggregates a program printed (`bench import`, e.g.
    # benchmark_model); NULL or 1: samples_ms holds them (every measured cell)
    "raw_samples": "INTEGER",
    "source": "TEXT",  # JSON, imported cells: tool, variant, file, sha256 and the aggregates as the tool printed them
    "quant": "TEXT",  # JSON, int8 cells: per op kind int8 / float, conversions, parity figures (bench/sweep/rows.py)
    "optimized": "INTEGER",  # 1: the `--optimize` artifact (export/optimize.py); NULL: the plain one
    "graph": "TEXT",  # JSON: the artifact's node counts, delegated ops, bytes (export/optimize.py graph_counts)
    "export_node": "TEXT", "timing_node": "TEXT",  # `--executor ray`: the Ray node ids; NULL: run on this machine
}


# One row per pass of a group (bench/sweep/timing.py): the members' measurements of that pass, so a sweep killed between
# passes resumes with the passes not stored yet. The cells table gets the merged result when a group is finished.
PASSES_DDL = ("CREATE TABLE IF NOT EXISTS passes (run_id TEXT NOT NULL, group_id TEXT NOT NULL, pass INTEGER NOT NULL, "
              "payload TEXT NOT NULL, PRIMARY KEY (run_id, group_id, pass))")


# One row per imported file (`bench import`): its sha256 is the key, so the same file imported twice adds nothing.
IMPORTS_DDL = ("CREATE TABLE IF NOT EXISTS imports (sha256 TEXT PRIMARY KEY, run_id TEXT NOT NULL, cell_key TEXT NOT "
               "NULL, file TEXT NOT NULL, tool TEXT NOT NULL, imported TEXT NOT NULL)")


def _ddl() -> list[str]:
    runs = ", ".join(f"{k} {v}" for k, v in RUN_COLUMNS.items())
    cells = ", ".join(f"{k} {v}" for k, v in CELL_COLUMNS.items())
    return [f"CREATE TABLE IF NOT EXISTS runs ({runs})",
            f"CREATE TABLE IF NOT EXISTS cells ({cells}, PRIMARY KEY (run_id, cell_key))",
            "CREATE INDEX IF NOT EXISTS cells_status ON cells (run_id, status)", PASSES_DDL, IMPORTS_DDL]


APPLICATION_ID = 0x4D44544B  # "MDTK": PRAGMA application_id of every store this toolkit creates
SQLITE_FULL = 13
SQLITE_IOERR = 10
# Columns a store of ours has had since the first version: how a store written before application ids were
# stamped is still recognised (and another program's tables that happen to be called runs and cells are not).
LEGACY_SIGNATURE = {"runs": {"run_id", "args_hash", "args", "seed", "environment", "cells_total"},
                    "cells": {"run_id", "cell_key", "model", "format", "converter", "samples_ms", "status"}}


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL or "disk is full" in str(exc)


class Store:
    """An open results store. Use `Store.open(path)` (creates the file) or `Store.open(path, create=False)`;
    `readonly=True` reads a store without writing a byte (a read-only file or folder is fine)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, readonly: bool = False):
        self.path = path
        self.conn = conn
        self.readonly = readonly

    # ------------------------------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path, *, create: bool = True, readonly: bool = False) -> Store:
        path = Path(path)
        if not path.exists():
            if not create or readonly:
                raise ToolkitError(f"no results store at {path} (run `python -m bench run ...` first, or --store)")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ToolkitError(os_error_line(exc, path.parent, "create the results store folder")) from None
        elif path.is_dir():
            raise ToolkitError(f"results store {path} is a directory, not a SQLite file")
        if readonly:
            conn = cls._connect_readonly(path)
        else:
            if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
                raise ToolkitError(f"results store {path} is read-only: reading it works (`bench list`, `report`, "
                                   "`compare`), measuring into it does not; pass another --store")
            try:
                conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            except sqlite3.Error as exc:
                raise ToolkitError(f"cannot open results store {path}: {exc}") from None
        store = cls(path, conn, readonly)
        try:
            store._check_and_init()
        except ToolkitError:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            if _is_full(exc) or (getattr(exc, "sqlite_errorcode", 0) & 0xFF == SQLITE_IOERR
                                 and shutil.disk_usage(path.parent).free < 1 << 20):
                raise ToolkitError(f"disk full at {path} (opening the results store)") from None
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF == SQLITE_IOERR:
                raise ToolkitError(f"cannot open results store {path}: {exc}; left untouched") from None
            raise ToolkitError(f"results store {path} is corrupt or not a SQLite database ({exc}); left untouched: "
                               "move it away or pass another --store") from None
        return store

    @staticmethod
    def _connect_readonly(path: Path) -> sqlite3.Connection:
        """mode=ro first; a WAL store in a folder we cannot write (no -shm to create) opens as immutable."""
        uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
        last: Exception | None = None
        for extra in ("", "&immutable=1"):
            try:
                conn = sqlite3.connect(uri + extra, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.DatabaseError as exc:
                last = exc
                if "not a database" in str(exc) or "malformed" in str(exc):
                    break
        raise ToolkitError(f"results store {path} is corrupt or cannot be read ({last}); left untouched") from None

    def _check_and_init(self) -> None:
        c = self.conn
        c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        check = c.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = c.execute("PRAGMA user_version").fetchone()[0]
        app_id = c.execute("PRAGMA application_id").fetchone()[0]
        if not tables and version == 0 and app_id == 0:  # an empty file: make it ours
            if self.readonly:
                raise ToolkitError(f"results store {self.path} is empty (no runs)")
            self._create()
            return
        ours = app_id == APPLICATION_ID or (app_id == 0 and version == 1 and self._legacy_signature(tables))
        if not ours:
            raise ToolkitError(f"{self.path} is not a results store of this toolkit (application_id {app_id}, "
                               f"user_version {version}, tables {', '.join(sorted(tables)) or 'none'}); left "
                               "untouched: pass another --store")
        if version != SCHEMA_VERSION:
            raise ToolkitError(f"results store {self.path} has schema version {version}; this toolkit reads "
                               f"version {SCHEMA_VERSION}")
        if self.readonly:
            return
        if app_id == 0:
            c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        self._add_new_columns()

    def _legacy_signature(self, tables: set[str]) -> bool:
        for table, needed in LEGACY_SIGNATURE.items():
            if table not in tables:
                return False
            have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
            if not needed <= have:
                return False
        return True

    def _create(self) -> None:
        c = self.conn
        if c.execute("PRAGMA journal_mode = WAL").fetchone()[0].lower() != "wal":
            raise sqlite3.DatabaseError("cannot switch to WAL mode")
        with self.transaction():
            if c.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:  # another process may have won
                for stmt in _ddl():
                    c.execute(stmt)
                c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _add_new_columns(self) -> None:
        """A store written by an older version of this module gets the columns (as NULLs) and tables added since."""
        for table, ddl in (("passes", PASSES_DDL), ("imports", IMPORTS_DDL)):
            if not self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                     (table,)).fetchone():
                with self.transaction() as c:
                    c.execute(ddl)
        for table, columns in (("runs", RUN_COLUMNS), ("cells", CELL_COLUMNS)):
            have = {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}
            missing = [c for c in columns if c not in have]
            if missing:
                with self.transaction() as c:
                    have = {r[1] for r in c.execute(f"PRAGMA table_info({table})")}
                    for col in (m for m in missing if m not in have):
                        c.execute(f"ALTER TABLE {table} ADD COLUMN {col} {columns[col].split()[0]}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE (take the write lock, waiting up to the busy timeout) ... COMMIT, or ROLLBACK.

        A full disk is one line ("disk full at <path>"); what was committed before stays intact.
        """
        if self.readonly:
            raise ToolkitError(f"results store {self.path} was opened read-only")
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except OverflowError:  # a Python int beyond SQLite's 64-bit INTEGER: nothing of the row is written
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                raise ToolkitError(f"a number is beyond what {self.path} can store (64-bit integers); nothing "
                                   "written") from None
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if _is_full(exc):
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                raise ToolkitError(f"disk full at {self.path}: the last cell was not stored; every cell "
                                   "stored before it is intact") from None
            raise

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    # ------------------------------------------------------------------------------------------ runs
    def _rows(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return _decode_run(rows[0]) if rows else None

    def runs(self) -> list[dict[str, Any]]:
        """Every run, oldest first, with its counts of stored, ok, failed and not-run cells."""
        rows = self._rows(
            "SELECT r.*, COUNT(c.cell_key) AS cells_done, "
            "COALESCE(SUM(c.status = 'ok'), 0) AS cells_ok, COALESCE(SUM(c.status = 'failed'), 0) AS cells_failed, "
            "COALESCE(SUM(c.status LIKE 'not run%'), 0) AS cells_not_run, COALESCE(SUM(c.unstable), 0) AS unstable "
            "FROM runs r LEFT JOIN cells c ON c.run_id = r.run_id GROUP BY r.run_id ORDER BY r.created, r.rowid")
        return [_decode_run(r) for r in rows]

    def runs_with_hash(self, args_hash: str) -> list[dict[str, Any]]:
        return [_decode_run(r) for r in
                self._rows("SELECT * FROM runs WHERE args_hash = ? ORDER BY created, rowid", (args_hash,))]

    def add_run(self, run: dict[str, Any]) -> bool:
        """Insert a run; False if a run with that id exists already (then nothing is written)."""
        row = {k: (json.dumps(v, sort_keys=True, default=str) if k in ("args", "argv", "environment") else v)
               for k, v in run.items()}
        cols = ", ".join(row)
        with self.transaction() as c:
            cur = c.execute(f"INSERT OR IGNORE INTO runs ({cols}) VALUES ({', '.join('?' * len(row))})",
                            tuple(row.values()))
            return cur.rowcount == 1

    def mark_finished(self, run_id: str, when: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE runs SET finished = ? WHERE run_id = ? AND finished IS NULL", (when, run_id))

    # ------------------------------------------------------------------------------------------ cells
    def done_keys(self, run_id: str) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT cell_key FROM cells WHERE run_id = ?", (run_id,))}

    def has_cell(self, run_id: str, cell_key: str) -> bool:
        return self.conn.execute("SELECT 1 FROM cells WHERE run_id = ? AND cell_key = ?",
                                 (run_id, cell_key)).fetchone() is not None

    def add_cell(self, row: dict[str, Any]) -> bool:
        """Store one cell in its own transaction; False if the cell was stored already (by another process)."""
        return self.add_cells([row]) == 1

    def add_cells(self, rows: list[dict[str, Any]]) -> int:
        """Store cells in one transaction (all or none); returns how many were new (others were stored already)."""
        for row in rows:
            unknown_cols = set(row) - set(CELL_COLUMNS)
            if unknown_cols:
                raise ValueError(f"unknown cell columns: {sorted(unknown_cols)}")
        added = 0
        with self.transaction() as c:
            for row in rows:
                cols = ", ".join(row)
                cur = c.execute(f"INSERT OR IGNORE INTO cells ({cols}) VALUES ({', '.join('?' * len(row))})",
                                tuple(row.values()))
                added += cur.rowcount == 1
        return added

    def add_pass(self, run_id: str, group_id: str, pass_no: int, payload: list[Any]) -> None:
        """Store one pass of a group (its members' measurements), in its own transaction."""
        with self.transaction() as c:
            c.execute("INSERT OR IGNORE INTO passes (run_id, group_id, pass, payload) VALUES (?, ?, ?, ?)",
                      (run_id, group_id, pass_no, json.dumps(payload)))

    def passes(self, run_id: str, group_id: str) -> list[tuple[int, list[Any]]]:
        """The stored passes of a group, in order: (pass number, payload)."""
        try:
            rows = self.conn.execute("SELECT pass, payload FROM passes WHERE run_id = ? AND group_id = ? ORDER BY "
                                     "pass", (run_id, group_id)).fetchall()
        except sqlite3.OperationalError:  # a read-only store of an older version has no passes table
            return []
        return [(int(n), json.loads(p)) for n, p in rows]

    def imported(self, sha256: str) -> dict[str, Any] | None:
        """The import of a file with this sha256, if any (run_id, cell_key, file, tool, imported)."""
        try:
            rows = self._rows("SELECT * FROM imports WHERE sha256 = ?", (sha256,))
        except sqlite3.OperationalError:  # a read-only store of an older version has no imports table
            return None
        return rows[0] if rows else None

    def add_import(self, run: dict[str, Any], cell: dict[str, Any], sha256: str, file: str, tool: str,
                   when: str) -> str:
        """Store one imported file in one transaction: its run (created if new; else its environment's list of
        imports, cells_total and finished are updated), its cell and its imports row. Returns "added", or
        "duplicate" (a file with this sha256 was imported before) or "cell exists" (the run has this cell from
        another file); then nothing is written."""
        unknown_cols = set(cell) - set(CELL_COLUMNS)
        if unknown_cols:
            raise ValueError(f"unknown cell columns: {sorted(unknown_cols)}")
        entry = {"file": file, "tool": tool, "sha256": sha256, "cell": cell["cell_key"], "imported": when}
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM imports WHERE sha256 = ?", (sha256,)).fetchone():
                return "duplicate"
            if c.execute("SELECT 1 FROM cells WHERE run_id = ? AND cell_key = ?",
                         (run["run_id"], cell["cell_key"])).fetchone():
                return "cell exists"
            have = c.execute("SELECT environment FROM runs WHERE run_id = ?", (run["run_id"],)).fetchone()
            if have is None:
                env = {**run["environment"], "imports": [entry]}
                row = {**run, "environment": env, "cells_total": 1, "finished": when}
                row = {k: (json.dumps(v, sort_keys=True, default=str) if k in ("args", "argv", "environment") else v)
                       for k, v in row.items()}
                c.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                          tuple(row.values()))
            else:
                env = json.loads(have[0])
                env["imports"] = [*env.get("imports", []), entry]
                c.execute("UPDATE runs SET environment = ?, cells_total = cells_total + 1, finished = ? WHERE "
                          "run_id = ?", (json.dumps(env, sort_keys=True), when, run["run_id"]))
            c.execute(f"INSERT INTO cells ({', '.join(cell)}) VALUES ({', '.join('?' * len(cell))})",
                      tuple(cell.values()))
            c.execute("INSERT INTO imports (sha256, run_id, cell_key, file, tool, imported) VALUES (?, ?, ?, ?, ?, ?)",
                      (sha256, run["run_id"], cell["cell_key"], file, tool, when))
        return "added"

    def delete_failed(self, run_id: str) -> int:
        with self.transaction() as c:
            n = c.execute("DELETE FROM cells WHERE run_id = ? AND status = 'failed'", (run_id,)).rowcount
            c.execute("UPDATE runs SET finished = NULL WHERE run_id = ?", (run_id,))
            return n

    def cells(self, run_id: str) -> list[dict[str, Any]]:
        """The run's cells in the order they were measured, JSON columns decoded."""
        rows = self._rows("SELECT * FROM cells WHERE run_id = ? ORDER BY finished, rowid", (run_id,))
        for r in rows:
            for k in CELL_COLUMNS:  # a read-only store of an older version lacks the newer columns
                r.setdefault(k, None)
            for k in ("overrides", "samples_ms", "cpu_samples_ms", "cpus", "runtime_versions", "attempt_cvs",
                      "rounds", "source", "device_state", "quant", "graph"):
                r[k] = json.loads(r[k]) if r.get(k) else ({} if k in ("overrides", "runtime_versions") else None)
            r["unstable"] = bool(r["unstable"]) if r["unstable"] is not None else None
            r["raw_samples"] = r["raw_samples"] != 0  # NULL (every measured cell) or 1: samples_ms are raw
        return rows

    def cell(self, run_id: str, cell_key: str) -> dict[str, Any] | None:
        """One stored cell (decoded as `cells` decodes them), or None."""
        return next((c for c in self.cells(run_id) if c["cell_key"] == cell_key), None)

    def known_size(self, model: str, overrides: str, height: int, width: int) -> tuple[int, int] | None:
        """Params and MAdds of a model at a resolution, from any stored cell."""
        r = self.conn.execute("SELECT params, madds FROM cells WHERE model = ? AND overrides = ? AND height = ? "
                              "AND width = ? AND madds IS NOT NULL LIMIT 1", (model, overrides, height, width)
                              ).fetchone()
        return (int(r[0]), int(r[1])) if r else None


def _decode_run(row: dict[str, Any]) -> dict[str, Any]:
    for k in RUN_COLUMNS:
        row.setdefault(k, None)
    for k in ("args", "argv", "environment"):
        if isinstance(row.get(k), str):
            row[k] = json.loads(row[k])
    return row
