"""Payment orders a wallet signs, and payment requests a merchant shows as a QR code.

A payment order is the RFC 8785 canonical JSON of

    {"domain": "cbdc/payment-order/v1", "payer": "<address>", "payee": "<address>",
     "amount": <fen>, "sequence": <n >= 1, per payer wallet>, "expires": <unix seconds>,
     "memo": "<at most 140 characters>"}

signed with the payer wallet's P-256 key (`cbdc.signing`: RFC 6979, low S, DER) over those
bytes. On the wire a signed order is

    {"order": {...the fields above...}, "signature": "<base64url of the DER, no padding>"}

Readers accept any JSON spelling of an order (key order, escapes, whitespace) and
canonicalise it again before verifying, so the signature covers the order, not the text.
They refuse what would make one order have two meanings: floats or strings for numbers,
unknown or duplicate fields, addresses not in their canonical form, and any base64 other
than the one canonical spelling of the signature.

A payment request is what a payee shows to be paid, as a ``cbdc:`` URI:

    cbdc:BANKA-000000001234-96?amount=1234&memo=Tea&expires=1767225600&id=r-1

(amount in fen; every parameter but ``id`` optional; values percent-encoded UTF-8), short
enough to fit a QR code of version 10 at error correction M.

Errors:

    CbdcError
    ├── OrderRejected        .reason: "malformed" | "wrong_domain" | "bad_signature" |
    │                        "expired"; .field: the offending field, when there is one
    └── PaymentUriError      .field: the offending URI part, when there is one
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import quote, unquote

import qrcode
import rfc8785
from qrcode.constants import ERROR_CORRECT_M

from cbdc.addresses import AddressError, WalletAddress, canonical_address, parse_address
from cbdc.errors import CbdcError
from cbdc.signing import SigningKey, VerifyingKey

DOMAIN: Final = "cbdc/payment-order/v1"
MEMO_MAX = 140
# RFC 8785 numbers are IEEE doubles: integers are exact only up to 2**53 - 1.
INT_MAX = 2**53 - 1
URI_SCHEME = "cbdc"
# Bytes a QR code of version 10, error correction M holds in byte mode.
URI_MAX_BYTES = 213
QR_MAX_VERSION = 10
REQUEST_ID = re.compile(r"[A-Za-z0-9._~-]{1,36}", re.ASCII)

Reason = Literal["bad_signature", "expired", "malformed", "wrong_domain"]

_ORDER_FIELDS = ("domain", "payer", "payee", "amount", "sequence", "expires", "memo")
_ENVELOPE_FIELDS = ("order", "signature")
# Bidirectional overrides can make a memo display as another one.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                           "\u2066\u2067\u2068\u2069")


class OrderRejected(CbdcError):
    """A payment order is malformed, for another purpose, badly signed or expired."""

    def __init__(self, message: str, *, reason: Reason, field: str | None = None) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.field = field


class PaymentUriError(CbdcError):
    """Text is not a payment request URI, or the request does not fit a QR code."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _malformed(message: str, field: str | None = None) -> OrderRejected:
    return OrderRejected(message, reason="malformed", field=field)


def memo_problem(memo: object) -> str | None:
    """Why `memo` cannot be a memo (text of at most 140 characters, nothing that moves the
    cursor or reorders the display), or None."""
    if not isinstance(memo, str):
        return f"the memo must be text, not {type(memo).__name__}"
    if len(memo) > MEMO_MAX:
        return f"the memo has {len(memo)} characters; at most {MEMO_MAX} fit"
    if any(unicodedata.category(c) in {"Cc", "Cs"} or c in _BIDI_CONTROLS for c in memo):
        return "the memo contains a control character"
    return None


def _whole_number(name: str, value: object, minimum: int) -> str | None:
    if type(value) is not int:
        return f"{name} must be a whole number, not {type(value).__name__}"
    if not minimum <= value <= INT_MAX:
        return f"{name} must be between {minimum} and {INT_MAX}, not {value}"
    return None


def _canonical_address(name: str, value: object) -> WalletAddress:
    """The address `value` spells, refusing any spelling but the canonical one."""
    if isinstance(value, WalletAddress):
        return value
    if not isinstance(value, str):
        raise _malformed(f"{name} must be an address, not {type(value).__name__}", name)
    known = canonical_address(value)
    if known is not None:
        return known
    try:
        address = parse_address(value)
    except AddressError as error:
        raise _malformed(f"{name}: {error}", name) from None
    raise _malformed(f"{name} must be written {str(address)!r}, not {value!r}", name)


