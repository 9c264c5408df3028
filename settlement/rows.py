"""A batch's accepted transfers as its commit sends them to PostgreSQL.

Two encodings of `Batch.transfers` (whose ids the core already holds as 16 bytes):

* `copy_rows`: the whole batch as one PostgreSQL binary COPY stream (the format of
  PostgreSQL's COPY documentation: signature, header, one tuple per transfer, trailer),
  one `struct` call per row; `copy_tuples`, the tuples of a part of the batch, for a
  stream sent while the batch is decided (`store.StreamedTransfers`). asyncpg's
  `copy_records_to_table` encodes every field of every row through its codecs: about
  0.4 s of the writer's one core per million transfers, and 0.5 s more to make the
  tuples it takes; packed here, 0.5 s in all.
* `small_batch_records`: fixed-width records that one statement cuts up on the server
  (`store._INSERT_SMALL_BATCH`), for a small batch of plain transfers.

Compiled with the ledger core (`cbdc.compiled`): it runs once per accepted transfer.
"""

from __future__ import annotations

import struct
from typing import Final

from settlement.core.state import NO_ID, TransferRow

# `transfers` columns in COPY order, with the PostgreSQL type each is sent as.
TRANSFER_COPY_COLUMNS: Final = (
    "ledger", "id", "debit_account_id", "credit_account_id", "amount", "pending_id",
    "user_data", "timeout", "code", "flags", "timestamp", "block_height",
    "debit_prev", "debit_seq", "credit_prev", "credit_seq",
)
_COPY_TYPES: Final = ("integer", "bytea", "bytea", "bytea", "bigint", "bytea", "bytea",
                      "bigint", "integer", "integer", "bigint", "bigint", "bigint", "bigint",
                      "bigint", "bigint")
_FORMAT_OF: Final = {"integer": "i", "bigint": "q", "bytea": "16s"}


def _row_format(null_pending: bool) -> str:
    """A tuple of the stream: field count, then each field's length and value (a NULL
    is the length -1 alone)."""
    fields = ["h"]
    for column, sql_type in zip(TRANSFER_COPY_COLUMNS, _COPY_TYPES, strict=True):
        fields.append("i" if null_pending and column == "pending_id"
                      else "i" + _FORMAT_OF[sql_type])
    return ">" + "".join(fields)


COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)  # no flags, no extension
COPY_TRAILER: Final = struct.pack(">h", -1)
_ROW: Final = struct.Struct(_row_format(null_pending=False))
_ROW_NO_PENDING: Final = struct.Struct(_row_format(null_pending=True))
_FIELDS: Final = len(TRANSFER_COPY_COLUMNS)


def copy_rows(transfers: list[TransferRow], height: int) -> bytes:
    """The transfers of block `height` as one binary COPY stream into
    `TRANSFER_COPY_COLUMNS` (pending_id NULL where the transfer resolves none)."""
    return b"".join([COPY_HEADER, copy_tuples(transfers, height, 0), COPY_TRAILER])


def copy_tuples(transfers: list[TransferRow], height: int, start: int) -> bytes:
    """The tuples of `copy_rows` for `transfers[start:]`, without its header or trailer:
    a stream's middle, sent a part at a time while a batch is still being decided."""
    out = []
    pack = _ROW.pack
    pack_no_pending = _ROW_NO_PENDING.pack
    for index in range(start, len(transfers)):
        (i, dr, cr, amount, pending, user_data, timeout, ledger, code, flags, ts, dprev,
         dseq, cprev, cseq) = transfers[index]
        if pending == NO_ID:
            out.append(pack_no_pending(
                _FIELDS, 4, ledger, 16, i, 16, dr, 16, cr, 8, amount, -1, 16, user_data,
                8, timeout, 4, code, 4, flags, 8, ts, 8, height, 8, dprev, 8, dseq,
                8, cprev, 8, cseq))
        else:
            out.append(pack(
                _FIELDS, 4, ledger, 16, i, 16, dr, 16, cr, 8, amount, 16, pending,
                16, user_data, 8, timeout, 4, code, 4, flags, 8, ts, 8, height,
                8, dprev, 8, dseq, 8, cprev, 8, cseq))
    return b"".join(out)


# The small batch's record: as the table's columns, bar ledger and block_height; ids are
# 16 bytes, integers 8 (big-endian, signed); pending_id is 16 zero bytes for none.
RECORD_FIELDS: Final = (
    ("id", "bytea"), ("dr", "bytea"), ("cr", "bytea"), ("amount", "bigint"),
    ("pending_id", "bytea"), ("user_data", "bytea"), ("timeout", "bigint"),
    ("code", "integer"), ("flags", "integer"), ("ts", "bigint"),
    ("debit_prev", "bigint"), ("debit_seq", "bigint"), ("credit_prev", "bigint"),
    ("credit_seq", "bigint"),
)
SMALL_BATCH_RECORD: Final = struct.Struct(
    ">" + "".join("16s" if sql_type == "bytea" else "q" for _, sql_type in RECORD_FIELDS))


def small_batch_records(transfers: list[TransferRow]) -> bytes:
    """The transfers as `SMALL_BATCH_RECORD`s, back to back."""
    pack = SMALL_BATCH_RECORD.pack
    return b"".join([
        pack(i, dr, cr, amount, pending, user_data, timeout, code, flags, ts, dprev, dseq,
             cprev, cseq)
        for (i, dr, cr, amount, pending, user_data, timeout, _ledger, code, flags, ts,
             dprev, dseq, cprev, cseq) in transfers
    ])
