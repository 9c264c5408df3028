"""Errors the project raises on purpose, one base class and one subclass per failure area.

    CbdcError                  anything `cbdc` reports as "cbdc: error: <message>"
    ├── ConfigError            a setting is missing or out of range (.setting)
    ├── StorageError           PostgreSQL or Redis cannot be started, reached or trusted (.store)
    ├── MigrationError         a schema migration cannot be applied (.namespace, .file)
    ├── LedgerError            the settlement engine refused or failed (.ledger)
    │   └── ...                subclasses in settlement/errors.py
    └── AuditError             a journal or receipt does not verify (.ledger)

Each error's `str()` is one sentence for a person; its fields are for code. Subclasses
call `super().__init__(message, ...)` and may add fields of their own.
"""

from __future__ import annotations


class CbdcError(Exception):
    """Base class of every error the project raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(CbdcError):
    """A setting is missing, malformed or out of range.

    `setting` names the environment variable (e.g. ``CBDC_BATCH_MAX_EVENTS``) when known.
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class StorageError(CbdcError):
    """PostgreSQL or Redis could not be started or reached, or is unsafe to use.

    `store` is ``"postgresql"`` or ``"redis"`` when the error concerns one of them.
    """

    def __init__(self, message: str, *, store: str | None = None) -> None:
        super().__init__(message)
        self.store = store


class MigrationError(CbdcError):
    """A schema migration could not be applied, or an applied one was changed.

    `namespace` and `file` name the migration source and file when known.
    """

    def __init__(
        self, message: str, *, namespace: str | None = None, file: str | None = None
    ) -> None:
        super().__init__(message)
        self.namespace = namespace
        self.file = file


class LedgerError(CbdcError):
    """The settlement engine refused a request or could not complete it."""

    def __init__(self, message: str, *, ledger: int | None = None) -> None:
        super().__init__(message)
        self.ledger = ledger


class AuditError(CbdcError):
    """A journal, export file or receipt could not be read or does not verify."""

    def __init__(self, message: str, *, ledger: int | None = None) -> None:
        super().__init__(message)
        self.ledger = ledger