@dataclass(frozen=True, slots=True)
class PaymentOrder:
    """Pay `amount` fen from `payer` to `payee`; valid while the time is before `expires`.

    Construction checks every field and raises `OrderRejected` (reason "malformed").
    `domain` is kept as given, so that `verify` can name an order signed for another
    purpose ("wrong_domain") instead of calling it malformed.
    """

    payer: WalletAddress
    payee: WalletAddress
    amount: int
    sequence: int
    expires: int
    memo: str = ""
    domain: str = DOMAIN
    # The canonical bytes, once computed: a bank needs them to verify the signature,
    # to store the order and to name it (fields frozen, so they never go stale).
    _canonical: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "payer", _canonical_address("payer", self.payer))
        object.__setattr__(self, "payee", _canonical_address("payee", self.payee))
        if self.payer == self.payee:
            raise _malformed("the payer and the payee are the same wallet", "payee")
        for name, minimum in (("amount", 1), ("sequence", 1), ("expires", 0)):
            problem = _whole_number(name, getattr(self, name), minimum)
            if problem is not None:
                raise _malformed(problem, name)
        problem = memo_problem(self.memo)
        if problem is not None:
            raise _malformed(problem, "memo")
        if not isinstance(self.domain, str) or not self.domain:
            raise _malformed("the domain must be non-empty text", "domain")

    def to_dict(self) -> dict[str, str | int]:
        return {
            "domain": self.domain,
            "payer": str(self.payer),
            "payee": str(self.payee),
            "amount": self.amount,
            "sequence": self.sequence,
            "expires": self.expires,
            "memo": self.memo,
        }

    @classmethod
    def from_dict(cls, fields: object) -> PaymentOrder:
        """An order from decoded JSON; refuses missing, unknown and mistyped fields."""
        if type(fields) is not dict and not isinstance(fields, Mapping):
            raise _malformed("a payment order must be a JSON object")
        unknown = sorted(set(fields) - set(_ORDER_FIELDS))
        if unknown:
            raise _malformed(f"a payment order has no field {unknown[0]!r}", str(unknown[0]))
        missing = [name for name in _ORDER_FIELDS if name not in fields]
        if missing:
            raise _malformed(f"the payment order has no {missing[0]!r}", missing[0])
        return cls(
            payer=_canonical_address("payer", fields["payer"]),
            payee=_canonical_address("payee", fields["payee"]),
            amount=fields["amount"],
            sequence=fields["sequence"],
            expires=fields["expires"],
            memo=fields["memo"],
            domain=fields["domain"],
        )

    def canonical_bytes(self) -> bytes:
        """The RFC 8785 bytes that are signed."""
        canonical = self._canonical
        if canonical is None:
            canonical = _canonical_order(self) if self.domain == DOMAIN \
                else rfc8785.dumps(self.to_dict())
            object.__setattr__(self, "_canonical", canonical)
        return canonical

    def digest(self) -> str:
        """SHA-256 of the canonical bytes, hex: one name per order, whatever its spelling."""
        return hashlib.sha256(self.canonical_bytes()).hexdigest()

    def sign(self, key: SigningKey) -> SignedOrder:
        return SignedOrder(self, key.sign(self.canonical_bytes()))


def _canonical_order(order: PaymentOrder) -> bytes:
    """RFC 8785 of an order in this project's domain, without the general serializer
    (which took about a twentieth of a bank's CPU per payment).

    What makes it the same bytes: the keys are fixed ASCII, written in their sorted order;
    the numbers are whole and at most 2**53 - 1, so their shortest form is their digits;
    the addresses are canonical ASCII with nothing to escape; and a valid memo holds no
    control character or lone surrogate, so `json.dumps` escapes in it exactly what RFC
    8785 does (quote and backslash) and leaves the rest as UTF-8. `rfc8785.dumps` stays
    the reference for any other domain, and a property test holds the two equal.
    """
    memo = json.dumps(order.memo, ensure_ascii=False)
    return (f'{{"amount":{order.amount},"domain":"{DOMAIN}","expires":{order.expires},'
            f'"memo":{memo},"payee":"{order.payee}","payer":"{order.payer}",'
            f'"sequence":{order.sequence}}}').encode()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _from_b64url(text: object) -> bytes:
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,200}", text):
        raise _malformed("the signature must be base64url text without padding", "signature")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _malformed("the signature is not valid base64url", "signature") from None
    if _b64url(raw) != text:  # unused low bits set: a second spelling of the same bytes
        raise _malformed("the signature is not canonical base64url", "signature")
    return raw


def _refuse_float(text: str) -> Any:
    raise ValueError(f"{text} is not a whole number")


def _refuse_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"field {key!r} appears twice")
        result[key] = value
    return result


# One decoder for every order: json.loads(text, **hooks) builds a new one each call.
_DECODER = json.JSONDecoder(
    parse_float=_refuse_float,
    parse_constant=_refuse_constant,
    object_pairs_hook=_object_without_duplicates,
)


