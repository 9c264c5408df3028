"""cbdc.httpsig: RFC 9421 signatures between banks, and every way verify refuses one."""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from http_message_signatures import HTTPMessageSigner
from http_message_signatures.algorithms import ECDSA_P256_SHA256
from multidict import CIMultiDict

from cbdc.httpsig import (
    CLOCK_SKEW,
    COVERED_COMPONENTS,
    LABEL,
    MAX_AGE,
    KeyResolver,
    SignatureRejected,
    VerifiedSignature,
    sign_request,
    verify_request,
)
from cbdc.signing import SigningKey, VerifyingKey

KEY = SigningKey.generate()
OTHER_KEY = SigningKey.generate()
KEY_ID = "banka-2024"
URL = "http://central.test:8700/v1/transfers?dry_run=0"
BODY = b'{"id":"0192c4e0-7c1e-7b2a-9d41-000000000001","amount":2500}'
CREATED = 1_700_000_000  # a fixed clock: every test passes `now` explicitly
NONCE = "n0nce-for-the-tests-0123456789"
IDEMPOTENCY = {"Idempotency-Key": "6f1c0e9e-2d1f-4a55-9a0b-6a0d4c1e2f30"}


def keys(key_id: str) -> VerifyingKey | None:
    return KEY.public if key_id == KEY_ID else None


def signed_headers(
    method: str = "POST", url: str = URL, body: bytes = BODY, **kwargs: object
) -> dict[str, str]:
    options: dict[str, object] = {"key_id": KEY_ID, "key": KEY, "created": CREATED}
    options.update(kwargs)
    return IDEMPOTENCY | sign_request(method, url, IDEMPOTENCY, body, **options)  # type: ignore[arg-type]


def verify(
    headers: dict[str, str] | CIMultiDict[str],
    *,
    method: str = "POST",
    url: str = URL,
    body: bytes = BODY,
    now: float = CREATED + 1,
    resolve_key: Callable[[str], VerifyingKey | None] = keys,
) -> VerifiedSignature:
    return verify_request(method, url, headers, body, resolve_key=resolve_key, now=now)


def rejection(headers: dict[str, str], **kwargs: object) -> SignatureRejected:
    with pytest.raises(SignatureRejected) as caught:
        verify(headers, **kwargs)  # type: ignore[arg-type]
    return caught.value


def library_signed(
    components: tuple[str, ...],
    *,
    nonce: str | None = NONCE,
    include_alg: bool = True,
    label: str = LABEL,
) -> dict[str, str]:
    """Headers signed correctly by the library itself, with a policy we refuse."""

    digest = sign_request("POST", URL, IDEMPOTENCY, BODY, key_id=KEY_ID, key=KEY)["Content-Digest"]
    request = SimpleNamespace(
        method="POST", url=URL, headers=IDEMPOTENCY | {"Content-Digest": digest}
    )
    signer = HTTPMessageSigner(
        signature_algorithm=ECDSA_P256_SHA256, key_resolver=KeyResolver(signing={KEY_ID: KEY})
    )
    signer.sign(
        request,
        key_id=KEY_ID,
        created=datetime.datetime.fromtimestamp(CREATED, tz=datetime.UTC),
        nonce=nonce,
        label=label,
        include_alg=include_alg,
        covered_component_ids=components,
        use_existing_digest=True,  # signed or not, as `components` says
    )
    headers: dict[str, str] = request.headers
    return headers


# ------------------------------------------------------------------- good ones
def test_a_signed_request_verifies_and_names_its_key_nonce_and_time() -> None:
    headers = signed_headers(nonce=NONCE)
    assert verify(headers) == VerifiedSignature(key_id=KEY_ID, nonce=NONCE, created=CREATED)


def test_the_signature_headers_have_the_agreed_shape() -> None:
    headers = signed_headers(nonce=NONCE)
    digest = base64.b64encode(hashlib.sha256(BODY).digest()).decode()
    assert headers["Content-Digest"] == f"sha-256=:{digest}:"
    assert headers["Signature-Input"] == (
        'cbdc=("@method" "@path" "@query" "content-digest" "idempotency-key")'
        f';created={CREATED};keyid="{KEY_ID}";alg="ecdsa-p256-sha256";nonce="{NONCE}"'
    )
    assert re.fullmatch(r"cbdc=:[A-Za-z0-9+/]{86}==:", headers["Signature"])  # 64 bytes: r || s


def test_each_signature_gets_a_fresh_url_safe_nonce_of_128_bits_or_more() -> None:
    nonces = {verify(signed_headers()).nonce for _ in range(20)}
    assert len(nonces) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22,}", nonce) for nonce in nonces)


