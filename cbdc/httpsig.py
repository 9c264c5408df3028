"""Signed HTTP requests between operator banks and the central bank (RFC 9421, RFC 9530).

Every operator call carries three headers made by `sign_request`:

    Content-Digest:  sha-256=:<base64 of SHA-256(body)>:
    Signature-Input: cbdc=("@method" "@path" "@query" "content-digest" "idempotency-key")
                     ;created=<unix seconds>;keyid="<key id>";alg="ecdsa-p256-sha256"
                     ;nonce="<random>"
    Signature:       cbdc=:<base64 of r || s>:

`verify_request` checks them strictly and says what is wrong in one sentence:

    CbdcError                       (cbdc.errors)
    └── SignatureRejected           the request's signature is refused (.reason, .component)

The signature covers the method, the path and the query (not the authority, so a bank
may sit behind a proxy that rewrites Host), the body through its digest, and the
idempotency key, so a signed request cannot be replayed as another operation. It does
not remember nonces: the server stores the returned nonce so that a replay is refused
even after a restart.

The cryptography and the signature base come from the `http_message_signatures`
library, pinned to ECDSA P-256 with SHA-256. The policy around it (which label, which
components, which parameters, how old) is checked here first, so each refusal names its
cause, and against an injectable clock: the library reads the wall clock itself, so our
verifier subclass answers its freshness hook with the caller's `now`.

The fast path. Every signature this module makes has one fixed layout (the label, the
five components in that order, then created, keyid, alg and nonce), and parsing and
re-serialising it through the library's Structured Field code costs several times the
ECDSA operation itself. So both sides first try a strict fast path for exactly that
layout: one compiled regular expression reads the Signature-Input, the signature base
is written out directly (for this layout it is a fixed template), and `cryptography`
signs or verifies it. Anything that is not exactly that layout, or that the fast path
would refuse, goes through the library path instead, which stays the reference and
names the precise reason for a refusal. The fast path therefore accepts a subset of
what the library accepts and never refuses on its own (tests/unit/test_httpsig_fast.py
checks that on valid and mutated requests).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import secrets
import time
from base64 import b64decode, b64encode
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import http_sf
from cryptography.exceptions import InvalidSignature as InvalidEcdsaSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    InvalidSignature,
)
from http_message_signatures.algorithms import ECDSA_P256_SHA256

from cbdc.errors import CbdcError
from cbdc.signing import SigningKey, VerifyingKey

__all__ = [
    "CLOCK_SKEW",
    "COVERED_COMPONENTS",
    "LABEL",
    "MAX_AGE",
    "KeyResolver",
    "SignatureRejected",
    "VerifiedSignature",
    "sign_request",
    "signed_headers",
    "verify_request",
]

LABEL = "cbdc"
COVERED_COMPONENTS = ("@method", "@path", "@query", "content-digest", "idempotency-key")
MAX_AGE = 60  # seconds a signature stays acceptable after `created`
CLOCK_SKEW = 5  # seconds of disagreement tolerated between the two clocks
ALGORITHM = ECDSA_P256_SHA256.algorithm_id  # "ecdsa-p256-sha256"

# 128 bits of base64url are 22 characters; the upper bound keeps the nonce store small.
_NONCE = re.compile(r"[A-Za-z0-9_-]{22,128}")
_KEY_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # the key ids cbdc.wire accepts
# Signature metadata RFC 9421 defines; anything else is refused rather than ignored.
_KNOWN_PARAMETERS = frozenset({"alg", "created", "expires", "keyid", "nonce", "tag"})


class SignatureRejected(CbdcError):
    """A request's HTTP message signature is missing, malformed, stale or wrong.

    `reason` is one sentence for a person (also the message); `component` names the
    header or covered component at fault when there is one (e.g. ``"content-digest"``).
    """

    def __init__(self, reason: str, component: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.component = component


@dataclass(frozen=True, slots=True)
class VerifiedSignature:
    """What a valid signature proves: who signed, with which nonce, and when."""

    key_id: str
    nonce: str
    created: int


class KeyResolver(HTTPSignatureKeyResolver):
    """Hands our `cbdc.signing` keys to the library, which wants `cryptography` key objects.

    `signing` maps key ids to private keys (for signing); `verifying` looks a key id up
    and returns None when it is unknown (for verifying).
    """

    def __init__(
        self,
        *,
        signing: Mapping[str, SigningKey] | None = None,
        verifying: Callable[[str], VerifyingKey | None] | None = None,
    ) -> None:
        self._signing = dict(signing or {})
        self._verifying = verifying

    def resolve_private_key(self, key_id: str) -> ec.EllipticCurvePrivateKey:
        try:
            return self._signing[key_id].private
        except KeyError:
            raise KeyError(f"no signing key with id {key_id!r}") from None

    def resolve_public_key(self, key_id: str) -> ec.EllipticCurvePublicKey | None:
        key = self._verifying(key_id) if self._verifying is not None else None
        return key.public if key is not None else None


@dataclass
class _Message:
    """The request view the library reads: an uppercase method, an absolute URL, headers."""

    method: str
    url: str
    headers: dict[str, str]


class _Verifier(HTTPMessageVerifier):
    """The library's verifier, strict, and reading time from the caller's clock."""

    max_clock_skew = datetime.timedelta(seconds=CLOCK_SKEW)
    require_created = True
    allow_label_only_selection = False

    def __init__(self, key_resolver: KeyResolver, now: float) -> None:
        super().__init__(signature_algorithm=ECDSA_P256_SHA256, key_resolver=key_resolver)
        self._now = now

    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        # The base class compares with datetime.now(); ours uses the `now` verify_request
        # was given, so a test (or a replayed log) sees the same answer every time.
        _check_freshness(sig_input.params, self._now)


# ---------------------------------------------------------------------- signing
def sign_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    key_id: str,
    key: SigningKey,
    created: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The `Content-Digest`, `Signature-Input` and `Signature` headers for a request.

    `url` is the absolute, encoded URL exactly as it will be sent; `headers` must hold
    the request's `Idempotency-Key`. A fresh 128-bit nonce is drawn unless one is given.
    """
    idempotency_key = _only_value(headers, "idempotency-key")
    if idempotency_key is None:
        raise ValueError("the request headers must hold exactly one Idempotency-Key")
    if not _KEY_ID.fullmatch(key_id):
        raise ValueError(f"the key id {key_id!r} is not 1 to 64 of A-Z a-z 0-9 . _ : -")
    if nonce is None:
        nonce = secrets.token_urlsafe(16)
    elif not _NONCE.fullmatch(nonce):
        raise ValueError("a nonce must be 22 to 128 URL-safe base64 characters")
    if created is None:
        created = int(time.time())
    fast = _sign_fast(method.upper(), url, idempotency_key, body, key_id, key, created, nonce)
    if fast is not None:
        return fast
    return _sign_with_library(method, url, idempotency_key, body, key_id, key, created, nonce)


