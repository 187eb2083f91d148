"""The profiles of a why run, in the results store beside its cells: table `profiles` (run_id, cell_key, tool,
payload JSON). Created on first write; a store without it simply has no profiles (a read-only store is only read)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from bench.store import Store

DDL = ("CREATE TABLE IF NOT EXISTS profiles (run_id TEXT NOT NULL, cell_key TEXT NOT NULL, tool TEXT NOT NULL, "
       "payload TEXT NOT NULL, PRIMARY KEY (run_id, cell_key, tool))")


def save_profile(store: Store, run_id: str, cell_key: str, tool: str, payload: dict[str, Any]) -> None:
    with store.transaction() as c:
        c.execute(DDL)
        c.execute("INSERT OR REPLACE INTO profiles VALUES (?, ?, ?, ?)", (run_id, cell_key, tool, json.dumps(payload)))


def profiled_keys(store: Store, run_id: str) -> set[tuple[str, str]]:
    return {(k, t) for k, t, _ in _rows(store, run_id)}


def load_profiles(store: Store, run_id: str) -> dict[str, dict[str, Any]]:
    """cell key -> its profile payload (one tool per cell)."""
    return {k: {"tool": t, **json.loads(p)} for k, t, p in _rows(store, run_id)}


def _rows(store: Store, run_id: str) -> list[tuple[str, str, str]]:
    try:
        return list(store.conn.execute("SELECT cell_key, tool, payload FROM profiles WHERE run_id = ?", (run_id,)))
    except sqlite3.OperationalError:  # no such table: a run without profiles
        return []