def _strict_json(text: str | bytes) -> Any:
    try:
        # What json.loads does before decoding: bytes in any JSON encoding, no BOM.
        if isinstance(text, str):
            if text.startswith("\ufeff"):
                raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)",
                                           text, 0)
        else:
            text = text.decode(json.detect_encoding(text), "surrogatepass")
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError
        raise _malformed(f"the signed order is not valid JSON: {error}") from None


@dataclass(frozen=True, slots=True)
class SignedOrder:
    """An order and the payer's DER signature over its canonical bytes."""

    order: PaymentOrder
    signature: bytes

    def to_dict(self) -> dict[str, str | dict[str, str | int]]:
        return {"order": self.order.to_dict(), "signature": _b64url(self.signature)}

    def to_json(self) -> str:
        """Canonical JSON; the signature is base64url without padding (RFC 4648 §5)."""
        return self.to_json_bytes().decode("utf-8")

    def to_json_bytes(self) -> bytes:
        """`to_json()` as UTF-8 bytes, built around the order's canonical bytes.

        RFC 8785 of ``{"order": ..., "signature": ...}`` is exactly this: the two keys
        sort in this order, the order object is its own canonical text, and base64url
        text needs no escape (a unit test holds it to `rfc8785.dumps(self.to_dict())`).
        """
        return b"".join((b'{"order":', self.order.canonical_bytes(), b',"signature":"',
                         _b64url(self.signature).encode("ascii"), b'"}'))

    @classmethod
    def from_dict(cls, fields: object) -> SignedOrder:
        if type(fields) is not dict and not isinstance(fields, Mapping):
            raise _malformed("a signed order must be a JSON object")
        unknown = sorted(set(fields) - set(_ENVELOPE_FIELDS))
        if unknown:
            raise _malformed(f"a signed order has no field {unknown[0]!r}", str(unknown[0]))
        missing = [name for name in _ENVELOPE_FIELDS if name not in fields]
        if missing:
            raise _malformed(f"the signed order has no {missing[0]!r}", missing[0])
        return cls(PaymentOrder.from_dict(fields["order"]), _from_b64url(fields["signature"]))

    @classmethod
    def from_json(cls, text: str | bytes) -> SignedOrder:
        """Read a signed order; floats, NaN and duplicate fields are refused as malformed."""
        return cls.from_dict(_strict_json(text))


def verify(signed: SignedOrder, public_key: VerifyingKey, *, now: int) -> None:
    """Accept a signed order, or raise `OrderRejected`.

    Checked in this order: the domain, the signature (low S, strict DER, over the canonical
    bytes), then the expiry: an order is expired from the second `expires` on (`now >=
    expires`), as JWT's "exp" is.
    """
    order = signed.order
    if order.domain != DOMAIN:
        raise OrderRejected(
            f"the order was signed for {order.domain!r}, not as a payment order ({DOMAIN!r})",
            reason="wrong_domain",
            field="domain",
        )
    if not public_key.verify(signed.signature, order.canonical_bytes()):
        raise OrderRejected(
            "the signature does not match the order and the payer's key",
            reason="bad_signature",
            field="signature",
        )
    if now >= order.expires:
        raise OrderRejected(
            f"the order expired at {order.expires} (unix seconds; it is now {now})",
            reason="expired",
            field="expires",
        )


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """A payee asking to be paid: the amount (fen) may be left for the payer to enter.

    Construction refuses a request whose URI would not fit a version-10 QR code at
    error correction M (`URI_MAX_BYTES`), so every request can be shown.
    """

    payee: WalletAddress
    amount: int | None
    memo: str
    expires: int | None
    request_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.payee, WalletAddress):
            raise PaymentUriError("the payee must be a wallet address", field="payee")
        for name, value, minimum in (
            ("amount", self.amount, 1), ("expires", self.expires, 0),
        ):
            problem = None if value is None else _whole_number(name, value, minimum)
            if problem is not None:
                raise PaymentUriError(problem, field=name)
        problem = memo_problem(self.memo)
        if problem is not None:
            raise PaymentUriError(problem, field="memo")
        if not isinstance(self.request_id, str) or not REQUEST_ID.fullmatch(self.request_id):
            raise PaymentUriError(
                "the request id must be 1 to 36 letters, digits or . _ ~ -", field="id"
            )
        size = len(self.to_uri().encode("ascii"))
        if size > URI_MAX_BYTES:
            raise PaymentUriError(
                f"the request is {size} bytes as a URI and a QR code holds {URI_MAX_BYTES}: "
                "shorten the memo",
                field="memo",
            )

    def to_uri(self) -> str:
        """``cbdc:<address>?amount=..&memo=..&expires=..&id=..`` (empty ones left out)."""
        params: list[tuple[str, str]] = []
        if self.amount is not None:
            params.append(("amount", str(self.amount)))
        if self.memo:
            params.append(("memo", self.memo))
        if self.expires is not None:
            params.append(("expires", str(self.expires)))
        params.append(("id", self.request_id))
        query = "&".join(f"{name}={quote(value, safe='')}" for name, value in params)
        return f"{URI_SCHEME}:{self.payee}?{query}"


