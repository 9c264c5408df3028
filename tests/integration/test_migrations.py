"""Migrations against a real PostgreSQL: applied once, in order, under a lock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from cbdc.errors import MigrationError
from cbdc.migrations import apply_migrations


def write(folder: Path, name: str, sql: str) -> Path:
    path = folder / name
    path.write_text(sql, encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write(tmp_path, "0001_widgets.sql", "CREATE TABLE widgets (id bigint PRIMARY KEY);")
    write(tmp_path, "0002_widget_names.sql",
          "ALTER TABLE widgets ADD COLUMN name text;\n"
          "INSERT INTO widgets (id, name) VALUES (1, 'first');")
    return tmp_path


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


async def recorded(conn: asyncpg.Connection, namespace: str) -> list[tuple[int, str]]:
    rows = await conn.fetch(
        "SELECT version, name FROM schema_migrations WHERE namespace = $1 ORDER BY version",
        namespace,
    )
    return [(row["version"], row["name"]) for row in rows]


async def test_applies_pending_files_once(conn: asyncpg.Connection, folder: Path) -> None:
    applied = await apply_migrations(conn, ("widgets", folder))
    assert applied == ["widgets/0001_widgets.sql", "widgets/0002_widget_names.sql"]
    assert await conn.fetchval("SELECT name FROM widgets WHERE id = 1") == "first"
    assert await recorded(conn, "widgets") == [(1, "0001_widgets.sql"),
                                                (2, "0002_widget_names.sql")]

    assert await apply_migrations(conn, ("widgets", folder)) == []
    assert await conn.fetchval("SELECT count(*) FROM widgets") == 1

    write(folder, "0003_gadgets.sql", "CREATE TABLE gadgets (id bigint);")
    assert await apply_migrations(conn, ("widgets", folder)) == ["widgets/0003_gadgets.sql"]


async def test_namespaces_are_independent(
    conn: asyncpg.Connection, folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("other")
    write(other, "0001_gizmos.sql", "CREATE TABLE gizmos (id bigint);")
    applied = await apply_migrations(conn, ("widgets", folder), ("gizmos", other))
    assert applied[-1] == "gizmos/0001_gizmos.sql"
    assert len(applied) == 3


async def test_the_project_migrations_are_in_the_template(conn: asyncpg.Connection) -> None:
    from cbdc.migrations import migration_sources

    folder = migration_sources()[0][1]
    on_disk = sorted(path.name for path in folder.glob("*.sql"))
    assert [name for _, name in await recorded(conn, "settlement")] == on_disk


async def test_a_changed_applied_file_is_refused(conn: asyncpg.Connection,
                                                 folder: Path) -> None:
    await apply_migrations(conn, ("widgets", folder))
    write(folder, "0001_widgets.sql", "CREATE TABLE widgets (id bigint PRIMARY KEY, x int);")
    write(folder, "0003_more.sql", "CREATE TABLE more (id bigint);")
    with pytest.raises(MigrationError, match=r"0001_widgets\.sql") as caught:
        await apply_migrations(conn, ("widgets", folder))
    assert caught.value.file == str(folder / "0001_widgets.sql")
    assert await conn.fetchval("SELECT to_regclass('more')") is None  # nothing applied


async def test_a_deleted_applied_file_is_refused(conn: asyncpg.Connection,
                                                 folder: Path) -> None:
    await apply_migrations(conn, ("widgets", folder))
    (folder / "0002_widget_names.sql").unlink()
    with pytest.raises(MigrationError, match=r"0002_widget_names\.sql"):
        await apply_migrations(conn, ("widgets", folder))


async def test_a_new_file_numbered_below_an_applied_one_is_refused(
    conn: asyncpg.Connection, folder: Path
) -> None:
    (folder / "0002_widget_names.sql").rename(folder / "0005_widget_names.sql")
    await apply_migrations(conn, ("widgets", folder))  # 0001, then 0005
    write(folder, "0003_late.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match=r"0003_late\.sql"):
        await apply_migrations(conn, ("widgets", folder))


async def test_a_failing_file_is_rolled_back_and_named(conn: asyncpg.Connection,
                                                       folder: Path) -> None:
    write(folder, "0003_broken.sql",
          "CREATE TABLE half (id bigint);\nINSERT INTO no_such_table VALUES (1);")
    with pytest.raises(MigrationError, match=r"0003_broken\.sql"):
        await apply_migrations(conn, ("widgets", folder))
    assert await conn.fetchval("SELECT to_regclass('half')") is None
    assert [v for v, _ in await recorded(conn, "widgets")] == [1, 2]  # kept, committed
    write(folder, "0003_broken.sql", "CREATE TABLE half (id bigint);")  # fixed
    assert await apply_migrations(conn, ("widgets", folder)) == ["widgets/0003_broken.sql"]


async def test_concurrent_starters_apply_each_file_exactly_once(
    database_url: str, folder: Path
) -> None:
    # The first file holds the lock long enough that the others really wait for it.
    write(folder, "0001_widgets.sql",
          "SELECT pg_sleep(0.3);\nCREATE TABLE widgets (id bigint PRIMARY KEY);")
    connections = [await asyncpg.connect(database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(apply_migrations(c, ("widgets", folder)) for c in connections)
        )
        applied = sorted(name for result in results for name in result)
        assert applied == ["widgets/0001_widgets.sql", "widgets/0002_widget_names.sql"]
        assert sorted(len(result) for result in results) == [0, 0, 0, 2]
        assert await recorded(connections[0], "widgets") == [
            (1, "0001_widgets.sql"), (2, "0002_widget_names.sql")]
    finally:
        for connection in connections:
            await connection.close()


async def test_the_lock_is_released(conn: asyncpg.Connection, folder: Path) -> None:
    await apply_migrations(conn, ("widgets", folder))
    held = await conn.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    )
    assert held == 0


async def test_a_ledger_written_before_the_history_chains_gets_its_links(
        conn: asyncpg.Connection, tmp_path: Path) -> None:
    """0005 replaces the history index with links in the transfers: a database written
    under 0001-0004 gets, on each side of each transfer, the timestamp of the one before
    it on that side of that account and its position, and loses `account_entries`."""
    import shutil

    from cbdc.migrations import migration_sources

    settlement = dict(migration_sources())["settlement"]
    before = tmp_path / "settlement"
    before.mkdir()
    for path in sorted(settlement.glob("000[1-4]_*.sql")):
        shutil.copy(path, before)
    await conn.execute("CREATE SCHEMA upgraded; SET search_path TO upgraded")
    await apply_migrations(conn, ("settlement", before))

    def b16(n: int) -> bytes:
        return n.to_bytes(16, "big")

    await conn.execute("INSERT INTO ledgers (ledger, public_key) VALUES (1, '\\x00')")
    for height in (1, 2):
        await conn.execute(
            "INSERT INTO blocks VALUES (1, $1, '\\x00', '\\x00', 0, 1, 1, '\\x00', '\\x00')",
            height)
    moves = [(1, 2, 1), (2, 3, 2), (1, 2, 2)]
    for n, (debit, credit, height) in enumerate(moves, start=1):
        await conn.execute(
            "INSERT INTO transfers VALUES (1, $1, $2, $3, 5, NULL, $4, 0, 1, 0, $5, $6)",
            b16(100 + n), b16(debit), b16(credit), b16(0), 1_000 + n, height)

    await apply_migrations(conn, ("settlement", settlement))
    rows = await conn.fetch(
        "SELECT timestamp, debit_prev, debit_seq, credit_prev, credit_seq FROM transfers "
        "ORDER BY timestamp")
    assert [tuple(r) for r in rows] == [
        (1_001, 0, 1, 0, 1),          # 1 -> 2: the first on both sides
        (1_002, 0, 1, 0, 1),          # 2 -> 3: 2's first debit, 3's first credit
        (1_003, 1_001, 2, 1_001, 2),  # 1 -> 2 again: after the first, on both sides
    ]
    tables = {r["tablename"] for r in await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'upgraded'")}
    assert "account_entries" not in tables
    indexes = {r["indexname"]: r["indexdef"] for r in await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'upgraded' "
        "AND tablename = 'transfers'")}
    assert "transfers_by_timestamp" in indexes
    from settlement.store import MARK_EVERY  # the store's queries name the same marks
    for side in ("debit", "credit"):
        assert f"({side}_seq % ({MARK_EVERY})::bigint) = 0" in indexes[f"transfers_{side}_marks"]
