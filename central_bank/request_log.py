"""Memory of signed requests: each nonce once, each idempotency key one body.

Every signed request claims its (key id, nonce) and its (operator, idempotency key,
request hash) before it is handled. The central bank is the one process that serves its
ledger, so the claims are decided here, in memory and in arrival order:

* a nonce is fresh unless this log has seen it. The nonces of the last `keep_seconds`
  are loaded at start; older ones cannot come back, as their signature's `created` is
  then refused (`cbdc.httpsig.MAX_AGE`);
* an idempotency key keeps the body it was first claimed with. Keys claimed in the last
  `key_memory_seconds` are held in memory with their body's hash. Of every key ever
  claimed (keys are kept for good) the log holds an 8-byte fingerprint, loaded at start
  as the ledger loads its transfer ids: a key whose fingerprint it has not seen is new,
  with no query. Only a key it has seen but no longer holds (a retry, minutes later) is
  read from PostgreSQL, a group of them in one query, before the claims waiting on it
  are decided.

Every claim is decided by `reserve`, then made durable one of two ways, and its
request is answered only after:

* `settle`: written by the log itself, with the claims that arrived together in one
  statement (group commit; a few groups may be on their way at once);
* for a request that writes: its rows (`rows_to_write`) go with the request's effect.
  A money move hands the claim to the ledger with its transfers
  (`LedgerWriter.create_transfers(..., attachment=)`), which writes it inside the
  batch's transaction; an events poll writes it in the statement that acknowledges its
  cursor. The claim and its effect are then durable together or not at all, for one
  commit instead of two. A handler that did not write it (it refused the request first,
  or its commit failed) gives the claim to `settle`, which writes it (or forgets it,
  when that fails too, since then nothing of the request is durable).

So a replay is refused also after a crash and restart: a request whose claim was lost
had no effect either.

The log holds two minutes of claims: at 3,000 requests/s, hundreds of thousands of
them. Python's cyclic collector walks every container it tracks in each full collection,
so none of what is held is such a container: a claim is a struct the collector does not
track (`gc=False`; it refers to no other object), and the maps are keyed by strings, so
neither they nor their entries are ever tracked. Held as tuple-keyed dicts of dataclass
claims, about 35,000 claims made a full collection take 37 ms, growing with the claims
held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from hashlib import blake2b

import asyncpg
import msgspec

from settlement.attachments import AttachedRows

log = logging.getLogger(__name__)

FRESH, REPLAYED = "fresh", "replayed"
SAME_BODY, NEW_KEY, OTHER_BODY = "same", "new", "other"

_INSERTS = (
    "INSERT INTO request_nonces (key_id, nonce, created) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) ON CONFLICT DO NOTHING",
    "INSERT INTO idempotency_keys (operator_code, key, request_hash) "
    "SELECT * FROM unnest($4::text[], $5::text[], $6::bytea[]) ON CONFLICT DO NOTHING",
)
_STORED_KEYS = """
SELECT operator_code, key, request_hash FROM idempotency_keys
WHERE (operator_code, key) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""


