"""JSON shapes on the wire between operator banks and the central bank.

msgspec validates every request body against these (a wrong type or a missing field
names its JSON path) and the OpenAPI document's schemas are generated from them, so the
document and the code cannot drift apart.

Ids are 128-bit and travel as strings in UUID form (`0192c4e0-7c1e-7b2a-9d41-...`)
because JSON numbers lose precision past 2**53; amounts are integers of fen.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Literal

import msgspec

from cbdc.ids import U128_LIMIT

AMOUNT_LIMIT = 1 << 63

Fen = Annotated[int, msgspec.Meta(ge=1, le=AMOUNT_LIMIT - 1,
                                  description="amount in fen (0.01 CNY)")]
BankCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{2,12}$",
                                       description="operator bank code, e.g. BANKA")]
TransferId = Annotated[str, msgspec.Meta(
    pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    description="client-chosen 128-bit id in UUID form; retrying with it is safe")]
WalletRef = Annotated[str, msgspec.Meta(
    min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$",
    description="pseudonymous wallet reference")]
MemoRef = Annotated[str, msgspec.Meta(max_length=128, description="optional memo reference")]
MAX_BATCH = 8000
_CANONICAL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_digits(text: str) -> bool:
    """Only the ASCII digits 0-9 (str.isdigit alone takes '²' and other digits that
    int() refuses)."""
    return text.isascii() and text.isdigit()


def id_to_text(value: int) -> str:
    return str(uuid.UUID(int=value))


def id_from_text(text: str, *, allow_zero: bool = False) -> int:
    """Parse a UUID-form id (the schema has checked its shape); zero is not an id."""
    if _CANONICAL_UUID.fullmatch(text):  # the usual spelling: skip uuid.UUID's generality
        value = int(text.replace("-", ""), 16)
    else:
        value = uuid.UUID(text).int
    if not (0 if allow_zero else 1) <= value < U128_LIMIT:
        raise ValueError("an id must not be zero")
    return value


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    field: str | None = None
    rule: str | None = None
    code: str | None = None


# ------------------------------------------------------------------- requests
class IssueRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Swap reserves for e-CNY one to one (redemption: the reverse)."""

    id: TransferId
    amount: Fen


class InterbankTransfer(msgspec.Struct, forbid_unknown_fields=True):
    id: TransferId
    payee_bank: BankCode
    amount: Fen
    payer_ref: WalletRef
    payee_ref: WalletRef
    memo_ref: MemoRef | None = None


class TransferBatch(msgspec.Struct, forbid_unknown_fields=True):
    transfers: Annotated[list[InterbankTransfer],
                         msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


# A full batch, decoded in two steps. msgspec checks a `pattern` by calling Python's re
# once per string, and for 8,000 items that was most of the decoding (about 15 of 17 ms).
# So a batch is first decoded into twins of the two types above that leave out the
# patterns and keep every other check (types, lengths, bounds, unknown fields), and then
# each pattern is checked once over all the batch's values of its field. A batch that
# fails either step is decoded again into TransferBatch, the reference, which names the
# offending item and rule; so the answer is the same, only cheaper when all is well.
# tests/unit/test_wire_batch.py checks that the twins differ only by their patterns.
class UncheckedInterbankTransfer(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    payee_bank: str
    amount: Fen
    payer_ref: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    payee_ref: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    memo_ref: MemoRef | None = None


class UncheckedTransferBatch(msgspec.Struct, forbid_unknown_fields=True):
    transfers: Annotated[list[UncheckedInterbankTransfer],
                         msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


# Either kind of item: the service reads the same fields from both.
TransferItem = InterbankTransfer | UncheckedInterbankTransfer


def _all_lines(pattern: str) -> re.Pattern[str]:
    """Matches values joined by newlines when each matches `pattern` (which must match
    no newline itself)."""
    return re.compile(f"(?:{pattern}\n)*{pattern}")


_ID_LINES = _all_lines(_CANONICAL_UUID.pattern)
_BANK_LINES = _all_lines(r"[A-Z0-9]{2,12}")
_REF_LINES = _all_lines(r"[A-Za-z0-9._:-]+")


def _each_matches(lines: re.Pattern[str], values: list[str]) -> bool:
    joined = "\n".join(values)
    # The count catches a value with a newline inside, which would split in two.
    return joined.count("\n") == len(values) - 1 and lines.fullmatch(joined) is not None


def batch_patterns_hold(items: list[UncheckedInterbankTransfer]) -> bool:
    """True when every item's fields match TransferBatch's patterns (a False may be a
    false alarm, e.g. a trailing newline re.search would allow: decode strictly then)."""
    return (
        _each_matches(_ID_LINES, [t.id for t in items])
        and _each_matches(_BANK_LINES, [t.payee_bank for t in items])
        and _each_matches(_REF_LINES, [t.payer_ref for t in items])
        and _each_matches(_REF_LINES, [t.payee_ref for t in items])
    )


class RegisterOperator(msgspec.Struct, forbid_unknown_fields=True):
    code: BankCode
    # Printable: no control characters (PostgreSQL text cannot even hold NUL).
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200,
                                      pattern=r"^[^\x00-\x1f\x7f]+$")]
    key_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
    public_key_pem: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class AddKey(msgspec.Struct, forbid_unknown_fields=True):
    key_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
    public_key_pem: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class FundReserves(msgspec.Struct, forbid_unknown_fields=True):
    """The RTGS system moving reserves in (positive) for an operator."""

    id: TransferId
    amount: Fen


# ------------------------------------------------------------------ responses
TransferStatus = Literal["settled", "rejected"]


class TransferResult(msgspec.Struct, omit_defaults=True):
    id: str
    status: TransferStatus
    code: str | None = None  # why it was rejected (a ledger result code, lower case)
    detail: str | None = None


class BatchResult(msgspec.Struct):
    results: list[TransferResult]
    settled: int
    rejected: int


class TransferView(msgspec.Struct, omit_defaults=True):
    id: str
    kind: Literal["issue", "redeem", "interbank", "funding", "other"]
    payer_bank: str | None
    payee_bank: str | None
    amount: int
    timestamp: int
    block: int
    payer_ref: str | None = None
    payee_ref: str | None = None
    memo_ref: str | None = None


class Positions(msgspec.Struct):
    bank: str
    reserves: int
    ecny: int


class Statement(msgspec.Struct):
    bank: str
    entries: list[TransferView]
    next_after: str | None


class Event(msgspec.Struct):
    cursor: str
    transfer: TransferView


class Events(msgspec.Struct):
    events: list[Event]
    cursor: str


class Operator(msgspec.Struct):
    code: str
    name: str
    status: Literal["active", "suspended"]
    keys: list[OperatorKey]


class OperatorKey(msgspec.Struct):
    key_id: str
    status: Literal["pending", "active", "retired"]


class Supply(msgspec.Struct):
    ecny_outstanding: int
    sum_of_positions: int
    reserves_swapped_in_net: int
    reserves_held: int
    reserves_funded: int
    balanced: bool