def _sign_with_library(
    method: str,
    url: str,
    idempotency_key: str,
    body: bytes,
    key_id: str,
    key: SigningKey,
    created: int,
    nonce: str,
) -> dict[str, str]:
    """The reference signer: the library builds and serialises everything."""
    message = _Message(method.upper(), url, {"Idempotency-Key": idempotency_key})
    signer = HTTPMessageSigner(
        signature_algorithm=ECDSA_P256_SHA256, key_resolver=KeyResolver(signing={key_id: key})
    )
    try:
        signer.sign(
            message,
            key_id=key_id,
            created=datetime.datetime.fromtimestamp(created, tz=datetime.UTC),
            nonce=nonce,
            label=LABEL,
            include_alg=True,
            covered_component_ids=COVERED_COMPONENTS,
            body=body,  # the library adds Content-Digest (sha-256) for these bytes
        )
    except HTTPMessageSignaturesException as exc:
        raise ValueError(f"the request cannot be signed: {exc}") from exc
    return {
        "Content-Digest": message.headers["Content-Digest"],
        "Signature-Input": message.headers["Signature-Input"],
        "Signature": message.headers["Signature"],
    }


def signed_headers(
    method: str,
    url: str,
    body: bytes,
    *,
    key_id: str,
    key: SigningKey,
    idempotency_key: str,
) -> dict[str, str]:
    """Every header of an operator call: `Idempotency-Key`, `Accept`, `Content-Type`
    (when there is a body) and the three signature headers.

    Plain, synchronous code (no event loop, no HTTP library), so the asyncio client
    (`cbdc.bank_client`) and the Locust users (gevent) sign the same way.
    """
    headers = {
        "Idempotency-Key": idempotency_key,
        "Accept": "application/json, application/problem+json",
    }
    if body:
        headers["Content-Type"] = "application/json"
    return headers | sign_request(method, url, headers, body, key_id=key_id, key=key)


