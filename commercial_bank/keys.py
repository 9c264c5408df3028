"""Typed keys of what a commercial bank's aiohttp application holds."""

from __future__ import annotations

from aiohttp import web

from commercial_bank.service import Bank
from commercial_bank.sessions import Sessions

BANK = web.AppKey("bank", Bank)
SESSIONS = web.AppKey("sessions", Sessions)
ADMIN_TOKEN = web.AppKey("admin_token", str)
