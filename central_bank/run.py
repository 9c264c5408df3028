"""Running the central bank: its own database on the configured server, migrations,
the service on its port, and (for `cbdc up`) a short demo against it."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from cbdc.migrations import apply_migrations
from cbdc.settings import Settings
from cbdc.stopping import until_stopped
from cbdc.storage import Endpoints, ensure_database
from central_bank.app import admin_token, ledger_key_path, serve

SERVICE = "central_bank"


async def start_central_bank(settings: Settings, endpoints: Endpoints
                             ) -> tuple[str, web.AppRunner]:
    """The database URL and the running AppRunner of the central bank."""
    database_url = await ensure_database(endpoints.database_url,
                                         settings.service_database(SERVICE))
    conn = await asyncpg.connect(database_url)
    try:
        from cbdc.migrations import migration_sources

        await apply_migrations(conn, *migration_sources())
    finally:
        await conn.close()
    runner = await serve(settings, database_url)
    return database_url, runner


def describe(settings: Settings) -> list[str]:
    url = f"http://{settings.central_bank_host}:{settings.central_bank_port}"
    token_file = settings.data_dir / "central-bank-admin-token"
    token_hint = "CBDC_ADMIN_TOKEN" if settings.admin_token else str(token_file)
    return [
        f"central bank: {url} (OpenAPI at {url}/openapi.json, metrics at {url}/metrics)",
        f"  admin token: {token_hint}; ledger key: {ledger_key_path(settings)}",
        f"  database: {settings.service_database(SERVICE)}",
    ]


async def run_forever(settings: Settings, endpoints: Endpoints) -> int:
    """`cbdc central-bank`: serve until Ctrl-C or SIGTERM."""
    _, runner = await start_central_bank(settings, endpoints)
    admin_token(settings)  # make sure the token exists before anyone needs it
    try:
        for line in describe(settings):
            print(line, flush=True)
        print("running; press Ctrl-C to stop", flush=True)
        code = await until_stopped()
    finally:
        await runner.cleanup()
    return code
