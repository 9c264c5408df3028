"""Wallet login by challenge-response, and the sessions it opens, kept in Redis.

    1. POST a wallet address: the bank answers a fresh random challenge (128 bits,
       base64url), kept `challenge_ttl` seconds and bound to that address.
    2. The wallet signs `login_message(bank, address, challenge)`, the RFC 8785 canonical
       JSON of

           {"domain": "cbdc/login/v1", "bank": "<bank code>", "address": "<address>",
            "challenge": "<challenge>"}

       with its P-256 key (`cbdc.signing`: RFC 6979, low S, DER) and sends the signature
       as base64url without padding.
    3. `login` takes the challenge out of Redis (GETDEL: whatever happens next, each
       challenge gets exactly one attempt), checks it was issued for that address and
       the signature, and opens a session: a 256-bit bearer token that stays valid
       `session_ttl` seconds after its last use.

Redis holds nothing money depends on (design: "Where each store fits"): a session only
lets a wallet read its own data, and payments are signed orders that need none. So when
Redis cannot be reached the calls raise `SessionStoreUnavailable` and the service answers
503 for logins while payments keep working.

Keys, all under the caller's prefix:

    challenge:<challenge>   the address it was issued for           TTL challenge_ttl
    session:<sha256(token)> the address the session belongs to      TTL session_ttl, sliding
    wallet:<address>        set of sha256(token) of its sessions    TTL >= its sessions'

Tokens are stored only as their SHA-256, so a copy of Redis holds no usable token. The
per-wallet set lets `end_all` end every session of a wallet reported lost; it is changed
only by Lua scripts, so a login racing `end_all` cannot leave a session behind that the
set no longer names. (The scripts build keys from the prefix, so they need one Redis
server, not a Redis Cluster.)

Errors:

    CbdcError
    ├── LoginRefused              .reason: "unknown_challenge" | "wrong_address" |
    │                             "bad_signature"; `.problem()` is a 401
    ├── StorageError (store="redis")
    │   └── SessionStoreUnavailable   Redis cannot be reached; `.problem()` is a 503
    └── AddressError              the address is not one of this bank's (cbdc.addresses)
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal, ParamSpec, TypeVar

from aiohttp import hdrs, web
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from cbdc.addresses import WalletAddress, parse_address
from cbdc.errors import CbdcError, StorageError
from cbdc.login import LOGIN_DOMAIN, login_message
from cbdc.problems import ProblemError, problem_type, unauthorized
from cbdc.signing import VerifyingKey

__all__ = [
    "LOGIN_DOMAIN",
    "Challenge",
    "LoginRefused",
    "Session",
    "SessionStoreUnavailable",
    "Sessions",
    "login_message",
    "require_session",
]

CHALLENGE_BYTES: Final = 16  # 128 bits
TOKEN_BYTES: Final = 32  # 256 bits
RETRY_AFTER_S: Final = 5  # what a 503 tells the client to wait

# What a challenge or token handed back by a client may look like before Redis is asked:
# base64url, and short, so a client cannot make keys of its own choosing.
_OPAQUE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]{1,200}")

Reason = Literal["unknown_challenge", "wrong_address", "bad_signature"]

# KEYS[1] session key, KEYS[2] wallet set; ARGV: token digest, address, ttl, session prefix.
# Drops the set's members whose sessions have expired, so the set stays small.
_OPEN = """
for _, member in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('EXISTS', ARGV[4] .. member) == 0 then
    redis.call('SREM', KEYS[2], member)
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
if redis.call('PTTL', KEYS[2]) < 1000 * tonumber(ARGV[3]) then
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return 1
"""

# KEYS[1] session key; ARGV: ttl, wallet set prefix, token digest. Sliding expiry: the
# session and its wallet's set live `ttl` seconds more. Returns the address or nil.
_RESOLVE = """
local address = redis.call('GETEX', KEYS[1], 'EX', ARGV[1])
if not address then
  return false
end
local set = ARGV[2] .. address
redis.call('SADD', set, ARGV[3])
if redis.call('PTTL', set) < 1000 * tonumber(ARGV[1]) then
  redis.call('EXPIRE', set, ARGV[1])
