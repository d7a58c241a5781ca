"""hpo/storage/database.py: SQLite in WAL mode, and small PostgreSQL pools."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hpo.storage.database import open_storage


def test_sqlite_storage_uses_wal(tmp_path: Path) -> None:
    db = tmp_path / "hpo.db"
    open_storage(f"sqlite:///{db}")
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.postgres
def test_workers_keep_their_connection_pools_small(postgres_url: str) -> None:
    storage = open_storage(postgres_url)
    pool = storage.rdb.engine.pool
    assert pool.size() == 2 and pool._max_overflow == 1  # trial loop + heartbeat, plus one
    assert pool._pre_ping
