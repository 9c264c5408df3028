"""128-bit identifiers, as TigerBeetle uses them: unsigned, client-chosen, never zero.

`new_id()` makes ids that sort by creation time (48-bit milliseconds, then 80 random
bits, like ULIDs), so a client can pick ids without a round trip and PostgreSQL's
indexes stay append-mostly.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Iterator
from typing import NewType

U128_LIMIT = 1 << 128
U64_LIMIT = 1 << 64

Id = NewType("Id", int)
_DECIMAL = re.compile(r"-?[0-9]{1,45}")
_HEX = re.compile(r"0[xX][0-9a-fA-F]{1,40}")


def new_id() -> Id:
    """A fresh, time-ordered 128-bit id."""
    millis = time.time_ns() // 1_000_000
    return Id((millis << 80) | int.from_bytes(os.urandom(10), "big"))


def id_sequence() -> Iterator[Id]:
    """Ids for one sender: a `new_id` to start, then one more each time.

    They sort by when the sender started, then in the order sent, so PostgreSQL adds
    each sender's to one place in its indexes, as with `new_id`; and they cost no clock
    reading and no random bytes each (a sender of 8,000-transfer batches makes many).
    Senders started apart never meet: 80 random bits lie between their starts."""
    return map(Id, itertools.count(new_id()))


def is_valid_id(value: object) -> bool:
    """True for an int in 1..2**128-1 (bool is not an id)."""
    return type(value) is int and 0 < value < U128_LIMIT


def id_to_bytes(value: int) -> bytes:
    """Big-endian 16 bytes, so byte order is numeric order."""
    return value.to_bytes(16, "big")


def id_from_bytes(raw: bytes) -> Id:
    return Id(int.from_bytes(raw, "big"))


def parse_id(text: str) -> Id:
    """Parse a decimal or 0x-prefixed hexadecimal id; ValueError names the rule broken."""
    stripped = text.strip()
    if _DECIMAL.fullmatch(stripped):
        value = int(stripped, 10)
    elif _HEX.fullmatch(stripped):
        value = int(stripped[2:], 16)
    else:
        raise ValueError(f"id {text!r} is not a decimal or 0x-hex integer")
    if not 0 < value < U128_LIMIT:
        raise ValueError(f"id {text!r} must be between 1 and 2**128-1")
    return Id(value)
