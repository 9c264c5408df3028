"""Operator banks and their request-signing keys, kept in PostgreSQL and cached here.

The central bank is one process, so after each write to the database the cache is
updated in place and stays the truth for signature checks (no query per request).

A key is `pending` from the moment the admin adds it until the operator confirms it by
a request signed with it; confirming makes it `active` and retires the keys it replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from cbdc.problems import conflict, not_found, validation
from cbdc.signing import VerifyingKey
from central_bank.accounts import position_id, reserve_id


@dataclass(slots=True)
class OperatorKey:
    key_id: str
    status: str  # pending | active | retired
    public: VerifyingKey


@dataclass(slots=True)
class OperatorBank:
    code: str
    name: str
    status: str  # active | suspended
    keys: dict[str, OperatorKey] = field(default_factory=dict)

    def to_wire(self) -> dict[str, object]:
        return {
            "code": self.code,
            "name": self.name,
            "status": self.status,
            "keys": [{"key_id": k.key_id, "status": k.status} for k in self.keys.values()],
        }


def parse_public_key(pem: str) -> VerifyingKey:
    try:
        return VerifyingKey.from_pem(pem.encode())
    except (ValueError, TypeError):
        raise validation("public_key_pem", "pem-p256",
                         "public_key_pem must be a PEM-encoded ECDSA P-256 public key") from None


class OperatorRegistry:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._banks: dict[str, OperatorBank] = {}
        self._keys: dict[str, tuple[OperatorBank, OperatorKey]] = {}
        self._by_account: dict[int, str] = {}

    async def load(self) -> None:
        async with self.pool.acquire() as conn:
            banks = await conn.fetch("SELECT code, name, status FROM operators")
            keys = await conn.fetch(
                "SELECT key_id, operator_code, public_key, status FROM operator_keys "
                "ORDER BY created_at")
        self._banks = {r["code"]: OperatorBank(r["code"], r["name"], r["status"])
                       for r in banks}
        self._keys = {}
        for r in keys:
            bank = self._banks[r["operator_code"]]
            key = OperatorKey(r["key_id"], r["status"],
                              VerifyingKey.from_der(bytes(r["public_key"])))
            bank.keys[key.key_id] = key
            self._keys[key.key_id] = (bank, key)
        self._by_account = {}
        for code in self._banks:
            self._index_accounts(code)

    def _index_accounts(self, code: str) -> None:
        self._by_account[reserve_id(code)] = code
        self._by_account[position_id(code)] = code

    # ----------------------------------------------------------------- reading
    def all(self) -> list[OperatorBank]:
        return sorted(self._banks.values(), key=lambda bank: bank.code)

    def get(self, code: str) -> OperatorBank | None:
        return self._banks.get(code)

    def require(self, code: str) -> OperatorBank:
        bank = self._banks.get(code)
        if bank is None:
            raise not_found(f"no operator bank with code {code}")
        return bank

    def key(self, key_id: str) -> tuple[OperatorBank, OperatorKey] | None:
        return self._keys.get(key_id)

    def bank_of_account(self, account_id: int) -> str | None:
        return self._by_account.get(account_id)

    # ----------------------------------------------------------------- writing
    async def register(self, code: str, name: str, key_id: str, pem: str) -> OperatorBank:
        public = parse_public_key(pem)
        if code in self._banks:
            raise conflict(f"an operator bank with code {code} already exists")
        if key_id in self._keys:
            raise conflict(f"the key id {key_id} is already in use")
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                await conn.execute(
                    "INSERT INTO operators (code, name, status) VALUES ($1, $2, 'active')",
                    code, name)
                await conn.execute(
                    "INSERT INTO operator_keys (key_id, operator_code, public_key, status) "
                    "VALUES ($1, $2, $3, 'active')", key_id, code, public.to_der())
            except asyncpg.UniqueViolationError:
                raise conflict(f"operator {code} or key {key_id} already exists") from None
        bank = OperatorBank(code, name, "active")
        key = OperatorKey(key_id, "active", public)
        bank.keys[key_id] = key
        self._banks[code] = bank
        self._keys[key_id] = (bank, key)
        self._index_accounts(code)
        return bank

    async def set_status(self, code: str, status: str) -> OperatorBank:
        bank = self.require(code)
        async with self.pool.acquire() as conn:
            await conn.execute("UPDATE operators SET status = $2 WHERE code = $1", code, status)
        bank.status = status
        return bank

    async def add_key(self, code: str, key_id: str, pem: str) -> OperatorBank:
        bank = self.require(code)
        public = parse_public_key(pem)
        if key_id in self._keys:
            raise conflict(f"the key id {key_id} is already in use")
        async with self.pool.acquire() as conn:
            try:
                await conn.execute(
                    "INSERT INTO operator_keys (key_id, operator_code, public_key, status) "
                    "VALUES ($1, $2, $3, 'pending')", key_id, code, public.to_der())
            except asyncpg.UniqueViolationError:
                raise conflict(f"the key id {key_id} is already in use") from None
        key = OperatorKey(key_id, "pending", public)
        bank.keys[key_id] = key
        self._keys[key_id] = (bank, key)
        return bank

    async def confirm_key(self, key_id: str) -> OperatorBank:
        """Activate a pending key and retire every other active key of its bank."""
        found = self._keys.get(key_id)
        if found is None:
            raise not_found(f"no key {key_id}")
        bank, key = found
        if key.status != "pending":
            raise conflict(f"key {key_id} is {key.status}, not pending")
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE operator_keys SET status = 'retired', changed_at = now() "
                "WHERE operator_code = $1 AND status = 'active'", bank.code)
            await conn.execute(
                "UPDATE operator_keys SET status = 'active', changed_at = now() "
                "WHERE key_id = $1", key_id)
        for other in bank.keys.values():
            if other.status == "active":
                other.status = "retired"
        key.status = "active"
        return bank
