"""Running commercial banks: each its own database on the configured server, its keys in
the data folder, registered with the central bank as an operator, listening on its port.
"""

from __future__ import annotations

import os
import secrets
import uuid
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

from cbdc.keyfiles import load_or_create_key
from cbdc.migrations import apply_migrations
from cbdc.settings import Settings
from cbdc.signing import SigningKey
from cbdc.storage import Endpoints, ensure_database
from commercial_bank.app import BankConfig, create_app
from commercial_bank.service import FloatPolicy
from commercial_bank.wallet_classes import preset_by_name


def database_name(settings: Settings, code: str) -> str:
    return settings.service_database(f"bank_{code}")


def operator_key_id(code: str) -> str:
    return f"{code.lower()}-demo"


def operator_key(settings: Settings, code: str) -> SigningKey:
    return load_or_create_key(settings.data_dir / "keys" / f"operator-{code}.pem")


def teller_token(settings: Settings, code: str) -> str:
    """The bank's teller/admin token, generated once into the data folder."""
    path = settings.data_dir / f"bank-{code.lower()}-teller-token"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def bank_url(settings: Settings, port: int) -> str:
    return f"http://{settings.central_bank_host}:{port}"


async def register_operator(central_bank_url: str, admin_token: str, code: str,
                            key: SigningKey, *, reserves: int = 0) -> None:
    """Register `code` with the central bank (once), funding its reserves when new."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with aiohttp.ClientSession(headers=headers) as admin:
        async with admin.get(central_bank_url + "/v1/admin/operators") as response:
            response.raise_for_status()
            known = {o["code"] for o in await response.json()}
        if code in known:
            return
        async with admin.post(central_bank_url + "/v1/admin/operators", json={
            "code": code, "name": f"Bank {code}", "key_id": operator_key_id(code),
            "public_key_pem": key.public.to_pem().decode()}) as response:
            response.raise_for_status()
        if reserves:
            async with admin.post(central_bank_url + f"/v1/admin/operators/{code}/reserves",
                                  json={"id": str(uuid.uuid4()), "amount": reserves}
                                  ) as response:
                response.raise_for_status()


async def start_bank(settings: Settings, endpoints: Endpoints, code: str, port: int, *,
                     central_bank_url: str, peers: dict[str, str]) -> web.AppRunner:
    database_url = await ensure_database(endpoints.database_url, database_name(settings, code))
    conn = await asyncpg.connect(database_url)
    try:
        from cbdc.migrations import migration_sources

        await apply_migrations(conn, *migration_sources())
    finally:
        await conn.close()
    config = BankConfig(
        code=code, database_url=database_url, redis_url=endpoints.redis_url,
        central_bank_url=central_bank_url, operator_key_id=operator_key_id(code),
        operator_key=operator_key(settings, code),
        ledger_key=load_or_create_key(settings.data_dir / "keys" / f"bank-{code}-ledger.pem"),
        admin_token=teller_token(settings, code), preset=preset_by_name(settings.limit_preset),
        float_policy=FloatPolicy(target=settings.float_target), timezone=settings.timezone,
        batch_max_events=settings.batch_max_events,
        batch_max_wait_ms=settings.batch_max_wait_ms, peers=peers,
        redis_prefix=settings.database_prefix.replace("_", ":"))
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.central_bank_host, port).start()
    return runner


def describe(settings: Settings, code: str, port: int) -> list[str]:
    url = bank_url(settings, port)
    token = Path(settings.data_dir) / f"bank-{code.lower()}-teller-token"
    return [f"{code}: {url} (wallet API at {url}/v1; teller token: {token}; "
            f"database: {database_name(settings, code)})"]