# -------------------------------------------------------------------- verifying
def verify_request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    resolve_key: Callable[[str], VerifyingKey | None],
    now: float | None = None,
) -> VerifiedSignature:
    """Check the `cbdc` signature of a request; raise `SignatureRejected` saying why not.

    `url` is the absolute URL as received (with aiohttp, ``str(request.url)``), `body`
    the raw body bytes. Other signature labels are ignored. Replay is the caller's to
    refuse: store the returned nonce until `created + MAX_AGE + CLOCK_SKEW` has passed.
    """
    if now is None:
        now = time.time()
    lines = _field_lines(headers)
    verified = _verify_fast(method, url, lines, body, resolve_key, now)
    if verified is not None:
        return verified
    return _verify_lines_with_library(method, url, lines, body, resolve_key, now)


def _verify_with_library(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    resolve_key: Callable[[str], VerifyingKey | None],
    now: float,
) -> VerifiedSignature:
    """The reference verifier alone (no fast path): what `verify_request` must agree with."""
    return _verify_lines_with_library(method, url, _field_lines(headers), body, resolve_key, now)


def _verify_lines_with_library(
    method: str,
    url: str,
    lines: Mapping[str, list[str]],
    body: bytes,
    resolve_key: Callable[[str], VerifyingKey | None],
    now: float,
) -> VerifiedSignature:
    """Every policy check in order, then the library's verifier; raises saying why not."""
    components, params = _signature_input(lines)
    signature = _signature(lines)

    covered = {name for name, name_params in components if not name_params}
    for component in COVERED_COMPONENTS:
        if component not in covered:
            raise SignatureRejected(f"the signature does not cover {component}", component)
    key_id, nonce, created = _check_parameters(params)
    _check_freshness(params, now)

    if _only_line(lines, "idempotency-key") is None:
        raise SignatureRejected(
            "the request must carry exactly one Idempotency-Key header", "idempotency-key"
        )
    _check_digest(lines, body)

    verifying_key = resolve_key(key_id)
    if verifying_key is None:
        raise SignatureRejected(f"the signing key {key_id!r} is not known", None)

    # The library sees only our label, so other signatures neither help nor hinder.
    message_headers = {name: ", ".join(values) for name, values in lines.items()}
    message_headers["signature-input"] = _serialize({LABEL: (components, params)})
    message_headers["signature"] = _serialize({LABEL: (signature, {})})
    message = _Message(method, url, message_headers)
    verifier = _Verifier(KeyResolver(verifying={key_id: verifying_key}.get), now)
    try:
        verifier.verify(message, max_age=None, require_components=COVERED_COMPONENTS)
    except InvalidSignature as exc:
        raise SignatureRejected("the signature does not match the request", None) from exc
    return VerifiedSignature(key_id=key_id, nonce=nonce, created=created)


def _field_lines(headers: Mapping[str, str]) -> dict[str, list[str]]:
    """Field lines by lower-case name, in order (a multidict's repeated lines included)."""
    lines: dict[str, list[str]] = {}
    for name, value in headers.items():
        lines.setdefault(name.lower(), []).append(value.strip(" \t"))
    return lines


