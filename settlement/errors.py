"""Errors of the settlement engine (all `cbdc.errors.LedgerError`).

    LedgerError
    ├── BatchNotCommitted   the batch holding a request did not commit; retry by id
    ├── WriterClosed        the ledger's writer is shut down
    └── KeyMismatch         the signing key differs from the one the ledger was sealed with
"""

from __future__ import annotations

from cbdc.errors import LedgerError


class BatchNotCommitted(LedgerError):
    """The batch did not commit. If the connection broke during COMMIT the outcome is
    unknown: look the transfers up by id, or retry them with the same ids (a retry of a
    transfer that did commit answers EXISTS, never applies twice)."""

    def __init__(self, ledger: int, reason: str) -> None:
        super().__init__(f"ledger {ledger}: batch not committed ({reason}); "
                         "retry with the same ids or look them up")
        self.ledger = ledger
        self.reason = reason


class WriterClosed(LedgerError):
    def __init__(self, ledger: int) -> None:
        super().__init__(f"ledger {ledger}: the writer is closed")
        self.ledger = ledger


class KeyMismatch(LedgerError):
    def __init__(self, ledger: int) -> None:
        super().__init__(
            f"ledger {ledger}: the signing key is not the key this ledger's chain was "
            "sealed with; start with the ledger's own key"
        )
        self.ledger = ledger
