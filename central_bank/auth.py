"""Who may call: operator banks by signed request, the admin by bearer token.

Operator requests pass, in order: the RFC 9421 signature (method, path, query, content
digest, idempotency key; created within 60 s, 5 s of skew), the key's and the bank's
status, a rate limit per bank, and a claim of the nonce (refused if seen before) and of
the idempotency key (a different body under a used key is a 409). Only then does the
handler run: after the claim is durable, or, for a handler that writes (money moves,
the events feed's cursor), with the claim written in the same transaction as its effect
(`central_bank.request_log`). A refused request writes nothing to the ledger.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from hashlib import sha256

from aiohttp import web

from cbdc.httpsig import SignatureRejected, verify_request
from cbdc.problems import conflict, forbidden, rate_limited, unauthorized
from cbdc.signing import VerifyingKey
from central_bank.operators import OperatorBank, OperatorRegistry
from central_bank.request_log import OTHER_BODY, REPLAYED, Claim, RequestLog

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CONFIRM_KEY_PATH = "/v1/keys/confirm"
SIGNED_BY = web.RequestKey("signed_by_key_id", str)  # the key id that signed it


class TokenBucket:
    """Requests per second per operator, with a burst of one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, who: str) -> float:
        """0 when allowed; else seconds until a request would be."""
        now = time.monotonic()
        tokens, stamp = self._buckets.get(who, (self.rate, now))
        tokens = min(self.rate, tokens + (now - stamp) * self.rate)
        if tokens < 1:
            self._buckets[who] = (tokens, now)
            return (1 - tokens) / self.rate
        self._buckets[who] = (tokens - 1, now)
        return 0.0


def request_hash(request: web.Request, body: bytes) -> bytes:
    return sha256(b"\n".join((request.method.encode(), request.path_qs.encode(), body))).digest()


async def authenticate_operator(request: web.Request, registry: OperatorRegistry,
                                log: RequestLog, limiter: TokenBucket
                                ) -> tuple[OperatorBank, Claim]:
    """The bank that signed this request, after every check, and the request's accepted
    claim, not yet written (`RequestLog.settle` or the ledger writes it); raises a
    problem."""
    body = await request.read()
    found: list[tuple[OperatorBank, str]] = []

    def resolve(key_id: str) -> VerifyingKey | None:
        entry = registry.key(key_id)
        if entry is None:
            return None
        bank, key = entry
        found.append((bank, key.status))
        return key.public

    try:
        verified = verify_request(request.method, str(request.url), request.headers, body,
                                  resolve_key=resolve)
    except SignatureRejected as exc:
        raise unauthorized(f"request signature refused: {exc.reason}") from None
    bank, key_status = found[-1]
    if key_status == "retired":
        raise unauthorized(f"key {verified.key_id} was rotated out; sign with the new key")
    if key_status == "pending" and request.path != CONFIRM_KEY_PATH:
        raise unauthorized(f"key {verified.key_id} is pending: confirm it first "
                           f"(POST {CONFIRM_KEY_PATH} signed with it)")
    if key_status == "active" and request.path == CONFIRM_KEY_PATH:
        raise forbidden("confirm a key by signing with the pending key itself")
    if bank.status != "active":
        raise forbidden(f"operator bank {bank.code} is suspended")
    wait = limiter.take(bank.code)
    if wait:
        raise rate_limited(f"operator bank {bank.code} is over its request rate", wait)
    claim = await log.reserve(
        key_id=verified.key_id, nonce=verified.nonce, created=verified.created,
        operator=bank.code, idempotency_key=request.headers["Idempotency-Key"],
        request_hash=request_hash(request, body))
    if claim.nonce_state == REPLAYED:
        raise unauthorized("this signature's nonce was used before: the request is a replay")
    if claim.body_state == OTHER_BODY:
        await log.settle(claim)  # the nonce is spent all the same
        raise conflict("this Idempotency-Key was used before with a different request")
    request[SIGNED_BY] = verified.key_id
    return bank, claim


def check_admin(request: web.Request, token: str) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        raise unauthorized("admin calls need 'Authorization: Bearer <admin token>'")