def _only_value(headers: Mapping[str, str], name: str) -> str | None:
    return _only_line(_field_lines(headers), name)


def _only_line(lines: Mapping[str, list[str]], name: str) -> str | None:
    values = lines.get(name, [])
    return values[0] if len(values) == 1 and values[0] else None


def _refuse_duplicates(key: str, context: str) -> None:
    raise ValueError(f"duplicate {context} key {key!r}")


def _parse(text: str) -> dict[str, tuple[Any, dict[str, Any]]]:
    """A Structured Field Dictionary; ValueError when malformed or a key repeats."""
    parsed = http_sf.parse(
        text.encode("ascii"), tltype="dictionary", on_duplicate_key=_refuse_duplicates
    )
    if not isinstance(parsed, dict):
        raise ValueError("not a dictionary")
    return cast(dict[str, tuple[Any, dict[str, Any]]], parsed)


def _serialize(members: dict[str, tuple[Any, dict[str, Any]]]) -> str:
    return http_sf.ser(cast(Any, members))


def _parse_dictionary(
    lines: Mapping[str, list[str]], name: str, title: str
) -> dict[str, tuple[Any, dict[str, Any]]]:
    values = lines.get(name)
    if not values:
        raise SignatureRejected(f"the request has no {title} header", name)
    try:
        parsed = _parse(", ".join(values))
    except ValueError:  # StructuredFieldError, UnicodeEncodeError and duplicates alike
        raise SignatureRejected(f"the {title} header is malformed", name) from None
    if LABEL not in parsed:
        raise SignatureRejected(f"the {title} header has no {LABEL} signature", name)
    return parsed


