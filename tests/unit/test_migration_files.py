"""Reading a migrations folder: order, naming and the mistakes it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from cbdc.errors import MigrationError
from cbdc.migrations import read_source


def write(folder: Path, name: str, sql: str = "SELECT 1;") -> Path:
    path = folder / name
    path.write_text(sql, encoding="utf-8")
    return path


def test_files_come_in_version_order(tmp_path: Path) -> None:
    write(tmp_path, "0010_later.sql")
    write(tmp_path, "0002_second.sql")
    write(tmp_path, "0001_first.sql")
    (tmp_path / "README.md").write_text("not a migration")
    migrations = read_source("demo", tmp_path)
    assert [m.name for m in migrations] == [
        "demo/0001_first.sql", "demo/0002_second.sql", "demo/0010_later.sql",
    ]
    assert [m.version for m in migrations] == [1, 2, 10]


def test_an_empty_folder_has_no_migrations(tmp_path: Path) -> None:
    assert read_source("demo", tmp_path) == []


def test_checksum_follows_the_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, "0001_a.sql", "SELECT 1;")
    before = read_source("demo", tmp_path)[0].checksum
    path.write_text("SELECT 2;")
    assert read_source("demo", tmp_path)[0].checksum != before


@pytest.mark.parametrize("name", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql",
                                  "00001_five.sql", "0001_.sql"])
def test_badly_named_sql_files_are_refused(tmp_path: Path, name: str) -> None:
    write(tmp_path, name)
    with pytest.raises(MigrationError, match=name):
        read_source("demo", tmp_path)


def test_two_files_with_one_version_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "0001_a.sql")
    write(tmp_path, "0001_b.sql")
    with pytest.raises(MigrationError, match="0001"):
        read_source("demo", tmp_path)


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="does not exist"):
        read_source("demo", tmp_path / "nope")


@pytest.mark.parametrize("namespace", ["", "Demo", "a/b", "1st"])
def test_bad_namespaces_are_refused(tmp_path: Path, namespace: str) -> None:
    with pytest.raises(MigrationError):
        read_source(namespace, tmp_path)
