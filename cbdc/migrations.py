"""Ordered, versioned SQL migrations, applied once each, safely from many processes.

A source is a namespace and a folder of `NNNN_name.sql` files (`0001_ledger.sql`, ...).
`apply_migrations` records each applied file in `schema_migrations(namespace, version,
name, checksum, applied_at)`, applies the pending ones in version order, each in its own
transaction, and holds a PostgreSQL advisory lock meanwhile, so two processes starting
at once apply every file exactly once. An applied file must never change: a changed
checksum, a missing applied file, or a new file numbered below an applied one is
refused with a `MigrationError` naming the file. Write a new file instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from cbdc.errors import MigrationError

# pg_advisory_lock key: the first 8 bytes of sha256(b"cbdc.migrations"), as a signed bigint.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"cbdc.migrations").digest()[:8], "big", signed=True)
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_NAMESPACE = re.compile(r"^[a-z][a-z0-9_]*$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    namespace   text        NOT NULL,
    version     integer     NOT NULL,
    name        text        NOT NULL,
    checksum    text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, version)
)
"""


@dataclass(frozen=True)
class Migration:
    namespace: str
    version: int
    path: Path
    checksum: str  # sha256 of the file's bytes, hex
    sql: str = field(repr=False)

    @property
    def name(self) -> str:
        """`settlement/0001_ledger.sql`: how reports and errors name this file."""
        return f"{self.namespace}/{self.path.name}"


def read_source(namespace: str, folder: Path) -> list[Migration]:
    """The migrations in `folder`, in version order (an empty folder has none)."""
    if not _NAMESPACE.match(namespace):
        raise MigrationError(
            f"migration namespace {namespace!r} must be lower-case letters, digits and _",
            namespace=namespace,
        )
    if not folder.is_dir():
        raise MigrationError(
            f"the migrations folder {folder} of {namespace!r} does not exist",
            namespace=namespace,
        )
    found: dict[int, Migration] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"{path} is not named like 0001_name.sql (four digits, lower-case name)",
                namespace=namespace, file=str(path),
            )
        version = int(match["version"])
        if version in found:
            raise MigrationError(
                f"{path} and {found[version].path.name} share version {version:04d}",
                namespace=namespace, file=str(path),
            )
        content = path.read_bytes()
        try:
            sql = content.decode("utf-8")
        except UnicodeDecodeError:
            raise MigrationError(
                f"{path} is not UTF-8 text", namespace=namespace, file=str(path)
            ) from None
        checksum = hashlib.sha256(content).hexdigest()
        found[version] = Migration(namespace, version, path, checksum, sql)
    return [found[version] for version in sorted(found)]


async def apply_migrations(conn: asyncpg.Connection, *sources: tuple[str, Path]) -> list[str]:
    """Apply the pending migrations of `sources` in order; return their names
    (like ``settlement/0001_ledger.sql``), or ``[]`` when all were applied already."""
    planned = [read_source(namespace, folder) for namespace, folder in sources]
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        applied: list[str] = []
        for migrations in planned:
            applied += await _apply_source(conn, migrations)
        return applied
    finally:
        # A broken connection has released the lock already; keep the original error.
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def _apply_source(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    if not migrations:
        return []
    namespace = migrations[0].namespace
    rows = await conn.fetch(
        "SELECT version, name, checksum FROM schema_migrations WHERE namespace = $1",
        namespace,
    )
    recorded = {row["version"]: (row["name"], row["checksum"]) for row in rows}
    on_disk = {migration.version: migration for migration in migrations}
    for version, (name, _checksum) in recorded.items():
        if version not in on_disk:
            raise MigrationError(
                f"the database has {namespace}/{name} applied but that file is missing; "
                "this code is older than the database",
                namespace=namespace, file=name,
            )
    newest_applied = max(recorded, default=0)
    done: list[str] = []
    for migration in migrations:
        if migration.version in recorded:
            _check_unchanged(migration, *recorded[migration.version])
            continue
        if migration.version < newest_applied:
            raise MigrationError(
                f"{migration.path} is numbered below the applied version "
                f"{newest_applied:04d}; give it a higher number",
                namespace=namespace, file=str(migration.path),
            )
        await _apply_one(conn, migration)
        done.append(migration.name)
    return done


def _check_unchanged(migration: Migration, name: str, checksum: str) -> None:
    if name != migration.path.name or checksum != migration.checksum:
        raise MigrationError(
            f"{migration.path} was changed after it was applied (as {name}); "
            "restore it and put the change in a new migration",
            namespace=migration.namespace, file=str(migration.path),
        )


async def _apply_one(conn: asyncpg.Connection, migration: Migration) -> None:
    try:
        async with conn.transaction():
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (namespace, version, name, checksum)"
                " VALUES ($1, $2, $3, $4)",
                migration.namespace, migration.version, migration.path.name,
                migration.checksum,
            )
    except asyncpg.PostgresError as exc:
        raise MigrationError(
            f"{migration.path} failed and was rolled back: {exc}",
            namespace=migration.namespace, file=str(migration.path),
        ) from None


def migration_sources() -> list[tuple[str, Path]]:
    """Every migration source of the project, in the order they apply. Found without
    importing the packages (find_spec does not run their __init__)."""
    return [
        (package, _package_dir(package) / "migrations")
        for package in ("settlement", "central_bank", "commercial_bank")
    ]


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MigrationError(f"the package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))
