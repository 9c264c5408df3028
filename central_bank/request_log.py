"""Durable memory of signed requests: each nonce once, each idempotency key one body.

Every signed request claims its (key id, nonce) and its (operator, idempotency key,
request hash) before it is handled. Claims that arrive together are written together,
one statement per group (group commit, as the ledger writer does; a few groups may be
on their way at once), and a claim is answered only once PostgreSQL has committed it,
so a replay is refused even after a crash and restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import asyncpg

log = logging.getLogger(__name__)

FRESH, REPLAYED = "fresh", "replayed"
SAME_BODY, NEW_KEY, OTHER_BODY = "same", "new", "other"

_CLAIM = """
WITH nonces AS (
    INSERT INTO request_nonces (key_id, nonce, created)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
    ON CONFLICT DO NOTHING
    RETURNING key_id, nonce
), keys AS (
    INSERT INTO idempotency_keys (operator_code, key, request_hash)
    SELECT * FROM unnest($4::text[], $5::text[], $6::bytea[])
    ON CONFLICT DO NOTHING
    RETURNING operator_code, key
)
SELECT 'n' AS kind, key_id AS a, nonce AS b FROM nonces
UNION ALL
SELECT 'k', operator_code, key FROM keys
"""


@dataclass(slots=True)
class Claim:
    key_id: str
    nonce: str
    created: int
    operator: str
    idempotency_key: str
    request_hash: bytes
    future: asyncio.Future[tuple[str, str]]


def _fail(claims: list[Claim], exc: BaseException) -> None:
    """Tell the claimants still waiting that their claims were not written."""
    for claim in claims:
        if not claim.future.done():
            claim.future.set_exception(exc)


class RequestLog:
    """Group-committed claims of nonces and idempotency keys."""

    def __init__(self, pool: asyncpg.Pool, *, keep_seconds: int = 130,
                 max_in_flight: int = 3) -> None:
        self.pool = pool
        self.keep_seconds = keep_seconds
        self._pending: list[Claim] = []
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._writes: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="request-log")
        self._pruner = asyncio.create_task(self._prune_forever(), name="request-log-pruner")

    async def close(self) -> None:
        for task in (self._task, self._pruner):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for write in list(self._writes):
            write.cancel()
        await asyncio.gather(*self._writes, return_exceptions=True)
        _fail(self._pending, ConnectionError("the request log is closed"))

    async def claim(self, *, key_id: str, nonce: str, created: int, operator: str,
                    idempotency_key: str, request_hash: bytes) -> tuple[str, str]:
        """(FRESH or REPLAYED, SAME_BODY / NEW_KEY / OTHER_BODY), once durable."""
        future: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self._pending.append(Claim(key_id, nonce, created, operator, idempotency_key,
                                   request_hash, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        # Up to `max_in_flight` groups are written at once, each on its own connection:
        # a claim that arrives while a group is being committed starts the next group
        # instead of waiting for that commit. Two groups claiming the same nonce or key
        # are decided by PostgreSQL's unique indexes (the later insert waits for the
        # earlier transaction and then finds the row), as across restarts.
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._pending:
                continue
            await self._slots.acquire()
            claims, self._pending = self._pending, []
            write = asyncio.create_task(self._settle(claims), name="request-log-write")
            self._writes.add(write)
            write.add_done_callback(self._writes.discard)

    async def _settle(self, claims: list[Claim]) -> None:
        try:
            answers = await self._write(claims)
        except asyncio.CancelledError:
            _fail(claims, ConnectionError("the request log is closed"))
            raise
        except Exception as exc:
            log.error("request log: claim batch failed: %s", exc)
            _fail(claims, exc)
            return
        finally:
            self._slots.release()
        for claim, answer in zip(claims, answers, strict=True):
            if not claim.future.done():
                claim.future.set_result(answer)

    async def _write(self, claims: list[Claim]) -> list[tuple[str, str]]:
        # Inside one group the first claimant of a nonce or key wins; the rest are
        # decided against it here, the way the database decides across groups.
        first_nonce: dict[tuple[str, str], int] = {}
        first_key: dict[tuple[str, str], int] = {}
        for index, c in enumerate(claims):
            first_nonce.setdefault((c.key_id, c.nonce), index)
            first_key.setdefault((c.operator, c.idempotency_key), index)
        # Sorted, so that groups written at the same time take their row locks in one
        # order and cannot deadlock on claims they share.
        nonce_claims = [claims[i] for _, i in sorted(first_nonce.items())]
        key_claims = [claims[i] for _, i in sorted(first_key.items())]
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                _CLAIM,
                [c.key_id for c in nonce_claims], [c.nonce for c in nonce_claims],
                [c.created for c in nonce_claims],
                [c.operator for c in key_claims], [c.idempotency_key for c in key_claims],
                [c.request_hash for c in key_claims],
            )
            fresh_nonces = {(r["a"], r["b"]) for r in rows if r["kind"] == "n"}
            new_keys = {(r["a"], r["b"]) for r in rows if r["kind"] == "k"}
            known = [c for c in key_claims if (c.operator, c.idempotency_key) not in new_keys]
            stored: dict[tuple[str, str], bytes] = {}
            if known:
                for r in await conn.fetch(
                    "SELECT operator_code, key, request_hash FROM idempotency_keys "
                    "WHERE (operator_code, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
                    [c.operator for c in known], [c.idempotency_key for c in known],
                ):
                    stored[(r["operator_code"], r["key"])] = bytes(r["request_hash"])
        answers = []
        for index, c in enumerate(claims):
            nonce_key = (c.key_id, c.nonce)
            fresh = first_nonce[nonce_key] == index and nonce_key in fresh_nonces
            key = (c.operator, c.idempotency_key)
            if key in new_keys and first_key[key] == index:
                body = NEW_KEY
            else:
                # The body of record: the stored one, or this group's first claimant's.
                reference = claims[first_key[key]].request_hash if key in new_keys \
                    else stored.get(key)
                body = SAME_BODY if reference == c.request_hash else OTHER_BODY
            answers.append((FRESH if fresh else REPLAYED, body))
        return answers

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(60)
            try:
                async with self.pool.acquire() as conn:
                    await conn.execute("DELETE FROM request_nonces WHERE created < $1",
                                       int(time.time()) - self.keep_seconds)
            except Exception as exc:  # pruning is housekeeping; try again next minute
                log.warning("request log: pruning failed: %s", exc)
