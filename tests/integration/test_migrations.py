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
