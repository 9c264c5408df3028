"""One error base class; each area's error carries its fields."""

from __future__ import annotations

import pytest

from cbdc import errors


@pytest.mark.parametrize(
    "error_class",
    [errors.ConfigError, errors.StorageError, errors.MigrationError, errors.LedgerError,
     errors.AuditError],
)
def test_every_area_error_is_a_cbdc_error(error_class: type[errors.CbdcError]) -> None:
    error = error_class("something went wrong")
    assert isinstance(error, errors.CbdcError)
    assert str(error) == "something went wrong"
    assert error.message == "something went wrong"


def test_fields() -> None:
    assert errors.ConfigError("x", setting="CBDC_TIMEZONE").setting == "CBDC_TIMEZONE"
    assert errors.StorageError("x", store="redis").store == "redis"
    migration = errors.MigrationError("x", namespace="settlement", file="0001_a.sql")
    assert (migration.namespace, migration.file) == ("settlement", "0001_a.sql")
    assert errors.LedgerError("x", ledger=7).ledger == 7
    assert errors.AuditError("x").ledger is None


def test_the_docstring_draws_every_area() -> None:
    for name in ("CbdcError", "ConfigError", "StorageError", "MigrationError", "LedgerError",
                 "AuditError"):
        assert name in (errors.__doc__ or "")