end
return address
"""

# KEYS[1] session key; ARGV: wallet set prefix, token digest. Returns 1 if it was open.
_CLOSE = """
local address = redis.call('GET', KEYS[1])
if not address then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[1] .. address, ARGV[2])
return 1
"""

# KEYS[1] wallet set; ARGV[1] session prefix. Returns how many sessions were open.
_CLOSE_ALL = """
local ended = 0
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  ended = ended + redis.call('DEL', ARGV[1] .. member)
end
redis.call('DEL', KEYS[1])
return ended
"""


class LoginRefused(CbdcError):
    """A login attempt was refused; `reason` says why, `str()` says it to a person."""

    def __init__(self, message: str, *, reason: Reason) -> None:
        super().__init__(message)
        self.reason: Reason = reason

    def problem(self) -> ProblemError:
        """The refusal as a 401 problem, with the same sentence as detail."""
        return unauthorized(self.message)


class SessionStoreUnavailable(StorageError):
    """Redis, where challenges and sessions live, cannot be reached right now."""

    def __init__(self, message: str) -> None:
        super().__init__(message, store="redis")

    def problem(self) -> ProblemError:
        """A 503 with Retry-After: logins wait for Redis; payments do not need it."""
        return ProblemError(
            503,
            problem_type("sessions-unavailable"),
            "Service Unavailable",
            "logging in is not possible right now because the session store cannot be "
            "reached; try again in a few seconds (signed payments still work)",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )


@dataclass(frozen=True, slots=True)
class Challenge:
    """A login challenge; `expires` is in Unix seconds."""

    challenge: str
    expires: int


@dataclass(frozen=True, slots=True)
class Session:
    """An open session: the bearer `token` of wallet `address`, valid until `expires`
    (Unix seconds) unless used before then, which extends it."""

    token: str
    address: str
    expires: int


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _signature_bytes(text: str) -> bytes | None:
    """The DER bytes of base64url text without padding, or None if it is not that."""
    if not isinstance(text, str) or not _BASE64URL.fullmatch(text):
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        return None  # unused low bits set: a second spelling of the same bytes
    return raw


P = ParamSpec("P")
T = TypeVar("T")


def _store_errors(call: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Redis connection failures and timeouts become `SessionStoreUnavailable`."""

    @functools.wraps(call)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await call(*args, **kwargs)
        except (redis_errors.ConnectionError, redis_errors.TimeoutError) as exc:
            raise SessionStoreUnavailable(
                f"the session store (Redis) cannot be reached: {exc}"
            ) from exc

    return wrapper