def _signature_input(
    lines: Mapping[str, list[str]],
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    members = _parse_dictionary(lines, "signature-input", "Signature-Input")
    value, params = members[LABEL]
    if not isinstance(value, list) or not all(isinstance(item, str) for item, _ in value):
        raise SignatureRejected(
            f"the {LABEL} Signature-Input is not a list of component names", "signature-input"
        )
    return value, params


def _signature(lines: Mapping[str, list[str]]) -> bytes:
    value, _ = _parse_dictionary(lines, "signature", "Signature")[LABEL]
    if not isinstance(value, bytes) or not value:
        raise SignatureRejected(f"the {LABEL} Signature is not a byte sequence", "signature")
    return value


def _check_parameters(params: Mapping[str, Any]) -> tuple[str, str, int]:
    """The key id, nonce and creation time of a well-formed parameter set."""
    unknown = sorted(set(params) - _KNOWN_PARAMETERS)
    if unknown:
        raise SignatureRejected(
            f"the signature has an unexpected parameter {unknown[0]!r}", "signature-input"
        )
    key_id = params.get("keyid")
    if key_id is None:
        raise SignatureRejected("the signature has no keyid", "signature-input")
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise SignatureRejected("the signature's keyid is malformed", "signature-input")
    if params.get("alg") != ALGORITHM:
        raise SignatureRejected(f"the signature's alg is not {ALGORITHM}", "signature-input")
    created = params.get("created")
    if created is None:
        raise SignatureRejected("the signature has no created time", "signature-input")
    if type(created) is not int:  # bool is an int subclass, and a Structured Field Boolean
        raise SignatureRejected("the signature's created time is not an integer", "signature-input")
    nonce = params.get("nonce")
    if nonce is None:
        raise SignatureRejected("the signature has no nonce", "signature-input")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise SignatureRejected(
            "the signature's nonce is not 22 to 128 URL-safe base64 characters", "signature-input"
        )
    expires = params.get("expires")
    if expires is not None and type(expires) is not int:
        raise SignatureRejected("the signature's expires time is not an integer", "signature-input")
    return key_id, nonce, created


def _check_freshness(params: Mapping[str, Any], now: float) -> None:
    created = params.get("created")
    if type(created) is not int:
        raise SignatureRejected("the signature has no created time", "signature-input")
    if created > now + CLOCK_SKEW:
        raise SignatureRejected(
            f"the signature was created {created - now:.0f} seconds in the future",
            "signature-input",
        )
    if created < now - MAX_AGE - CLOCK_SKEW:
        raise SignatureRejected(
            f"the signature was created {now - created:.0f} seconds ago,"
            f" more than the {MAX_AGE} allowed",
            "signature-input",
        )
    expires = params.get("expires")
    if type(expires) is int and expires < now - CLOCK_SKEW:
        raise SignatureRejected("the signature has expired", "signature-input")


def _check_digest(lines: Mapping[str, list[str]], body: bytes) -> None:
    values = lines.get("content-digest")
    if not values:
        raise SignatureRejected("the request has no Content-Digest header", "content-digest")
    if len(values) > 1:
        raise SignatureRejected(
            "the request has more than one Content-Digest header", "content-digest"
        )
    try:
        members = _parse(values[0])
    except ValueError:
        raise SignatureRejected(
            "the Content-Digest header is malformed", "content-digest"
        ) from None
    if set(members) != {"sha-256"}:
        raise SignatureRejected(
            "the Content-Digest header must hold exactly one sha-256 digest", "content-digest"
        )
    claimed, _ = members["sha-256"]
    if not isinstance(claimed, bytes) or len(claimed) != hashlib.sha256().digest_size:
        raise SignatureRejected("the Content-Digest header is malformed", "content-digest")
    if not hmac.compare_digest(claimed, hashlib.sha256(body).digest()):
        raise SignatureRejected("the Content-Digest does not match the body", "content-digest")


# -------------------------------------------------------------------- fast path
# Exactly the layout `_sign_with_library` writes, in the library's own serialisation.
# `created` is a canonical positive Structured Field Integer (no sign, no leading zero,
# at most 15 digits); keyid and nonce use the character sets the policy allows, which
# need no escaping inside a Structured Field String.
_COMPONENT_LIST = '("@method" "@path" "@query" "content-digest" "idempotency-key")'
_FAST_SIGNATURE_INPUT = re.compile(
    re.escape(f"{LABEL}={_COMPONENT_LIST}")
    + r';created=([1-9][0-9]{0,14});keyid="([A-Za-z0-9._:-]{1,64})"'
    + re.escape(f';alg="{ALGORITHM}"')
    + r';nonce="([A-Za-z0-9_-]{22,128})"'
)
# 64 bytes (r || s) in canonical base64: 86 characters, the last with its 4 spare bits
# clear, and two padding characters.
_FAST_SIGNATURE = re.compile(re.escape(f"{LABEL}=:") + r"([A-Za-z0-9+/]{85}[AQgw]==):")
# A subset of the absolute URLs the library's strict parser accepts (RFC 3986): a
# lower-case scheme, a plain host name or IPv4 address and port, no user information
# or fragment, and percent escapes only when well formed. @path and @query are the
# spelling as given, exactly as the library's resolver takes them.
_PCHARS = r"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})"
_FAST_URL = re.compile(
    r"[a-z][a-z0-9+.-]*://[A-Za-z0-9.-]+(?::[0-9]{1,5})?"
    rf"(/(?:{_PCHARS}|/)*)?(?:\?((?:{_PCHARS}|[/?])*))?"
)
_FAST_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_COORDINATE = 32  # bytes of r and of s for P-256


def _fast_target(method: str, url: str) -> tuple[str, str] | None:
    """(@path, @query) of a request inside the fast path's subset, else None."""
    if method not in _FAST_METHODS:
        return None
    match = _FAST_URL.fullmatch(url)
    if match is None:
        return None
    path, query = match.groups()
    return path or "/", "?" + (query or "")


def _fast_field(value: str) -> bool:
    """A field value the fast path may cover as is: printable ASCII, no outer blanks."""
    return bool(value) and value.isascii() and value.isprintable() and value.strip() == value


def _content_digest(body: bytes) -> str:
    return f"sha-256=:{b64encode(hashlib.sha256(body).digest()).decode('ascii')}:"


def _signature_base(
    method: str, path: str, query: str, digest: str, idempotency_key: str, params: str
) -> bytes:
    """RFC 9421 section 2.5 for the fixed layout: one line per component, in order."""
    return (
        f'"@method": {method}\n"@path": {path}\n"@query": {query}\n'
        f'"content-digest": {digest}\n"idempotency-key": {idempotency_key}\n'
        f'"@signature-params": {params}'
    ).encode("ascii")


def _sign_fast(
    method: str,
    url: str,
    idempotency_key: str,
    body: bytes,
    key_id: str,
    key: SigningKey,
    created: int,
    nonce: str,
) -> dict[str, str] | None:
    """The three signature headers, or None when the request is outside the fast path."""
    target = _fast_target(method, url)
    if (
        target is None
        or not _fast_field(idempotency_key)
        or type(created) is not int
        or not 0 < created < 10**15
        or not isinstance(key.private.curve, ec.SECP256R1)
    ):
        return None
    digest = _content_digest(body)
    params = (
        f'{_COMPONENT_LIST};created={created};keyid="{key_id}";alg="{ALGORITHM}"'
        f';nonce="{nonce}"'
    )
    base = _signature_base(method, *target, digest, idempotency_key, params)
    r, s = decode_dss_signature(key.private.sign(base, _ECDSA_SHA256))
    signature = r.to_bytes(_COORDINATE, "big") + s.to_bytes(_COORDINATE, "big")
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{LABEL}={params}",
        "Signature": f"{LABEL}=:{b64encode(signature).decode('ascii')}:",
    }