_URI_PARAMS = ("amount", "memo", "expires", "id")
_DIGITS = re.compile(r"[0-9]{1,16}", re.ASCII)


def _uri_number(name: str, text: str) -> int:
    if not _DIGITS.fullmatch(text):
        raise PaymentUriError(
            f"{name} in a payment request must be a whole number"
            + (" of fen, like 1234 for ¥12.34" if name == "amount" else " of seconds"),
            field=name,
        )
    return int(text)


def parse_payment_uri(text: str) -> PaymentRequest:
    """Read a ``cbdc:`` payment request (from a QR code or typed); errors say what is wrong."""
    uri = text.strip()
    if len(uri.encode("utf-8")) > URI_MAX_BYTES * 3:
        raise PaymentUriError("this is far too long to be a payment request")
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() != URI_SCHEME:
        raise PaymentUriError(
            f"a payment request starts with '{URI_SCHEME}:', like "
            f"cbdc:BANKA-000000001234-96?amount=1234&id=r1",
            field="scheme",
        )
    address_text, _, query = rest.partition("?")
    try:
        payee = parse_address(unquote(address_text, errors="strict"))
    except (AddressError, UnicodeDecodeError) as error:
        raise PaymentUriError(f"the payee: {error}", field="payee") from None
    params: dict[str, str] = {}
    for pair in query.split("&") if query else []:
        name, equals, raw = pair.partition("=")
        if name not in _URI_PARAMS:
            raise PaymentUriError(
                f"a payment request has no parameter {name!r}; it may have "
                + ", ".join(_URI_PARAMS),
                field=name,
            )
        if not equals:
            raise PaymentUriError(f"parameter {name!r} has no value", field=name)
        if name in params:
            raise PaymentUriError(f"parameter {name!r} appears twice", field=name)
        try:
            params[name] = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            raise PaymentUriError(
                f"parameter {name!r} is not percent-encoded UTF-8", field=name
            ) from None
    if "id" not in params:
        raise PaymentUriError("the payment request has no id", field="id")
    amount = params.get("amount")
    expires = params.get("expires")
    return PaymentRequest(
        payee=payee,
        amount=None if amount is None else _uri_number("amount", amount),
        memo=params.get("memo", ""),
        expires=None if expires is None else _uri_number("expires", expires),
        request_id=params["id"],
    )


# ------------------------------------------------------------- memo helpers
# An order pays a payment request when its memo starts with ``req:<request id>``; the
# payee's bank (commercial_bank.payment_requests) and the payer's wallet share the rule.
REQUEST_TAG: Final = "req:"
_TAGGED = re.compile(re.escape(REQUEST_TAG) + f"({REQUEST_ID.pattern})(?: |$)", re.ASCII)


def request_memo(request_id: str, memo: str = "") -> str:
    """The memo of an order that pays request `request_id`: ``req:<id>``, then a space
    and `memo` if there is one. (The order refuses it if it is over 140 characters.)"""
    if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
        raise ValueError(f"not a payment request id: {request_id!r}")
    tagged = REQUEST_TAG + request_id
    return f"{tagged} {memo}" if memo else tagged


def request_id_in(memo: str) -> str | None:
    """The request id an order's memo starts with (``req:<id>``, then a space or the
    end), or None."""
    if not isinstance(memo, str):
        return None
    match = _TAGGED.match(memo)
    return match.group(1) if match else None


def _qr_code(uri: str) -> Any:
    code = qrcode.QRCode(version=None, error_correction=ERROR_CORRECT_M, border=4)
    code.add_data(uri.encode("utf-8"))
    code.make(fit=True)
    return code


def qr_version(uri: str) -> int:
    """The smallest QR version (1-40) that holds `uri` at error correction M."""
    return int(_qr_code(uri).version)


# Two module rows per text row: (top dark, bottom dark) -> character.
_HALF_BLOCKS = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}


def qr_text(uri: str, *, dark_on_light: bool = False) -> str:
    """The QR code of `uri` as lines of Unicode half blocks, quiet zone included.

    By default the light modules are drawn (ink on a dark terminal background shows as
    light); `dark_on_light=True` draws the dark modules, for a light background.
    """
    matrix = [[bool(cell) for cell in row] for row in _qr_code(uri).get_matrix()]
    if len(matrix) % 2:
        matrix.append([False] * len(matrix[0]))
    lines = []
    for top, bottom in zip(matrix[::2], matrix[1::2], strict=True):
        lines.append("".join(
            _HALF_BLOCKS[(t, b) if dark_on_light else (not t, not b)]
            for t, b in zip(top, bottom, strict=True)
        ))
    return "\n".join(lines)