class Sessions:
    """Login challenges and sessions of one bank's wallets, in Redis under `prefix`.

    Addresses are read with `cbdc.addresses.parse_address` and must be at `bank`; they are
    kept, signed and returned in their canonical form.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        bank: str,
        challenge_ttl: int = 60,
        session_ttl: int = 1800,
    ) -> None:
        WalletAddress(bank, 0)  # AddressError unless `bank` is a bank code
        if type(challenge_ttl) is not int or challenge_ttl < 1:
            raise ValueError(
                f"challenge_ttl must be a whole number of seconds >= 1, not {challenge_ttl!r}"
            )
        if type(session_ttl) is not int or session_ttl < 1:
            raise ValueError(
                f"session_ttl must be a whole number of seconds >= 1, not {session_ttl!r}"
            )
        self._redis = redis
        self.prefix = prefix
        self.bank = bank
        self.challenge_ttl = challenge_ttl
        self.session_ttl = session_ttl
        self._open = redis.register_script(_OPEN)
        self._resolve = redis.register_script(_RESOLVE)
        self._close = redis.register_script(_CLOSE)
        self._close_all = redis.register_script(_CLOSE_ALL)

    # ------------------------------------------------------------------------ keys
    def _challenge_key(self, challenge: str) -> str:
        return f"{self.prefix}challenge:{challenge}"

    def _session_key(self, digest: str) -> str:
        return f"{self.prefix}session:{digest}"

    def _wallet_key(self, address: str) -> str:
        return f"{self.prefix}wallet:{address}"

    def _canonical(self, address: str) -> str:
        return str(parse_address(address, known_banks=(self.bank,)))

    # --------------------------------------------------------------------- login
    @_store_errors
    async def challenge(self, address: str) -> Challenge:
        """A fresh challenge for `address`, valid `challenge_ttl` seconds, usable once."""
        canonical = self._canonical(address)
        challenge = secrets.token_urlsafe(CHALLENGE_BYTES)
        expires = int(time.time()) + self.challenge_ttl
        await self._redis.set(self._challenge_key(challenge), canonical, ex=self.challenge_ttl)
        return Challenge(challenge=challenge, expires=expires)

    @_store_errors
    async def login(
        self, address: str, challenge: str, signature_b64: str, public_key: VerifyingKey
    ) -> Session:
        """Open a session for `address` if `signature_b64` signs its `login_message` for
        `challenge` with `public_key` (the caller looks the wallet's key up).

        The challenge is consumed by the attempt, whatever its outcome.
        """
        canonical = self._canonical(address)
        signature = _signature_bytes(signature_b64)
        if signature is None:
            raise LoginRefused(
                "the login signature must be base64url text without padding",
                reason="bad_signature",
            )
        if not isinstance(challenge, str) or not _OPAQUE.fullmatch(challenge):
            raise _unknown_challenge()
        issued_for = await self._redis.getdel(self._challenge_key(challenge))
        if issued_for is None:
            raise _unknown_challenge()
        if _text(issued_for) != canonical:
            raise LoginRefused(
                f"the login challenge was issued for another wallet, not {canonical}: "
                "ask for a new one",
                reason="wrong_address",
            )
        if not public_key.verify(signature, login_message(self.bank, canonical, challenge)):
            raise LoginRefused(
                f"the login signature does not match the key of wallet {canonical}: "
                "ask for a new challenge and sign it with that wallet's key",
                reason="bad_signature",
            )
        token = secrets.token_urlsafe(TOKEN_BYTES)
        digest = _digest(token)
        expires = int(time.time()) + self.session_ttl
        await self._open(
            keys=[self._session_key(digest), self._wallet_key(canonical)],
            args=[digest, canonical, self.session_ttl, self._session_key("")],
        )
        return Session(token=token, address=canonical, expires=expires)

    # ------------------------------------------------------------------ sessions
    @_store_errors
    async def resolve(self, token: str) -> str | None:
        """The address of the session `token` opened, or None; each use extends it."""
        if not isinstance(token, str) or not _OPAQUE.fullmatch(token):
            return None
        digest = _digest(token)
        address: bytes | str | None = await self._resolve(
            keys=[self._session_key(digest)],
            args=[self.session_ttl, self._wallet_key(""), digest],
        )
        return None if address is None else _text(address)

    @_store_errors
    async def logout(self, token: str) -> bool:
        """End the session of `token`; False if there was none (already ended or expired)."""
        if not isinstance(token, str) or not _OPAQUE.fullmatch(token):
            return False
        digest = _digest(token)
        ended = await self._close(
            keys=[self._session_key(digest)], args=[self._wallet_key(""), digest]
        )
        return bool(ended)

    @_store_errors
    async def end_all(self, address: str) -> int:
        """End every session of wallet `address` (e.g. reported lost); how many were open."""
        canonical = self._canonical(address)
        ended = await self._close_all(
            keys=[self._wallet_key(canonical)], args=[self._session_key("")]
        )
        return int(ended)


def _unknown_challenge() -> LoginRefused:
    return LoginRefused(
        "the login challenge is unknown, already used or expired: ask for a new one",
        reason="unknown_challenge",
    )


def _unauthorized(detail: str, challenge: str) -> ProblemError:
    problem = unauthorized(detail)
    problem.headers["WWW-Authenticate"] = challenge  # RFC 6750 section 3
    return problem


async def require_session(request: web.Request, sessions: Sessions) -> str:
    """The wallet address of the request's ``Authorization: Bearer <token>`` session.

    Raises a 401 `ProblemError` when the header is missing or malformed or the session
    is unknown. `SessionStoreUnavailable` passes through when Redis cannot be reached:
    answer it with its `problem()` (503).
    """
    header = request.headers.get(hdrs.AUTHORIZATION, "").strip()
    if not header:
        raise _unauthorized(
            "log in first: this needs a session token, sent as 'Authorization: Bearer <token>'",
            'Bearer realm="wallet"',
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized(
            "the Authorization header must be 'Bearer <token>', with the token from logging in",
            'Bearer realm="wallet", error="invalid_request"',
        )
    address = await sessions.resolve(token)
    if address is None:
        raise _unauthorized(
            "log in again: the session expired or was ended",
            'Bearer realm="wallet", error="invalid_token"',
        )
    return address
