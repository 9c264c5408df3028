"""Customers, wallets and deposit accounts of one commercial bank (PostgreSQL).

The ledger holds balances; this holds who owns what: a wallet's public key, its class,
its status and its linked deposit account. Wallet records are cached after first use;
this process is the only writer of its bank's tables.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import asyncpg

from cbdc.problems import conflict, not_found, validation
from cbdc.signing import VerifyingKey
from settlement.core.idmap import IdMap


@dataclass(frozen=True, slots=True)
class Wallet:
    number: int
    customer_id: int
    public_key: VerifyingKey
    wallet_class: int
    status: str  # active | frozen | lost | closed
    deposit_number: int | None
    phone: str
    name: str | None
    resident_id: str | None
    bank_card: bool
    in_person: bool


def parse_public_key(pem: str) -> VerifyingKey:
    try:
        return VerifyingKey.from_pem(pem.encode())
    except (ValueError, TypeError):
        raise validation("public_key_pem", "pem-p256",
                         "public_key_pem must be a PEM-encoded ECDSA P-256 public key") from None


_SELECT = """
SELECT w.number, w.customer_id, w.public_key, w.class, w.status, w.deposit_number,
       c.phone, c.name, c.resident_id, c.bank_card, c.in_person
FROM wallets w JOIN customers c ON c.id = w.customer_id
"""


def _wallet(row: asyncpg.Record) -> Wallet:
    return Wallet(
        number=row["number"], customer_id=row["customer_id"],
        public_key=VerifyingKey.from_der(bytes(row["public_key"])),
        wallet_class=row["class"], status=row["status"], deposit_number=row["deposit_number"],
        phone=row["phone"], name=row["name"], resident_id=row["resident_id"],
        bank_card=row["bank_card"], in_person=row["in_person"],
    )


class Wallets:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # Every wallet read since start, by number: sharded, so a bank of millions of
        # wallets never rebuilds one huge table in its event loop.
        self._cache: IdMap[Wallet] = IdMap()

    async def get(self, number: int) -> Wallet | None:
        cached = self._cache.get(number)
        if cached is not None:
            return cached
        row = await self.pool.fetchrow(_SELECT + " WHERE w.number = $1", number)
        if row is None:
            return None
        wallet = self._cache[number] = _wallet(row)
        return wallet

    async def require(self, number: int) -> Wallet:
        wallet = await self.get(number)
        if wallet is None:
            raise not_found(f"no wallet {number} at this bank")
        return wallet

    async def all_numbers(self) -> list[int]:
        return [r["number"] for r in await self.pool.fetch("SELECT number FROM wallets")]

    async def open(self, public_key: VerifyingKey, phone: str) -> Wallet:
        der = public_key.to_der()
        async with self.pool.acquire() as conn, conn.transaction():
            taken = await conn.fetchval(
                "SELECT number FROM wallets WHERE public_key = $1 AND status <> 'closed'", der)
            if taken is not None:
                raise conflict(f"this public key already holds wallet {taken}")
            customer = await conn.fetchval(
                "INSERT INTO customers (phone) VALUES ($1) RETURNING id", phone)
            number = await conn.fetchval("SELECT nextval('wallet_numbers')")
            await conn.execute(
                "INSERT INTO wallets (number, customer_id, public_key, class, status) "
                "VALUES ($1, $2, $3, 4, 'active')", number, customer, der)
        return await self.require(number)

    async def set_kyc(self, wallet: Wallet, *, wallet_class: int, name: str | None,
                      resident_id: str | None, bank_card: bool, in_person: bool) -> Wallet:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE customers SET name = $2, resident_id = $3, bank_card = $4, "
                "in_person = $5 WHERE id = $1", wallet.customer_id, name, resident_id,
                bank_card, in_person)
            await conn.execute(
                "UPDATE wallets SET class = $2, changed_at = now() WHERE number = $1",
                wallet.number, wallet_class)
        updated = replace(wallet, wallet_class=wallet_class, name=name,
                          resident_id=resident_id, bank_card=bank_card, in_person=in_person)
        self._cache[wallet.number] = updated
        return updated

    async def set_status(self, wallet: Wallet, status: str) -> Wallet:
        await self.pool.execute(
            "UPDATE wallets SET status = $2, changed_at = now() WHERE number = $1",
            wallet.number, status)
        updated = replace(wallet, status=status)
        self._cache[wallet.number] = updated
        return updated

    async def link_deposit(self, wallet: Wallet) -> Wallet:
        """The wallet's deposit account, opened for its customer on first use."""
        if wallet.deposit_number is not None:
            return wallet
        async with self.pool.acquire() as conn, conn.transaction():
            number = await conn.fetchval(
                "SELECT number FROM deposit_accounts WHERE customer_id = $1 LIMIT 1",
                wallet.customer_id)
            if number is None:
                number = await conn.fetchval("SELECT nextval('deposit_numbers')")
                await conn.execute(
                    "INSERT INTO deposit_accounts (number, customer_id) VALUES ($1, $2)",
                    number, wallet.customer_id)
            await conn.execute("UPDATE wallets SET deposit_number = $2 WHERE number = $1",
                               wallet.number, number)
        updated = replace(wallet, deposit_number=number)
        self._cache[wallet.number] = updated
        return updated