def test_created_defaults_to_now() -> None:
    headers = IDEMPOTENCY | sign_request("GET", URL, IDEMPOTENCY, b"", key_id=KEY_ID, key=KEY)
    verify_request("GET", URL, headers, b"", resolve_key=keys)  # the real clock, both sides


def test_an_empty_body_is_signed_too() -> None:
    headers = signed_headers("GET", "http://central.test/v1/positions", b"")
    assert verify(headers, method="GET", url="http://central.test/v1/positions", body=b"")


def test_header_names_are_case_insensitive_and_multidicts_work() -> None:
    headers = CIMultiDict((name.lower(), value) for name, value in signed_headers().items())
    assert verify(headers).key_id == KEY_ID


def test_the_authority_is_not_covered_so_a_proxy_may_rewrite_the_host() -> None:
    headers = signed_headers()
    assert verify(headers, url="https://10.0.0.7/v1/transfers?dry_run=0").key_id == KEY_ID


def test_only_the_cbdc_label_is_considered() -> None:
    headers = signed_headers()
    headers["Signature-Input"] += ', proxy=("@method");created=1;keyid="edge"'
    headers["Signature"] += ", proxy=:AAAA:"
    assert verify(headers).key_id == KEY_ID


def test_signing_needs_an_idempotency_key() -> None:
    with pytest.raises(ValueError, match="Idempotency-Key"):
        sign_request("POST", URL, {}, BODY, key_id=KEY_ID, key=KEY)


def test_signing_refuses_a_weak_nonce() -> None:
    with pytest.raises(ValueError, match="nonce"):
        sign_request("POST", URL, IDEMPOTENCY, BODY, key_id=KEY_ID, key=KEY, nonce="abc")


# ---------------------------------------------------------------- tampering
def test_a_tampered_body_does_not_match_its_digest() -> None:
    error = rejection(signed_headers(), body=BODY.replace(b"2500", b"9500"))
    assert error.reason == "the Content-Digest does not match the body"
    assert error.component == "content-digest"


def test_a_tampered_body_with_a_recomputed_digest_fails_the_signature() -> None:
    forged = BODY.replace(b"2500", b"9500")
    headers = signed_headers()
    digest = base64.b64encode(hashlib.sha256(forged).digest()).decode()
    headers["Content-Digest"] = f"sha-256=:{digest}:"
    assert rejection(headers, body=forged).reason == "the signature does not match the request"


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("PUT", URL),  # method
        ("POST", "http://central.test:8700/v1/redemption?dry_run=0"),  # path
        ("POST", "http://central.test:8700/v1/transfers?dry_run=1"),  # query
        ("POST", "http://central.test:8700/v1/transfers"),  # query dropped
    ],
    ids=["method", "path", "query", "query-dropped"],
)
def test_a_changed_method_path_or_query_fails_the_signature(method: str, url: str) -> None:
    error = rejection(signed_headers(), method=method, url=url)
    assert error.reason == "the signature does not match the request"


def test_a_changed_idempotency_key_fails_the_signature() -> None:
    headers = signed_headers() | {"Idempotency-Key": "another-key"}
    assert rejection(headers).reason == "the signature does not match the request"


def test_a_second_idempotency_key_is_refused() -> None:
    headers = CIMultiDict(signed_headers())
    headers.add("Idempotency-Key", "another-key")
    error = rejection(headers)  # type: ignore[arg-type]
    assert error.reason == "the request must carry exactly one Idempotency-Key header"


def test_replay_is_not_refused_here_but_the_nonce_is_returned_for_the_server() -> None:
    headers = signed_headers(nonce=NONCE)
    assert verify(headers).nonce == verify(headers).nonce == NONCE


# --------------------------------------------------------------------- time
def test_a_signature_older_than_max_age_plus_skew_is_refused() -> None:
    headers = signed_headers()
    assert verify(headers, now=CREATED + MAX_AGE + CLOCK_SKEW)
    error = rejection(headers, now=CREATED + MAX_AGE + CLOCK_SKEW + 1)
    assert error.reason == "the signature was created 66 seconds ago, more than the 60 allowed"


def test_a_signature_from_the_future_is_refused_beyond_the_skew() -> None:
    headers = signed_headers()
    assert verify(headers, now=CREATED - CLOCK_SKEW)
    error = rejection(headers, now=CREATED - CLOCK_SKEW - 1)
    assert error.reason == "the signature was created 6 seconds in the future"


def test_an_expired_signature_is_refused() -> None:
    headers = signed_headers()
    headers["Signature-Input"] += f";expires={CREATED + 10}"
    error = rejection(headers, now=CREATED + 16)
    assert error.reason == "the signature has expired"


