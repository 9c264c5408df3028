"""Request signing across a restart of the central bank: what was refused before is
refused after, a request accepted before cannot be replayed after (its nonce is in
PostgreSQL, not in memory), its idempotency key still answers with the first result
and still refuses another body, and a suspended bank stays suspended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loadtest.reconcile import reconcile
from tests.integration.central_bank_harness import (
    assert_forgeries_refused,
    ledger_height,
    new_id,
    running_central_bank,
    signed_call,
)

pytestmark = pytest.mark.reliability


async def test_the_rejection_matrix_holds_across_a_restart(database_url: str,
                                                           tmp_path: Path) -> None:
    async with running_central_bank(database_url, tmp_path) as bank:
        a = await bank.add_operator("BANKA", reserves=10_000_000)
        b = await bank.add_operator("BANKB", reserves=1_000)
        await assert_forgeries_refused(bank, a)

        sent: dict[str, Any] = {}

        def keep(headers: dict[str, str], content: bytes, url: str
                 ) -> tuple[dict[str, str], bytes, str]:
            sent.update(headers=headers, content=content, url=url)
            return headers, content, url

        key, body = new_id(), {"id": new_id(), "amount": 2_500}
        status, first = await signed_call(bank, a, "POST", "/v1/issuance", body,
                                          idempotency_key=key, tamper=keep)
        assert status == 201, first
        status, _ = await bank.admin("POST", "/v1/admin/operators/BANKB/suspend")
        assert status == 200
        height = await ledger_height(bank)

        await bank.restart()

        # The very bytes accepted before the restart: a replay, refused.
        async with bank.session.post(sent["url"], data=sent["content"],
                                     headers=sent["headers"]) as again:
            assert again.status == 401
            assert "replay" in (await again.json())["detail"]
        # The same request signed afresh: the first answer, from the durable key.
        status, retried = await signed_call(bank, a, "POST", "/v1/issuance", body,
                                            idempotency_key=key)
        assert (status, retried) == (201, first)
        status, _ = await signed_call(bank, a, "POST", "/v1/issuance",
                                      {**body, "amount": 9}, idempotency_key=key)
        assert status == 409
        status, problem = await signed_call(bank, b, "GET", "/v1/positions")
        assert status == 403, problem
        assert await ledger_height(bank) == height

        await assert_forgeries_refused(bank, a)
        status, positions = await signed_call(bank, a, "GET", "/v1/positions")
        assert (status, positions["reserves"], positions["ecny"]) == (200, 10_000_000 - 2_500,
                                                                      2_500)
        supply = await bank.supply()
        assert supply["balanced"], supply
    report = await reconcile(database_url, {})  # supply and the chain, from the database
    assert report.clean, "\n".join(report.lines)
