"""Typed keys of what the central bank's aiohttp application holds."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cbdc.signing import VerifyingKey
from central_bank.auth import TokenBucket
from central_bank.request_log import RequestLog
from central_bank.service import CentralBank

CENTRAL_BANK = web.AppKey("central_bank", CentralBank)
REQUEST_LOG = web.AppKey("request_log", RequestLog)
RATE_LIMITER = web.AppKey("rate_limiter", TokenBucket)
ADMIN_TOKEN = web.AppKey("admin_token", str)
LEDGER_KEY = web.AppKey("ledger_public_key", VerifyingKey)
OPENAPI = web.AppKey("openapi", dict[str, Any])