def _one_line(lines: Mapping[str, list[str]], name: str) -> str | None:
    values = lines.get(name)
    return values[0] if values is not None and len(values) == 1 else None


def _verify_fast(
    method: str,
    url: str,
    lines: Mapping[str, list[str]],
    body: bytes,
    resolve_key: Callable[[str], VerifyingKey | None],
    now: float,
) -> VerifiedSignature | None:
    """The signature's facts when the request has exactly the fixed layout and verifies;
    None for anything else (the library path then decides, and says why it refuses)."""
    signature_input = _one_line(lines, "signature-input")
    signature = _one_line(lines, "signature")
    digest = _one_line(lines, "content-digest")
    idempotency_key = _one_line(lines, "idempotency-key")
    if signature_input is None or signature is None or digest is None or idempotency_key is None:
        return None
    parsed_input = _FAST_SIGNATURE_INPUT.fullmatch(signature_input)
    parsed_signature = _FAST_SIGNATURE.fullmatch(signature)
    target = _fast_target(method, url)
    if parsed_input is None or parsed_signature is None or target is None:
        return None
    created_text, key_id, nonce = parsed_input.groups()
    created = int(created_text)
    if not now - MAX_AGE - CLOCK_SKEW <= created <= now + CLOCK_SKEW:
        return None
    if not _fast_field(idempotency_key):
        return None
    if digest != _content_digest(body):  # a digest of the body is no secret: plain ==
        return None
    verifying_key = resolve_key(key_id)
    if verifying_key is None or not isinstance(verifying_key.public.curve, ec.SECP256R1):
        return None
    raw = b64decode(parsed_signature[1])
    der = encode_dss_signature(
        int.from_bytes(raw[:_COORDINATE], "big"), int.from_bytes(raw[_COORDINATE:], "big")
    )
    params = signature_input[len(LABEL) + 1 :]  # the @signature-params value, as it was signed
    base = _signature_base(method, *target, digest, idempotency_key, params)
    try:
        verifying_key.public.verify(der, base, _ECDSA_SHA256)
    except InvalidEcdsaSignature:
        return None
    return VerifiedSignature(key_id=key_id, nonce=nonce, created=created)