# ------------------------------------------------------------------ coverage
@pytest.mark.parametrize("missing", COVERED_COMPONENTS)
def test_every_covered_component_is_required(missing: str) -> None:
    headers = library_signed(tuple(c for c in COVERED_COMPONENTS if c != missing))
    error = rejection(headers)
    assert error.reason == f"the signature does not cover {missing}"
    assert error.component == missing


def test_the_library_signed_control_case_passes() -> None:
    assert verify(library_signed(COVERED_COMPONENTS)).nonce == NONCE


def test_a_signature_without_a_nonce_is_refused() -> None:
    error = rejection(library_signed(COVERED_COMPONENTS, nonce=None))
    assert error.reason == "the signature has no nonce"


def test_a_signature_without_alg_is_refused() -> None:
    error = rejection(library_signed(COVERED_COMPONENTS, include_alg=False))
    assert error.reason == "the signature's alg is not ecdsa-p256-sha256"


def test_a_signature_under_another_label_only_is_refused() -> None:
    error = rejection(library_signed(COVERED_COMPONENTS, label="other"))
    assert error.reason == "the Signature-Input header has no cbdc signature"


# ---------------------------------------------------------------------- keys
def test_an_unknown_key_id_is_refused() -> None:
    error = rejection(signed_headers(key_id="nobody"))
    assert error.reason == "the signing key 'nobody' is not known"


def test_a_signature_by_another_key_is_refused() -> None:
    headers = signed_headers(key=OTHER_KEY)
    assert rejection(headers).reason == "the signature does not match the request"


def test_a_malformed_key_id_is_refused_before_any_lookup() -> None:
    headers = signed_headers()
    headers["Signature-Input"] = headers["Signature-Input"].replace(KEY_ID, "bad key/id")
    looked_up: list[str] = []
    error = rejection(headers, resolve_key=looked_up.append)
    assert error.reason == "the signature's keyid is malformed"
    assert looked_up == []


# ----------------------------------------------------------- malformed headers
@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        ("Signature-Input", None, "the request has no Signature-Input header"),
        ("Signature", None, "the request has no Signature header"),
        ("Signature-Input", "cbdc=(@method", "the Signature-Input header is malformed"),
        ("Signature", "cbdc=:not base64", "the Signature header is malformed"),
        ("Signature", "cbdc=sig", "the cbdc Signature is not a byte sequence"),
        ("Signature", "cbdc=:AAAA:, cbdc=:AAAA:", "the Signature header is malformed"),
        ("Signature", "other=:AAAA:", "the Signature header has no cbdc signature"),
        ("Signature-Input", 'cbdc="@method"',
         "the cbdc Signature-Input is not a list of component names"),
        ("Content-Digest", None, "the request has no Content-Digest header"),
        ("Content-Digest", "sha-256=AAAA", "the Content-Digest header is malformed"),
        ("Content-Digest", "sha-256=:AAAA:", "the Content-Digest header is malformed"),
        ("Content-Digest", "sha-512=:" + "A" * 86 + "==:",
         "the Content-Digest header must hold exactly one sha-256 digest"),
        ("Idempotency-Key", None, "the request must carry exactly one Idempotency-Key header"),
    ],
)
def test_malformed_or_missing_headers_are_refused(
    header: str, value: str | None, reason: str
) -> None:
    headers = signed_headers()
    if value is None:
        del headers[header]
    else:
        headers[header] = value
    error = rejection(headers)
    assert error.reason == reason
    assert error.component == header.lower()


@pytest.mark.parametrize(
    ("parameter", "reason"),
    [
        (";created=?1", "the signature's created time is not an integer"),
        (';nonce="short"', "the signature's nonce is not 22 to 128 URL-safe base64 characters"),
        (';tag="x";extra=1', "the signature has an unexpected parameter 'extra'"),
    ],
)
def test_malformed_parameters_are_refused(parameter: str, reason: str) -> None:
    headers = signed_headers(nonce=NONCE)
    name = parameter[1:].split("=", maxsplit=1)[0]
    text = re.sub(rf';{name}=("[^"]*"|[^;]*)', "", headers["Signature-Input"])
    headers["Signature-Input"] = text + parameter
    assert rejection(headers).reason == reason


def test_a_rejection_is_a_cbdc_error_whose_message_is_the_reason() -> None:
    from cbdc.errors import CbdcError

    error = rejection(signed_headers(), now=CREATED + 3600)
    assert isinstance(error, CbdcError)
    assert str(error) == error.reason


def test_the_key_resolver_hands_the_library_our_cryptography_keys() -> None:
    resolver = KeyResolver(signing={KEY_ID: KEY}, verifying=keys)
    assert resolver.resolve_private_key(KEY_ID) is KEY.private
    assert resolver.resolve_public_key(KEY_ID) == KEY.public.public
    assert resolver.resolve_public_key("nobody") is None
    with pytest.raises(KeyError):
        resolver.resolve_private_key("nobody")
