"""cbdc.payment_orders: signed payment orders and cbdc: payment request URIs."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import hypothesis
import pytest
import qrcode
import rfc8785
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from qrcode.constants import ERROR_CORRECT_M

from cbdc.addresses import WalletAddress, parse_address
from cbdc.payment_orders import (
    DOMAIN,
    INT_MAX,
    MEMO_MAX,
    URI_MAX_BYTES,
    OrderRejected,
    PaymentOrder,
    PaymentRequest,
    PaymentUriError,
    SignedOrder,
    memo_problem,
    parse_payment_uri,
    qr_text,
    qr_version,
    verify,
)
from cbdc.signing import P256_ORDER, SigningKey

# Fixed keys keep the signatures (RFC 6979) the same from run to run; the first is the
# RFC 6979 appendix A.2.5 test key.
KEY = SigningKey(ec.derive_private_key(
    0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721, ec.SECP256R1()
))
OTHER_KEY = SigningKey(ec.derive_private_key(0x1234567890ABCDEF, ec.SECP256R1()))
PAYER = WalletAddress("BANKA", 1234)
PAYEE = WalletAddress("BANKB", 5678)
NOW = 1_767_225_600
ORDER = PaymentOrder(
    payer=PAYER, payee=PAYEE, amount=1234, sequence=7, expires=NOW + 300, memo="奶茶 \"tea\""
)


def envelope(signed: SignedOrder) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(signed.to_json())
    return result


def test_canonical_bytes_are_rfc8785() -> None:
    assert ORDER.canonical_bytes() == rfc8785.dumps({
        "domain": DOMAIN, "payer": "BANKA-000000001234-96", "payee": str(PAYEE),
        "amount": 1234, "sequence": 7, "expires": NOW + 300, "memo": "奶茶 \"tea\"",
    })
    assert ORDER.canonical_bytes().startswith(b'{"amount":1234,"domain":"cbdc/payment-order/v1"')


@settings(max_examples=200, deadline=None)
@given(memo=st.text(max_size=MEMO_MAX).filter(lambda m: memo_problem(m) is None),
       amount=st.integers(1, INT_MAX), sequence=st.integers(1, INT_MAX))
def test_signed_order_json_is_rfc8785_of_the_envelope(memo: str, amount: int,
                                                       sequence: int) -> None:
    # The bank builds the stored JSON around the order's canonical bytes; the rfc8785
    # library stays the reference it must equal, byte for byte.
    order = PaymentOrder(payer=PAYER, payee=PAYEE, amount=amount, sequence=sequence,
                         expires=NOW, memo=memo)
    signed = order.sign(KEY)
    assert signed.to_json_bytes() == rfc8785.dumps(signed.to_dict())
    assert signed.to_json() == rfc8785.dumps(signed.to_dict()).decode("utf-8")
    assert order.canonical_bytes() is order.canonical_bytes()  # computed once
    assert order.canonical_bytes() == rfc8785.dumps(order.to_dict())


TRICKY = st.sampled_from(['"', "\\", "/", "\u2028", "\u2029", "\u00e9", "\u8336",
                          "\U0001f375", "\ufeff", "\ufffd", "'", "<", "\u00a0"])


@settings(max_examples=300, deadline=None)
@given(memo=st.lists(st.one_of(TRICKY, st.characters()), max_size=40).map("".join)
       .filter(lambda m: memo_problem(m) is None),
       payer=st.integers(0, 10**12 - 1), payee=st.integers(0, 10**12 - 1),
       bank=st.from_regex(r"[A-Z0-9]{2,12}", fullmatch=True),
       amount=st.integers(1, INT_MAX), expires=st.integers(0, INT_MAX))
def test_the_fast_canonical_form_is_the_libraries(memo: str, payer: int, payee: int,
                                                  bank: str, amount: int,
                                                  expires: int) -> None:
    # canonical_bytes writes orders of this domain itself; rfc8785 is the reference.
    hypothesis.assume(payer != payee)
    order = PaymentOrder(payer=WalletAddress(bank, payer), payee=WalletAddress("BANKB", payee),
                         amount=amount, sequence=amount, expires=expires, memo=memo)
    assert order.canonical_bytes() == rfc8785.dumps(order.to_dict())


def test_an_order_of_another_domain_is_written_by_the_library() -> None:
    order = PaymentOrder(payer=PAYER, payee=PAYEE, amount=5, sequence=1, expires=NOW,
                         domain="other\u0001\"domain\u2028")
    assert order.canonical_bytes() == rfc8785.dumps(order.to_dict())


def test_addresses_read_from_a_cache_are_refused_the_same() -> None:
    # The canonical spelling is cached after a first read; other spellings still fail
    # with the same reason however often they come.
    for _ in range(2):
        assert SignedOrder.from_json(json.dumps(with_order())).order.payer == PAYER
        assert rejected(with_order(payer="banka-000000001234-96")).field == "payer"
        assert rejected(with_order(payer="BANKA-000000001234-97")).field == "payer"


def test_sign_verify_round_trip() -> None:
    signed = ORDER.sign(KEY)
    assert signed == ORDER.sign(KEY)  # deterministic
    verify(signed, KEY.public, now=NOW)
    again = SignedOrder.from_json(signed.to_json())
    assert again == signed
    verify(again, KEY.public, now=NOW)
    assert SignedOrder.from_json(signed.to_json().encode()) == signed
    assert SignedOrder.from_dict(signed.to_dict()) == signed


def test_signature_is_base64url_without_padding() -> None:
    signed = ORDER.sign(KEY)
    text = envelope(signed)["signature"]
    assert not set(text) & set("=+/")
    assert base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)) == signed.signature


def test_digest_names_the_order() -> None:
    assert len(ORDER.digest()) == 64
    assert ORDER.digest() != dataclasses.replace(ORDER, sequence=8).digest()


CHANGES: list[tuple[str, Any]] = [
    ("payer", "BANKA-000000001235-" + WalletAddress("BANKA", 1235).check_digits),
    ("payee", str(WalletAddress("BANKC", 5678))),
    ("amount", 1235),
    ("amount", 123_400),
    ("sequence", 8),
    ("expires", NOW + 301),
    ("memo", "奶茶 \"tea\" "),
    ("memo", ""),
]


@pytest.mark.parametrize(("field", "value"), CHANGES)
def test_changing_any_field_breaks_the_signature(field: str, value: Any) -> None:
    tampered = envelope(ORDER.sign(KEY))
    assert tampered["order"][field] != value
    tampered["order"][field] = value
    signed = SignedOrder.from_json(json.dumps(tampered))
    with pytest.raises(OrderRejected) as caught:
        verify(signed, KEY.public, now=NOW)
    assert caught.value.reason == "bad_signature"


def test_changing_the_domain_is_wrong_domain() -> None:
    tampered = envelope(ORDER.sign(KEY))
    tampered["order"]["domain"] = "cbdc/payment-request/v1"
    with pytest.raises(OrderRejected) as caught:
        verify(SignedOrder.from_json(json.dumps(tampered)), KEY.public, now=NOW)
    assert caught.value.reason == "wrong_domain"


def test_a_validly_signed_order_for_another_domain_is_refused() -> None:
    other = dataclasses.replace(ORDER, domain="cbdc/something-else/v1").sign(KEY)
    assert KEY.public.verify(other.signature, other.order.canonical_bytes())
    with pytest.raises(OrderRejected) as caught:
        verify(other, KEY.public, now=NOW)
    assert (caught.value.reason, caught.value.field) == ("wrong_domain", "domain")


def test_another_key_is_bad_signature() -> None:
    with pytest.raises(OrderRejected) as caught:
        verify(ORDER.sign(OTHER_KEY), KEY.public, now=NOW)
    assert caught.value.reason == "bad_signature"


def test_the_high_s_twin_is_refused() -> None:
    signed = ORDER.sign(KEY)
    r, s = decode_dss_signature(signed.signature)
    twin = encode_dss_signature(r, P256_ORDER - s)
    # The twin is a valid ECDSA signature, yet refused: one signature per order.
    KEY.public.public.verify(twin, ORDER.canonical_bytes(), ec.ECDSA(hashes.SHA256()))
    high = dataclasses.replace(signed, signature=twin)
    with pytest.raises(OrderRejected) as caught:
        verify(high, KEY.public, now=NOW)
    assert caught.value.reason == "bad_signature"
    # ...also when it arrives as JSON.
    wire = envelope(signed)
    wire["signature"] = base64.urlsafe_b64encode(twin).rstrip(b"=").decode()
    with pytest.raises(OrderRejected, match="signature does not match"):
        verify(SignedOrder.from_json(json.dumps(wire)), KEY.public, now=NOW)


def test_expiry() -> None:
    signed = ORDER.sign(KEY)
    verify(signed, KEY.public, now=ORDER.expires - 1)
    for now in (ORDER.expires, ORDER.expires + 3600):
        with pytest.raises(OrderRejected) as caught:
            verify(signed, KEY.public, now=now)
        assert (caught.value.reason, caught.value.field) == ("expired", "expires")


def test_a_bad_signature_is_reported_before_expiry() -> None:
    with pytest.raises(OrderRejected) as caught:
        verify(ORDER.sign(OTHER_KEY), KEY.public, now=ORDER.expires + 1)
    assert caught.value.reason == "bad_signature"


def test_reordered_and_re_escaped_json_verifies() -> None:
    signed = ORDER.sign(KEY)
    fields = signed.order.to_dict()
    reordered = {name: fields[name] for name in reversed(list(fields))}
    sig = envelope(signed)["signature"]
    spellings = [
        # keys reversed, pretty-printed, non-ASCII as \u escapes
        json.dumps({"signature": sig, "order": reordered}, indent=2, ensure_ascii=True),
        # every character of the memo and an address escaped
        '{"order": {' + ", ".join(
            f'"{name}": ' + (
                '"' + "".join(f"\\u{ord(c):04x}" for c in value) + '"'
                if isinstance(value, str) and name in {"memo", "payer"}
                else json.dumps(value)
            )
            for name, value in fields.items()
        ) + '}, "signature": "' + sig + '"}',
        # a key written with escapes, spaces everywhere
        ' { "sign\\u0061ture" : "' + sig + '" , "order" : '
        + json.dumps(fields, ensure_ascii=False, separators=(" , ", " : ")) + " } ",
    ]
    for text in spellings:
        assert text != signed.to_json()
        again = SignedOrder.from_json(text)
        assert again == signed
        assert again.order.canonical_bytes() == ORDER.canonical_bytes()
        verify(again, KEY.public, now=NOW)


def rejected(text: str | dict[str, Any]) -> OrderRejected:
    if isinstance(text, dict):
        text = json.dumps(text)
    with pytest.raises(OrderRejected) as caught:
        SignedOrder.from_json(text)
    assert caught.value.reason == "malformed"
    return caught.value


def with_order(**changes: Any) -> dict[str, Any]:
    wire = envelope(ORDER.sign(KEY))
    for name, value in changes.items():
        if value is ...:
            del wire["order"][name]
        else:
            wire["order"][name] = value
    return wire


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": "1234"}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": -1}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": INT_MAX + 1}, "amount"),
        ({"sequence": 0}, "sequence"),
        ({"sequence": "7"}, "sequence"),
        ({"expires": -1}, "expires"),
        ({"expires": None}, "expires"),
        ({"memo": "x" * (MEMO_MAX + 1)}, "memo"),
        ({"memo": "bell\x07"}, "memo"),
        ({"memo": "\u202eevil"}, "memo"),
        ({"memo": None}, "memo"),
        ({"payer": "banka-000000001234-96"}, "payer"),  # not the canonical spelling
        ({"payer": "BANKA-000000001234-97"}, "payer"),
        ({"payee": 42}, "payee"),
        ({"payee": str(PAYER)}, "payee"),  # paying oneself
        ({"domain": ""}, "domain"),
        ({"fee": 1}, "fee"),
        ({"memo": ...}, "memo"),
        ({"sequence": ...}, "sequence"),
    ],
)
def test_malformed_orders_are_refused(changes: dict[str, Any], field: str) -> None:
    assert rejected(with_order(**changes)).field == field


@pytest.mark.parametrize(
    "number", ["1234.0", "1234.5", "1.234e3", "1E3", "NaN", "Infinity", "-Infinity"]
)
def test_floats_are_refused_however_written(number: str) -> None:
    text = json.dumps(with_order(amount=999_999)).replace("999999", number)
    error = rejected(text)
    assert "not valid JSON" in str(error)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        "null",
        '{"order": {}}',
        '{"signature": "AA"}',
        "{" + json.dumps(ORDER.sign(KEY).to_dict())[1:-1] + ', "extra": 1}',
        # a field given twice: which amount was meant?
        json.dumps(with_order())[:-2] + ', "amount": 1}}',
    ],
)
def test_malformed_envelopes_are_refused(text: str) -> None:
    rejected(text)


def test_signature_encodings_other_than_canonical_base64url_are_refused() -> None:
    sig = envelope(ORDER.sign(KEY))["signature"]
    raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    padded = base64.urlsafe_b64encode(raw).decode()
    standard = base64.b64encode(raw).decode().rstrip("=")
    for bad in (padded if padded != sig else sig + "=", "", 42, sig + "!"):
        assert rejected(with_order() | {"signature": bad}).field == "signature"
    # Hex happens to be base64url text too: it reads, but as other bytes, so it fails.
    as_hex = SignedOrder.from_json(json.dumps(with_order() | {"signature": raw.hex()}))
    with pytest.raises(OrderRejected, match="signature does not match"):
        verify(as_hex, KEY.public, now=NOW)
    if standard != sig:  # only differs when the signature has - or _
        assert rejected(with_order() | {"signature": standard}).field == "signature"
    # Unused low bits set: decodes to the same bytes, yet is a second spelling.
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    if len(sig) % 4:
        tweaked = sig[:-1] + last[last.index(sig[-1]) + 1]
        assert rejected(with_order() | {"signature": tweaked}).field == "signature"


def test_building_an_order_checks_it() -> None:
    with pytest.raises(OrderRejected, match="same wallet"):
        PaymentOrder(payer=PAYER, payee=PAYER, amount=1, sequence=1, expires=NOW)
    with pytest.raises(OrderRejected, match="amount must be a whole number, not float"):
        PaymentOrder(payer=PAYER, payee=PAYEE, amount=1.0, sequence=1, expires=NOW)  # type: ignore[arg-type]


# Payment requests and cbdc: URIs.

REQUEST = PaymentRequest(
    payee=parse_address("BANKA-000000001234-96"), amount=1234, memo="Tea & cake = 好 50%",
    expires=NOW, request_id="r-1",
)


def test_uri_round_trip() -> None:
    uri = REQUEST.to_uri()
    assert uri == (
        "cbdc:BANKA-000000001234-96?amount=1234&memo=Tea%20%26%20cake%20%3D%20"
        "%E5%A5%BD%2050%25&expires=1767225600&id=r-1"
    )
    assert parse_payment_uri(uri) == REQUEST
    assert parse_payment_uri(f"  {uri}\n") == REQUEST


def test_uri_with_only_an_id() -> None:
    request = PaymentRequest(PAYEE, None, "", None, "abc")
    assert request.to_uri() == f"cbdc:{PAYEE}?id=abc"
    assert parse_payment_uri(request.to_uri()) == request


def qr_version_by_qrcode(text: str) -> int:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M)
    code.add_data(text)
    code.make(fit=True)
    return int(code.version)


def test_the_longest_request_fits_a_version_10_qr_code() -> None:
    # Every field at its longest, and the memo as long as the URI allows.
    base = PaymentRequest(
        WalletAddress("ABCDEFGHIJKL", 999_999_999_999), INT_MAX, "", INT_MAX, "x" * 36
    )
    room = URI_MAX_BYTES - len(base.to_uri()) - len("&memo=")
    longest = dataclasses.replace(base, memo="m" * room)
    assert len(longest.to_uri()) == URI_MAX_BYTES
    assert qr_version_by_qrcode(longest.to_uri()) <= 10
    assert qr_version(longest.to_uri()) <= 10
    with pytest.raises(PaymentUriError, match="shorten the memo"):
        dataclasses.replace(base, memo="m" * (room + 1))
    # Typical requests are far smaller.
    assert qr_version_by_qrcode(REQUEST.to_uri()) <= 6


def test_a_long_chinese_memo_is_refused_with_a_reason() -> None:
    with pytest.raises(PaymentUriError, match="QR code holds 213") as caught:
        PaymentRequest(PAYEE, 100, "好" * 40, None, "r")
    assert caught.value.field == "memo"


@pytest.mark.parametrize(
    ("uri", "says", "field"),
    [
        ("https://example.com/pay", "starts with 'cbdc:'", "scheme"),
        ("BANKA-000000001234-96?id=1", "starts with 'cbdc:'", "scheme"),
        ("cbdc:BANKA-000000001234-97?id=1", "check digits do not match", "payee"),
        ("cbdc:?id=1", "is not a wallet address", "payee"),
        (f"cbdc:{PAYEE}", "has no id", "id"),
        (f"cbdc:{PAYEE}?amount=12.34&id=1", "whole number of fen, like 1234 for ¥12.34",
         "amount"),
        (f"cbdc:{PAYEE}?amount=-5&id=1", "whole number of fen", "amount"),
        (f"cbdc:{PAYEE}?amount=0&id=1", "amount must be between 1", "amount"),
        (f"cbdc:{PAYEE}?amount=1e3&id=1", "whole number of fen", "amount"),
        (f"cbdc:{PAYEE}?expires=soon&id=1", "whole number of seconds", "expires"),
        (f"cbdc:{PAYEE}?amount=1&amount=2&id=1", "appears twice", "amount"),
        (f"cbdc:{PAYEE}?fee=1&id=1", "no parameter 'fee'", "fee"),
        (f"cbdc:{PAYEE}?id", "has no value", "id"),
        (f"cbdc:{PAYEE}?id=a%20b", "request id must be", "id"),
        (f"cbdc:{PAYEE}?id=1&memo=%FF", "not percent-encoded UTF-8", "memo"),
        (f"cbdc:{PAYEE}?id=1&memo=%1B%5B2J", "control character", "memo"),
        (f"cbdc:{PAYEE}?id=1&memo=" + "x" * 700, "far too long", None),
    ],
)
def test_bad_uris_say_what_is_wrong(uri: str, says: str, field: str | None) -> None:
    with pytest.raises(PaymentUriError) as caught:
        parse_payment_uri(uri)
    assert says in str(caught.value)
    assert caught.value.field == field


def test_scheme_is_case_insensitive_and_address_lenient() -> None:
    uri = REQUEST.to_uri().replace("cbdc:BANKA-", "CBDC:banka ")
    assert parse_payment_uri(uri) == REQUEST


def test_qr_text_draws_the_code_in_half_blocks() -> None:
    uri = REQUEST.to_uri()
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4)
    code.add_data(uri.encode())
    code.make(fit=True)
    matrix = code.get_matrix()
    for dark_on_light in (False, True):
        lines = qr_text(uri, dark_on_light=dark_on_light).split("\n")
        assert len(lines) == (len(matrix) + 1) // 2
        assert {len(line) for line in lines} == {len(matrix)}
        assert set("".join(lines)) <= set(" ▀▄█")
        # Decode the half blocks back into modules and compare with the library's matrix.
        ink = {" ": (False, False), "▀": (True, False), "▄": (False, True), "█": (True, True)}
        rows: list[list[bool]] = []
        for line in lines:
            pairs = [ink[char] for char in line]
            rows.append([top for top, _ in pairs])
            rows.append([bottom for _, bottom in pairs])
        dark = [[cell == dark_on_light for cell in row] for row in rows[: len(matrix)]]
        assert dark == [[bool(cell) for cell in row] for row in matrix]