def fingerprint(operator: str, key: str) -> int:
    """8 bytes of a key's hash: equal for equal keys; two keys that share one only
    cost a query."""
    digest = blake2b(f"{operator}\n{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class Claim(msgspec.Struct, gc=False, eq=False):
    key_id: str
    nonce: str
    created: int
    operator: str
    idempotency_key: str
    request_hash: bytes
    key_print: int = 0  # the key's fingerprint
    nonce_state: str = ""  # FRESH or REPLAYED, once decided
    body_state: str = ""  # NEW_KEY, SAME_BODY or OTHER_BODY, once decided
    written: bool = False  # durable (or nothing to write)
    taken: float = 0.0  # when the log took hold of its key (monotonic seconds)

    @property
    def nonce_key(self) -> str:
        return _joined(self.key_id, self.nonce)

    @property
    def idempotency(self) -> str:
        return _joined(self.operator, self.idempotency_key)

    @property
    def accepted(self) -> bool:
        return self.nonce_state == FRESH and self.body_state != OTHER_BODY


Waiting = list[tuple[Claim, asyncio.Future[None]]]


def _joined(first: str, second: str) -> str:
    """Two header values as one map key: neither can hold a line feed (HTTP fields and
    structured-field strings exclude control characters), so the pair is unambiguous."""
    return f"{first}\n{second}"


def _fail(waiting: Waiting, exc: BaseException) -> None:
    """Tell the callers still waiting that their claims were not decided or written."""
    for _, future in waiting:
        if not future.done():
            future.set_exception(exc)


def claim_rows(claims: list[Claim]) -> tuple[list[Claim], list[Claim]]:
    """The claims whose nonce, and whose key, still have to be written, sorted: groups
    written at the same time then take their row locks in one order and cannot
    deadlock on a key they share."""
    nonces = sorted((c for c in claims if c.nonce_state == FRESH),
                    key=lambda c: c.nonce_key)
    keys = {c.idempotency: c for c in claims if c.accepted}
    return nonces, [keys[k] for k in sorted(keys)]


def rows_to_write(claims: list[Claim]) -> AttachedRows | None:
    """The claims' rows, as the ledger writes them with a batch (and this log alone)."""
    nonces, keys = claim_rows(claims)
    if not nonces and not keys:
        return None
    return AttachedRows(_INSERTS, (
        [c.key_id for c in nonces], [c.nonce for c in nonces], [c.created for c in nonces],
        [c.operator for c in keys], [c.idempotency_key for c in keys],
        [c.request_hash for c in keys],
    ))


class RequestLog:
    """Claims of nonces and idempotency keys, decided in memory, written durably."""

    def __init__(self, pool: asyncpg.Pool, *, keep_seconds: int = 130,
                 key_memory_seconds: float = 130, max_in_flight: int = 3) -> None:
        self.pool = pool
        self.keep_seconds = keep_seconds
        self.key_memory_seconds = key_memory_seconds
        # Decided claims: nonce -> created, key -> the claim holding it (its request
        # hash, when taken), and both in the order they were taken, to forget them
        # once old. Keys are `Claim.nonce_key` and `Claim.idempotency`.
        self._nonces: dict[str, int] = {}
        self._nonce_ages: deque[tuple[int, str]] = deque()
        self._keys: dict[str, Claim] = {}
        self._key_ages: deque[tuple[float, str]] = deque()
        self._fingerprints: set[int] = set()  # of every key ever claimed
        # Claims waiting for their key to be read, and the reader's wake-up.
        self._undecided: Waiting = []
        self._read_wakeup = asyncio.Event()
        # Claims waiting to be written, and the writer's wake-up and slots.
        self._unwritten: Waiting = []
        self._write_wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._writes: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Load the nonces that could still come back and the keys' fingerprints, and
        start working."""
        cutoff = int(time.time()) - self.keep_seconds
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT key_id, nonce, created FROM request_nonces WHERE created >= $1 "
                "ORDER BY created", cutoff)
            for row in rows:
                self._remember_nonce(_joined(row["key_id"], row["nonce"]), row["created"])
            async for row in conn.cursor("SELECT operator_code, key FROM idempotency_keys",
                                         prefetch=10_000):
                self._fingerprints.add(fingerprint(row[0], row[1]))
        self._tasks = [asyncio.create_task(self._read_forever(), name="request-log-read"),
                       asyncio.create_task(self._write_forever(), name="request-log-write"),
                       asyncio.create_task(self._prune_forever(), name="request-log-prune")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for write in list(self._writes):
            write.cancel()
        await asyncio.gather(*self._writes, return_exceptions=True)
        _fail(self._undecided + self._unwritten, ConnectionError("the request log is closed"))

    # ------------------------------------------------------------------ deciding
    async def reserve(self, *, key_id: str, nonce: str, created: int, operator: str,
                      idempotency_key: str, request_hash: bytes) -> Claim:
        """The claim decided (`nonce_state`, `body_state`) and, if accepted, held, but
        not yet written: write it with the request's effect or through `settle`."""
        claim = Claim(key_id, nonce, created, operator, idempotency_key, request_hash,
                      fingerprint(operator, idempotency_key))
        if claim.idempotency in self._keys or claim.key_print not in self._fingerprints:
            # Decided against memory alone: the key is held, or was never claimed. Only
            # a key seen but no longer held waits for a read, and a waiting claim is
            # of such a key, so none of them can be decided otherwise by this one.
            self._decide(claim, {})
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._undecided.append((claim, future))
            self._read_wakeup.set()
            try:
                await future
            except asyncio.CancelledError:
                self.forget(claim)  # decided just before the caller went away, maybe
                raise
        return claim

    def _decide(self, claim: Claim, stored: dict[str, bytes]) -> None:
        """Decide against what this log holds, then what PostgreSQL held (`stored`)."""
        key = claim.idempotency
        held = self._keys.get(key)
        known = held.request_hash if held is not None else stored.get(key)
        if known is None:
            claim.body_state = NEW_KEY
        else:
            claim.body_state = SAME_BODY if known == claim.request_hash else OTHER_BODY
        if claim.nonce_key in self._nonces:
            claim.nonce_state = REPLAYED
            claim.written = True  # nothing of it to write
            return
        claim.nonce_state = FRESH
        self._remember_nonce(claim.nonce_key, claim.created)
        if claim.accepted and held is None:  # accepted: its hash is the known one
            self._fingerprints.add(claim.key_print)
            claim.taken = time.monotonic()
            self._keys[key] = claim
            self._key_ages.append((claim.taken, key))

    def _remember_nonce(self, nonce: str, created: int) -> None:
        self._nonces[nonce] = created
        self._nonce_ages.append((created, nonce))

    async def _read_forever(self) -> None:
        # One read at a time, and the claims decided in the order they arrived: a claim
        # that arrives during a read waits for the next, so two claims of one key are
        # never decided against each other's absence.
        while True:
            await self._read_wakeup.wait()
            self._read_wakeup.clear()
            waiting, self._undecided = self._undecided, []
            if not waiting:
                continue
            unknown = {(c.operator, c.idempotency_key) for c, _ in waiting
                       if c.idempotency not in self._keys and c.key_print in self._fingerprints}
            try:
                stored = await self._stored_keys(unknown) if unknown else {}
            except Exception as exc:
                log.error("request log: reading idempotency keys failed: %s", exc)
                _fail(waiting, exc)
                continue
            for claim, future in waiting:
                if not future.done():  # its caller went away: nothing to decide
                    self._decide(claim, stored)
                    future.set_result(None)

    async def _stored_keys(self, keys: set[tuple[str, str]]) -> dict[str, bytes]:
        """The stored request hashes of (operator, idempotency key) pairs, by
        `Claim.idempotency`."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_STORED_KEYS, [o for o, _ in keys], [k for _, k in keys])
        return {_joined(r["operator_code"], r["key"]): bytes(r["request_hash"]) for r in rows}

    # ------------------------------------------------------------------- writing
    async def settle(self, claim: Claim) -> None:
        """Make a claim durable that its request's effect did not carry; if that fails,
        forget it (nothing of the request is durable) and raise."""
        if claim.written:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unwritten.append((claim, future))
        self._write_wakeup.set()
        try:
            await future
        except BaseException:
            self.forget(claim)
            raise

    def forget(self, claim: Claim) -> None:
        """Release what an unwritten claim holds: its request had no durable effect."""
        if claim.written or claim.nonce_state != FRESH:
            return
        if self._nonces.get(claim.nonce_key) == claim.created:
            del self._nonces[claim.nonce_key]
        if self._keys.get(claim.idempotency) is claim:
            del self._keys[claim.idempotency]

    async def _write_forever(self) -> None:
        while True:
            await self._write_wakeup.wait()
            self._write_wakeup.clear()
            if not self._unwritten:
                continue
            await self._slots.acquire()
            group, self._unwritten = self._unwritten, []
            write = asyncio.create_task(self._write_group(group), name="request-log-write")
            self._writes.add(write)
            write.add_done_callback(self._writes.discard)

    async def _write_group(self, group: Waiting) -> None:
        try:
            rows = rows_to_write([claim for claim, _ in group])
            if rows is not None:
                await self.pool.execute(rows.statement(), *rows.arguments)
        except asyncio.CancelledError:
            _fail(group, ConnectionError("the request log is closed"))
            raise
        except Exception as exc:
            log.error("request log: claim group failed: %s", exc)
            _fail(group, exc)
            return
        finally:
            self._slots.release()
        for claim, future in group:
            claim.written = True
            if not future.done():
                future.set_result(None)

    # ------------------------------------------------------------------ pruning
    def forget_old(self) -> None:
        """Drop nonces too old to come back, and keys held longer than their memory."""
        nonce_cutoff = int(time.time()) - self.keep_seconds
        ages = self._nonce_ages
        while ages and ages[0][0] < nonce_cutoff:
            created, nonce = ages.popleft()
            if self._nonces.get(nonce) == created:
                del self._nonces[nonce]
        key_cutoff = time.monotonic() - self.key_memory_seconds
        key_ages = self._key_ages
        while key_ages and key_ages[0][0] < key_cutoff:
            taken, key = key_ages[0]
            held = self._keys.get(key)
            if held is not None and held.taken == taken:
                if not held.written and taken > key_cutoff - self.key_memory_seconds:
                    break  # not durable yet: PostgreSQL could not answer for it
                del self._keys[key]
            key_ages.popleft()

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(10)
            self.forget_old()
            try:
                async with self.pool.acquire() as conn:
                    await conn.execute("DELETE FROM request_nonces WHERE created < $1",
                                       int(time.time()) - self.keep_seconds)
            except Exception as exc:  # pruning is housekeeping; try again next time
                log.warning("request log: pruning failed: %s", exc)
