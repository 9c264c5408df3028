"""cbdc.httpsig's fast path agrees with the library path it stands in for.

`verify_request` tries a strict fast path for the project's own signature layout and
falls back to the library path (the reference) for anything else. The contract is that
the fast path accepts only what the reference accepts, with the same facts, so
`verify_request` answers exactly as the reference does: the same VerifiedSignature, or
the same refusal reason and component. Likewise `sign_request`'s fast signer writes the
very headers the library signer writes (the signature itself is randomised ECDSA, so
it is compared by verifying it, with the library's own verifier too).
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable
from types import SimpleNamespace

import pytest
from http_message_signatures import HTTPMessageVerifier
from http_message_signatures.algorithms import ECDSA_P256_SHA256
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from cbdc.httpsig import (
    COVERED_COMPONENTS,
    KeyResolver,
    SignatureRejected,
    VerifiedSignature,
    _sign_fast,
    _sign_with_library,
    _verify_fast,
    _verify_with_library,
    sign_request,
    verify_request,
)
from cbdc.signing import P256_ORDER, SigningKey, VerifyingKey

KEY = SigningKey.generate()
OTHER_KEY = SigningKey.generate()
KEY_ID = "banka-2024"
CREATED = 1_700_000_000
EXAMPLES = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

Outcome = tuple[str, object, object]


def keys(key_id: str) -> VerifyingKey | None:
    return {KEY_ID: KEY.public, "other.key": OTHER_KEY.public}.get(key_id)


def outcome(check: Callable[[], VerifiedSignature]) -> Outcome:
    """What a verifier said: accepted with these facts, or refused for this reason."""
    try:
        verified = check()
    except SignatureRejected as exc:
        return ("refused", exc.reason, exc.component)
    return ("accepted", verified, None)


def both(method: str, url: str, headers: CIMultiDict[str], body: bytes,
         now: float) -> tuple[Outcome, Outcome]:
    """(verify_request's answer, the library path's answer) for one request."""
    fast = outcome(lambda: verify_request(method, url, headers, body, resolve_key=keys, now=now))
    reference = outcome(lambda: _verify_with_library(method, url, headers, body,
                                                     resolve_key=keys, now=now))
    return fast, reference


# ------------------------------------------------------------- strategies
_PCHAR = "ABCXYZabcxyz0189-._~!$&'()*+,;=:@"
segments = st.lists(
    st.one_of(st.text(alphabet=_PCHAR, min_size=1, max_size=6),
              st.sampled_from(["%2F", "%7e", "%41", "%e4%b8%ad"])),
    min_size=1, max_size=3).map("".join)
paths = st.lists(segments, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))
queries = st.one_of(
    st.just(""), st.just("?"),
    st.lists(st.tuples(segments, segments), min_size=1, max_size=3).map(
        lambda pairs: "?" + "&".join(f"{k}={v}" for k, v in pairs)),
)
hosts = st.sampled_from(["127.0.0.1:8700", "central.test", "central.test:80", "10.0.0.7"])
urls = st.builds(lambda host, path, query: f"http://{host}{path}{query}", hosts, paths, queries)
methods = st.sampled_from(["POST", "GET", "PUT", "DELETE"])
bodies = st.binary(max_size=200)
idempotency_keys = st.text(alphabet="abcdef0123456789-ABC_:./", min_size=1, max_size=64)
nonces = st.text(alphabet="ABCxyz0189_-", min_size=22, max_size=40)
key_ids = st.sampled_from([KEY_ID, "other.key", "nobody"])
# Seconds from `created` to the verifier's clock: mostly fresh, sometimes just outside
# the window (5 s of skew before, 60 s of age plus 5 s of skew after).
AGES = st.one_of(st.integers(min_value=-5, max_value=65), st.integers(min_value=-10, max_value=70))


@st.composite
def requests(draw: st.DrawFn) -> dict[str, object]:
    """A request signed by one of the two signers, with its parts."""
    method, url, body = draw(methods), draw(urls), draw(bodies)
    idempotency_key, nonce, key_id = draw(idempotency_keys), draw(nonces), draw(key_ids)
    key = OTHER_KEY if key_id == "other.key" else KEY
    signer = draw(st.sampled_from([_sign_fast, _sign_with_library]))
    signed = signer(method, url, idempotency_key, body, key_id, key, CREATED, nonce)
    assert signed is not None  # every drawn request is inside the fast path's subset
    headers = {"Idempotency-Key": idempotency_key, "Content-Type": "application/json"} | signed
    return {"method": method, "url": url, "body": body, "headers": headers}


# ------------------------------------------------------------------ signing
@EXAMPLES
@given(methods, urls, bodies, idempotency_keys, nonces)
def test_the_fast_signer_writes_the_library_signers_headers(
    method: str, url: str, body: bytes, idempotency_key: str, nonce: str
) -> None:
    fast = _sign_fast(method, url, idempotency_key, body, KEY_ID, KEY, CREATED, nonce)
    library = _sign_with_library(method, url, idempotency_key, body, KEY_ID, KEY, CREATED, nonce)
    assert fast is not None
    assert fast.keys() == library.keys()
    assert fast["Content-Digest"] == library["Content-Digest"]
    assert fast["Signature-Input"] == library["Signature-Input"]
    # The library's own verifier, with no policy of ours around it, accepts the result.
    message = SimpleNamespace(method=method, url=url,
                              headers={"Idempotency-Key": idempotency_key} | fast)
    verifier = HTTPMessageVerifier(signature_algorithm=ECDSA_P256_SHA256,
                                   key_resolver=KeyResolver(verifying=keys))
    verifier.validate_created_and_expires = lambda *args, **kwargs: None  # type: ignore[method-assign]
    [result] = verifier.verify(message, max_age=None, require_components=COVERED_COMPONENTS)
    assert result.parameters["nonce"] == nonce


@pytest.mark.parametrize("url", [
    "http://[::1]:8700/v1/transfers",  # IPv6 host
    "http://central.test/v1/transfers#frag",  # a fragment
    "HTTP://central.test/v1/transfers",  # upper-case scheme
    "http://user@central.test/v1/transfers",  # user information
])
def test_urls_outside_the_fast_subset_are_signed_by_the_library(url: str) -> None:
    assert _sign_fast("POST", url, "idem-1", b"{}", KEY_ID, KEY, CREATED, "n" * 22) is None
    headers = {"Idempotency-Key": "idem-1"}
    headers |= sign_request("POST", url, headers, b"{}", key_id=KEY_ID, key=KEY, created=CREATED)
    assert verify_request("POST", url, headers, b"{}", resolve_key=keys, now=CREATED).key_id \
        == KEY_ID


def test_a_key_on_another_curve_is_left_to_the_library_which_refuses_it() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    p384 = SigningKey(ec.generate_private_key(ec.SECP384R1()))
    assert _sign_fast("POST", "http://c.test/v1/x", "k", b"", KEY_ID, p384, CREATED,
                      "n" * 22) is None
    with pytest.raises(ValueError, match="cannot be signed"):
        sign_request("POST", "http://c.test/v1/x", {"Idempotency-Key": "k"}, b"",
                     key_id=KEY_ID, key=p384)


# ---------------------------------------------------------------- verifying
@EXAMPLES
@given(requests(), AGES)
def test_valid_requests_get_the_same_answer_and_the_fast_path_takes_them(
    request: dict[str, object], age: int
) -> None:
    method, url, body = str(request["method"]), str(request["url"]), request["body"]
    assert isinstance(body, bytes)
    headers = CIMultiDict(request["headers"])  # type: ignore[arg-type]
    now = CREATED + age
    fast, reference = both(method, url, headers, body, now)
    assert fast == reference
    fresh = -5 <= age <= 65 and reference[0] == "accepted"
    lines = {name.lower(): [value] for name, value in headers.items()}
    assert (_verify_fast(method, url, lines, body, keys, now) is not None) == fresh


MUTATION_CHARS = st.sampled_from(list('"\\ \t,;=:()0A/+%?#\x00\x7fé-_.a9'))


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str, CIMultiDict[str], bytes]:
    """A valid request with one thing changed: a header's text, a header line added or
    removed, the method, the URL or the body."""
    request = draw(requests())
    method, url, body = str(request["method"]), str(request["url"]), request["body"]
    assert isinstance(body, bytes)
    headers = CIMultiDict(request["headers"])  # type: ignore[arg-type]
    target = draw(st.sampled_from(["Signature-Input", "Signature", "Content-Digest",
                                   "Idempotency-Key", "method", "url", "body", "line"]))
    if target == "line":
        name = draw(st.sampled_from(["Signature-Input", "Signature", "Content-Digest",
                                     "Idempotency-Key"]))
        if draw(st.booleans()):
            headers.add(name, draw(st.sampled_from([headers[name], "cbdc=:AAAA:", "x"])))
        else:
            del headers[name]
        return method, url, headers, body
    own = {"method": method, "url": url, "body": body.decode("latin-1")}
    text = own[target] if target in own else headers[target]
    position = draw(st.integers(min_value=0, max_value=len(text)))
    edit = draw(st.sampled_from(["insert", "delete", "replace", "case"]))
    if edit == "insert":
        text = text[:position] + draw(MUTATION_CHARS) + text[position:]
    elif edit == "delete":
        text = text[:position] + text[position + 1:]
    elif edit == "replace":
        text = text[:position] + draw(MUTATION_CHARS) + text[position + 1:]
    else:
        text = text[:position] + text[position:].swapcase()
    if target == "method":
        method = text
    elif target == "url":
        url = text
    elif target == "body":
        body = text.encode("utf-8")
    else:
        headers[target] = text
    return method, url, headers, body


@EXAMPLES
@given(mutated(), AGES)
def test_mutated_requests_get_the_same_answer_from_both_paths(
    request: tuple[str, str, CIMultiDict[str], bytes], age: int
) -> None:
    method, url, headers, body = request
    fast, reference = both(method, url, headers, body, CREATED + age)
    assert fast == reference


def test_a_high_s_twin_is_treated_alike() -> None:
    """RFC 9421 does not ask for low S, and neither does the library; nor may we."""
    url = "http://central.test/v1/transfers"
    headers = {"Idempotency-Key": "idem-1"}
    headers |= sign_request("POST", url, headers, b"{}", key_id=KEY_ID, key=KEY, created=CREATED)
    raw = base64.b64decode(headers["Signature"][6:-1])
    s = int.from_bytes(raw[32:], "big")
    twin = raw[:32] + (P256_ORDER - s).to_bytes(32, "big")
    headers["Signature"] = f"cbdc=:{base64.b64encode(twin).decode()}:"
    fast, reference = both("POST", url, CIMultiDict(headers), b"{}", CREATED)
    assert fast == reference
    assert fast[0] == "accepted"


PLAIN_URL = "http://central.test/v1/transfers"


def plainly_signed() -> dict[str, str]:
    headers = {"Idempotency-Key": "idem-1"}
    return headers | sign_request("POST", PLAIN_URL, headers, b"{}", key_id=KEY_ID, key=KEY,
                                  created=CREATED)


def assert_left_to_the_library(headers: dict[str, str]) -> None:
    """The fast path declines the request, and the answer is the library's."""
    lines = {name.lower(): [value] for name, value in headers.items()}
    assert _verify_fast("POST", PLAIN_URL, lines, b"{}", keys, CREATED) is None
    fast, reference = both("POST", PLAIN_URL, CIMultiDict(headers), b"{}", CREATED)
    assert fast == reference


def test_non_canonical_base64_in_the_signature_is_left_to_the_library() -> None:
    headers = plainly_signed()
    text = headers["Signature"]
    last = text[-4]  # the last base64 digit before "==", whose 4 low bits are spare
    spare = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    headers["Signature"] = text[:-4] + spare[spare.index(last) + 1] + text[-3:]
    assert_left_to_the_library(headers)


def test_created_with_a_leading_zero_is_left_to_the_library() -> None:
    headers = plainly_signed()
    headers["Signature-Input"] = headers["Signature-Input"].replace(
        f"created={CREATED}", f"created=0{CREATED}")
    assert_left_to_the_library(headers)


def test_the_real_clock_path_still_works() -> None:
    url = "http://central.test/v1/transfers"
    headers = {"Idempotency-Key": "idem-1"}
    headers |= sign_request("POST", url, headers, b"{}", key_id=KEY_ID, key=KEY)
    created = int(datetime.datetime.now(tz=datetime.UTC).timestamp())
    assert abs(verify_request("POST", url, headers, b"{}", resolve_key=keys).created
               - created) <= 2
