"""Rows a caller attaches to its transfers, written in the same transaction as the batch
that decides them (`LedgerWriter.create_transfers(..., attachment=)`).

The writer's owner turns a batch's attachments into `AttachedRows`: data-modifying
statements (`INSERT ... ON CONFLICT DO NOTHING`, say) whose parameters are numbered from
`$1` across all of them. The store runs them as common table expressions of the batch's
own statement, so a small batch and what is attached to it still cost one round trip.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_PARAMETER = re.compile(r"\$(\d+)")


@dataclass(frozen=True, slots=True)
class AttachedRows:
    statements: tuple[str, ...]  # each one data-modifying statement; no other `$` in them
    arguments: tuple[Any, ...]

    def ctes(self, offset: int) -> str:
        """The statements as `attached_N AS (...)` items of a WITH list, their
        parameters moved up by `offset` (to follow the host statement's own)."""
        return _ctes(self.statements, offset)

    def statement(self) -> str:
        """The statements as one statement of their own."""
        return f"WITH {_ctes(self.statements, 0)} SELECT 1"


@lru_cache(maxsize=64)
def _ctes(statements: tuple[str, ...], offset: int) -> str:
    def renumber(match: re.Match[str]) -> str:
        return f"${int(match[1]) + offset}"

    return ", ".join(f"attached_{index} AS ({_PARAMETER.sub(renumber, text)})"
                     for index, text in enumerate(statements))


# Turns the attachments of one batch (in the order their requests were decided) into
# the rows to write with it, or None when there is nothing to write.
AttachmentRows = Callable[[list[Any]], AttachedRows | None]
