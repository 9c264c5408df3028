"""The central bank on a real PostgreSQL, called as operator banks call it: signed HTTP.

Every response is checked against the service's own OpenAPI document, and after every
test the supply invariant holds: e-CNY outstanding == sum of positions == reserves
swapped in net (and the ledgers still verify, see conftest)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cbdc.signing import SigningKey
from central_bank.keys import CENTRAL_BANK
from tests.integration.central_bank_harness import (
    CentralBankUnderTest,
    Operator,
    assert_forgeries_refused,
    new_id,
    running_central_bank,
    signed_call,
)


@pytest.fixture
async def central_bank(database_url: str, tmp_path: Path) -> AsyncIterator[CentralBankUnderTest]:
    async with running_central_bank(database_url, tmp_path) as bank:
        yield bank
        supply = await bank.supply()
        assert supply["balanced"], supply
        assert supply["ecny_outstanding"] == supply["sum_of_positions"] \
            == supply["reserves_swapped_in_net"]


@pytest.fixture
async def banks(central_bank: CentralBankUnderTest) -> tuple[Operator, Operator]:
    a = await central_bank.add_operator("BANKA", reserves=10_000_000)
    b = await central_bank.add_operator("BANKB", reserves=1_000_000)
    return a, b


def transfer_body(payee: str = "BANKB", amount: int = 1_000, **fields: Any) -> dict[str, Any]:
    return {"id": new_id(), "payee_bank": payee, "amount": amount, "payer_ref": "wallet-a1",
            "payee_ref": "wallet-b1", **fields}


async def positions(bank: CentralBankUnderTest, operator: Operator) -> tuple[int, int]:
    status, data = await signed_call(bank, operator, "GET", "/v1/positions")
    assert status == 200
    return data["reserves"], data["ecny"]


async def test_issue_transfer_redeem(central_bank: CentralBankUnderTest,
                                     banks: tuple[Operator, Operator]) -> None:
    """Reserves become e-CNY one to one, move between banks, and go back to reserves."""
    a, b = banks
    status, result = await signed_call(central_bank, a, "POST", "/v1/issuance",
                                       {"id": new_id(), "amount": 2_000_000})
    assert (status, result["status"]) == (201, "settled")
    assert await positions(central_bank, a) == (8_000_000, 2_000_000)

    body = transfer_body(amount=750_000, memo_ref="invoice-7")
    status, result = await signed_call(central_bank, a, "POST", "/v1/transfers", body)
    assert (status, result["status"]) == (201, "settled")
    assert await positions(central_bank, b) == (1_000_000, 750_000)

    status, view = await signed_call(central_bank, b, "GET", f"/v1/transfers/{body['id']}")
    assert status == 200
    assert (view["payer_bank"], view["payee_bank"], view["amount"]) == ("BANKA", "BANKB",
                                                                       750_000)
    assert (view["payer_ref"], view["payee_ref"], view["memo_ref"]) == (
        "wallet-a1", "wallet-b1", "invoice-7")

    status, result = await signed_call(central_bank, b, "POST", "/v1/redemption",
                                       {"id": new_id(), "amount": 750_000})
    assert status == 201
    assert await positions(central_bank, b) == (1_750_000, 0)
    supply = await central_bank.supply()
    assert supply["ecny_outstanding"] == 1_250_000
    assert supply["reserves_funded"] == 11_000_000


async def test_rejections_name_the_rule_and_move_nothing(
        central_bank: CentralBankUnderTest, banks: tuple[Operator, Operator]) -> None:
    """Issuing beyond reserves, paying beyond the position, or paying an unknown bank is
    refused with a 422 naming why; no balance changes."""
    a, _ = banks
    status, problem = await signed_call(central_bank, a, "POST", "/v1/issuance",
                                        {"id": new_id(), "amount": 10_000_001})
    assert status == 422
    assert problem["code"] == "exceeds_credits"
    assert "reserve" in problem["detail"]
    status, problem = await signed_call(central_bank, a, "POST", "/v1/transfers",
                                        transfer_body(amount=1))
    assert (status, problem["code"]) == (422, "exceeds_credits")
    status, problem = await signed_call(central_bank, a, "POST", "/v1/transfers",
                                        transfer_body(payee="NOSUCH"))
    assert (status, problem["field"], problem["code"]) == (422, "payee_bank",
                                                           "payee_bank_unknown")
    assert await positions(central_bank, a) == (10_000_000, 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "not-a-uuid", "amount": 5}, "$.id"),
        ({"id": "0192c4e0-7c1e-7b2a-9d41-000000000001", "amount": 0}, "$.amount"),
        ({"id": "0192c4e0-7c1e-7b2a-9d41-000000000001", "amount": 1.5}, "$.amount"),
        ({"id": "0192c4e0-7c1e-7b2a-9d41-000000000001", "amount": "100"}, "$.amount"),
        ({"id": "0192c4e0-7c1e-7b2a-9d41-000000000001", "amount": 2**63}, "$.amount"),
        ({"id": "0192c4e0-7c1e-7b2a-9d41-000000000001"}, "amount"),
        ({"id": "0192c4e0-7c1e-7b2a-9d41-000000000001", "amount": 5, "extra": 1}, "extra"),
    ],
)
async def test_malformed_bodies_get_422_naming_the_field(
        central_bank: CentralBankUnderTest, banks: tuple[Operator, Operator],
        body: dict[str, Any], field: str) -> None:
    """A wrong type, a missing or an unknown field is a 422 whose `field` names it."""
    a, _ = banks
    status, problem = await signed_call(central_bank, a, "POST", "/v1/issuance", body)
    assert status == 422
    assert field in (problem.get("field") or "") + (problem.get("detail") or "")
    assert await positions(central_bank, a) == (10_000_000, 0)


async def test_malformed_json_oversized_body_and_unknown_route(
        central_bank: CentralBankUnderTest, banks: tuple[Operator, Operator]) -> None:
    """Bad JSON is a 400, an oversized body a 413, an unknown route a 404: all problem
    JSON, never a stack trace."""
    a, _ = banks

    # Signed over the broken bytes, so the signature holds and the JSON is what fails.
    from cbdc.httpsig import sign_request

    url = central_bank.url + "/v1/issuance"
    broken = b'{"id": "x", "amount": '
    headers = {"Idempotency-Key": new_id(), "Content-Type": "application/json"}
    headers |= sign_request("POST", url, headers, broken, key_id=a.key_id, key=a.key)
    async with central_bank.session.post(url, data=broken, headers=headers) as response:
        assert response.status == 400
        assert response.content_type == "application/problem+json"
        assert "Traceback" not in await response.text()

    too_many = {"transfers": [transfer_body() for _ in range(8_001)]}
    status, problem = await signed_call(central_bank, a, "POST", "/v1/transfers/batch",
                                        too_many)
    assert (status, problem["field"]) == (422, "$.transfers")
    huge = {"transfers": [transfer_body() for _ in range(40_000)]}
    status, problem = await signed_call(central_bank, a, "POST", "/v1/transfers/batch", huge)
    assert status == 413
    async with central_bank.session.get(central_bank.url + "/v1/nothing-here") as response:
        assert response.status == 404
        assert response.content_type == "application/problem+json"


async def test_signature_rejection_matrix(central_bank: CentralBankUnderTest,
                                          banks: tuple[Operator, Operator]) -> None:
    """Each forged, replayed, stale or unauthorised request is refused with 401/403 and
    writes nothing (tests/reliability runs the same matrix across a restart)."""
    a, _ = banks
    await assert_forgeries_refused(central_bank, a)
    assert await positions(central_bank, a) == (10_000_000, 0)


async def test_suspended_bank_and_rotated_key(central_bank: CentralBankUnderTest,
                                              banks: tuple[Operator, Operator]) -> None:
    """A suspended bank is refused (403) until reactivated; after a key rotation is
    confirmed, the old key is refused (401) and the new one works."""
    a, _ = banks
    status, _ = await central_bank.admin("POST", "/v1/admin/operators/BANKA/suspend")
    assert status == 200
    status, problem = await signed_call(central_bank, a, "GET", "/v1/positions")
    assert status == 403
    status, _ = await central_bank.admin("POST", "/v1/admin/operators/BANKA/reactivate")
    status, _ = await signed_call(central_bank, a, "GET", "/v1/positions")
    assert status == 200

    new_key = SigningKey.generate()
    status, operator = await central_bank.admin(
        "POST", "/v1/admin/operators/BANKA/keys",
        {"key_id": "banka-key-2", "public_key_pem": new_key.public.to_pem().decode()})
    assert status == 201
    rotated = Operator("BANKA", "banka-key-2", new_key, a.client)
    status, _ = await signed_call(central_bank, rotated, "GET", "/v1/positions")
    assert status == 401  # pending until confirmed
    status, _ = await signed_call(central_bank, a, "GET", "/v1/positions")
    assert status == 200  # the old key works until then
    status, operator = await signed_call(central_bank, rotated, "POST", "/v1/keys/confirm")
    assert status == 200
    assert {k["key_id"]: k["status"] for k in operator["keys"]} == {
        "banka-key-1": "retired", "banka-key-2": "active"}
    status, problem = await signed_call(central_bank, a, "GET", "/v1/positions")
    assert status == 401
    assert "rotated" in problem["detail"]
    status, _ = await signed_call(central_bank, rotated, "POST", "/v1/issuance",
                                  {"id": new_id(), "amount": 5})
    assert status == 201


async def test_fifty_identical_requests_one_effect(central_bank: CentralBankUnderTest,
                                                   banks: tuple[Operator, Operator]) -> None:
    """50 concurrent copies of one request (same idempotency key and body, each signed
    afresh) settle once and all get the same answer; the key with another body is a 409."""
    a, b = banks
    await signed_call(central_bank, a, "POST", "/v1/issuance",
                      {"id": new_id(), "amount": 100_000})
    body = transfer_body(amount=4_321)
    key = new_id()
    answers = await asyncio.gather(*(
        signed_call(central_bank, a, "POST", "/v1/transfers", body, idempotency_key=key)
        for _ in range(50)))
    assert {status for status, _ in answers} == {201}
    assert len({repr(data) for _, data in answers}) == 1
    assert await positions(central_bank, b) == (1_000_000, 4_321)
    status, _problem = await signed_call(central_bank, a, "POST", "/v1/transfers",
                                        {**body, "amount": 9}, idempotency_key=key)
    assert status == 409
    assert await positions(central_bank, b) == (1_000_000, 4_321)


async def test_batch_gives_one_result_per_item(central_bank: CentralBankUnderTest,
                                               banks: tuple[Operator, Operator]) -> None:
    """A batch settles what it can and says, per item, why the rest was refused."""
    a, b = banks
    await signed_call(central_bank, a, "POST", "/v1/issuance", {"id": new_id(), "amount": 5_000})
    items = [transfer_body(amount=1_000) for _ in range(4)]
    items.append(transfer_body(amount=2_000))  # only 1,000 left by then
    items.append(transfer_body(payee="NOSUCH"))
    status, result = await signed_call(central_bank, a, "POST", "/v1/transfers/batch",
                                       {"transfers": items})
    assert status == 200
    assert [r["status"] for r in result["results"]] == ["settled"] * 4 + ["rejected"] * 2
    assert [r.get("code") for r in result["results"][4:]] == ["exceeds_credits",
                                                              "payee_bank_unknown"]
    assert (result["settled"], result["rejected"]) == (4, 2)
    assert await positions(central_bank, b) == (1_000_000, 4_000)


async def test_events_feed_delivers_each_credit_once_per_cursor_across_restart(
        central_bank: CentralBankUnderTest, banks: tuple[Operator, Operator]) -> None:
    """The payee bank reads every credit exactly once by following the cursor, a long
    poll wakes when a credit commits, and the acknowledged cursor survives a restart."""
    a, b = banks
    await signed_call(central_bank, a, "POST", "/v1/issuance", {"id": new_id(), "amount": 50_000})
    sent = [transfer_body(amount=100 + i) for i in range(5)]
    for body in sent[:3]:
        await signed_call(central_bank, a, "POST", "/v1/transfers", body)
    status, page = await signed_call(central_bank, b, "GET", "/v1/events?after=0")
    assert [e["transfer"]["id"] for e in page["events"]] == [t["id"] for t in sent[:3]]
    cursor = page["cursor"]

    waiting = asyncio.create_task(
        signed_call(central_bank, b, "GET", f"/v1/events?after={cursor}&wait=10"))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    await signed_call(central_bank, a, "POST", "/v1/transfers", sent[3])
    status, page = await asyncio.wait_for(waiting, 5)
    assert [e["transfer"]["id"] for e in page["events"]] == [sent[3]["id"]]
    cursor = page["cursor"]
    # Acknowledge it by asking for what follows, then restart the central bank.
    status, page = await signed_call(central_bank, b, "GET", f"/v1/events?after={cursor}")
    assert page["events"] == []
    await signed_call(central_bank, a, "POST", "/v1/transfers", sent[4])
    await central_bank.restart()
    status, page = await signed_call(central_bank, b, "GET", "/v1/events")
    assert status == 200
    assert [e["transfer"]["id"] for e in page["events"]] == [sent[4]["id"]]
    _status, page = await signed_call(central_bank, b, "GET", "/v1/events?after=0")
    assert [e["transfer"]["id"] for e in page["events"]] == [t["id"] for t in sent]


async def test_a_poll_with_nothing_to_deliver_moves_the_cursor_past_what_it_read(
        central_bank: CentralBankUnderTest, banks: tuple[Operator, Operator]) -> None:
    """Issuance credits a bank's position but is no event: a poll that finds only such
    credits, or none, answers with a cursor past what it read, and the next credit comes
    from that cursor all the same; nothing is skipped, before or after a restart."""
    a, b = banks
    for bank in (a, b):
        await signed_call(central_bank, bank, "POST", "/v1/issuance",
                          {"id": new_id(), "amount": 50_000})
    status, page = await signed_call(central_bank, a, "GET", "/v1/events?after=0")
    assert (status, page["events"]) == (200, [])
    moved = int(page["cursor"])
    assert moved > 0  # past the issuance it read
    to_a = transfer_body(payee="BANKA", amount=300)
    await signed_call(central_bank, b, "POST", "/v1/transfers", to_a)
    _status, page = await signed_call(central_bank, a, "GET", f"/v1/events?after={moved}")
    assert [e["transfer"]["id"] for e in page["events"]] == [to_a["id"]]
    # A long poll that times out empty moves on too, and misses nothing after it.
    _status, page = await signed_call(central_bank, a, "GET",
                                      f"/v1/events?after={page['cursor']}&wait=0.2")
    assert page["events"] == []
    cursor = page["cursor"]
    await signed_call(central_bank, b, "POST", "/v1/transfers", transfer_body(
        payee="BANKA", amount=1))  # after the cursor, before the restart
    later = transfer_body(payee="BANKA", amount=400)
    await central_bank.restart()
    await signed_call(central_bank, b, "POST", "/v1/transfers", later)
    _status, page = await signed_call(central_bank, a, "GET", f"/v1/events?after={cursor}")
    assert [e["transfer"]["amount"] for e in page["events"]] == [1, 400]
    _status, page = await signed_call(central_bank, a, "GET", "/v1/events?after=0")
    assert [e["transfer"]["amount"] for e in page["events"]] == [300, 1, 400]


async def test_a_long_poll_wakes_for_a_credit_committed_while_it_reads(
        central_bank: CentralBankUnderTest, banks: tuple[Operator, Operator],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A credit that commits while a long poll is reading the history (after it read,
    before it waits) wakes that poll, which delivers it, instead of the poll sleeping
    until the next commit or its deadline."""
    a, b = banks
    await signed_call(central_bank, a, "POST", "/v1/issuance", {"id": new_id(), "amount": 50_000})
    assert central_bank.runner is not None
    ledger = central_bank.runner.app[CENTRAL_BANK].ledger
    read, go_on = asyncio.Event(), asyncio.Event()
    original = ledger.account_history

    async def overtaken_read(*args: Any, **kwargs: Any) -> Any:
        records = await original(*args, **kwargs)
        if not read.is_set():
            read.set()
            await go_on.wait()  # the credit commits now, after this read
        return records

    monkeypatch.setattr(ledger, "account_history", overtaken_read)
    waiting = asyncio.create_task(
        signed_call(central_bank, b, "GET", "/v1/events?after=0&wait=30"))
    await asyncio.wait_for(read.wait(), 5)
    body = transfer_body(amount=100)
    await signed_call(central_bank, a, "POST", "/v1/transfers", body)
    go_on.set()
    # Woken by that commit, not by the end of its 30 s wait.
    _status, page = await asyncio.wait_for(waiting, 10)
    assert [e["transfer"]["id"] for e in page["events"]] == [body["id"]]


async def test_receipt_statement_and_admin_views(central_bank: CentralBankUnderTest,
                                                 banks: tuple[Operator, Operator]) -> None:
    """A transfer's receipt verifies with the published ledger key; the statement pages;
    the admin sees blocks and can export the chain."""
    from cbdc.receipts import Receipt
    from cbdc.signing import VerifyingKey

    a, _ = banks
    await signed_call(central_bank, a, "POST", "/v1/issuance", {"id": new_id(), "amount": 9_000})
    bodies = [transfer_body(amount=10 * (i + 1)) for i in range(3)]
    for body in bodies:
        await signed_call(central_bank, a, "POST", "/v1/transfers", body)
    status, data = await signed_call(central_bank, a, "GET",
                                     f"/v1/transfers/{bodies[1]['id']}/receipt")
    assert status == 200
    async with central_bank.session.get(central_bank.url + "/v1/ledger-key") as response:
        key = VerifyingKey.from_pem((await response.json())["public_key_pem"].encode())
    assert Receipt.from_json(data["receipt"]).verify(key) is None

    status, page = await signed_call(central_bank, a, "GET", "/v1/statement?limit=2")
    assert status == 200
    assert [e["kind"] for e in page["entries"]] == ["issue", "interbank"]
    status, rest = await signed_call(central_bank, a, "GET",
                                     f"/v1/statement?limit=10&after={page['next_after']}")
    assert [e["amount"] for e in rest["entries"]] == [20, 30]

    status, _block = await central_bank.admin("GET", "/v1/admin/blocks/1")
    assert status == 200
    async with central_bank.session.get(
        central_bank.url + "/v1/admin/chain",
        headers={"Authorization": "Bearer wrong-token-0123456789"}) as response:
        assert response.status == 401
    status, operators = await central_bank.admin("GET", "/v1/admin/operators")
    assert [o["code"] for o in operators] == ["BANKA", "BANKB"]
    async with central_bank.session.get(central_bank.url + "/metrics") as response:
        text = await response.text()
    assert "cbdc_ledger_commit_seconds_bucket" in text
    assert "cbdc_http_requests_total" in text


async def test_an_operator_over_its_rate_gets_429(database_url: str, tmp_path: Path) -> None:
    """Past its request rate an operator is told to slow down (429 with Retry-After), and
    the refused requests change nothing."""
    async with running_central_bank(database_url, tmp_path, operator_rate=5) as bank:
        a = await bank.add_operator("BANKA", reserves=1_000)
        statuses = [
            (await signed_call(bank, a, "POST", "/v1/issuance", {"id": new_id(), "amount": 1}))[0]
            for _ in range(12)
        ]
        assert statuses.count(201) >= 5
        assert 429 in statuses
        issued = statuses.count(201)
        await asyncio.sleep(1.1)
        status, data = await signed_call(bank, a, "GET", "/v1/positions")
        assert status == 200
        assert data["ecny"] == issued
        assert (await bank.supply())["balanced"]


async def test_a_writing_request_spends_its_nonce_whatever_its_answer(
        central_bank: CentralBankUnderTest, banks: tuple[Operator, Operator]) -> None:
    """A transfer's claim is written with its batch, or on its own when the request never
    reached the ledger, and an events poll's with the cursor it acknowledges: either way
    the very same bytes are a replay, also after a restart, and the ledger holds one
    effect."""
    a, _ = banks
    status, _ = await signed_call(central_bank, a, "POST", "/v1/issuance",
                                  {"id": new_id(), "amount": 5_000})
    assert status == 201
    sent: list[tuple[dict[str, str], bytes, str]] = []

    def keep(headers: dict[str, str], content: bytes, url: str
             ) -> tuple[dict[str, str], bytes, str]:
        sent.append((headers, content, url))
        return headers, content, url

    cases = [
        ("POST", "/v1/transfers", transfer_body(amount=1_000), 201),  # settled
        ("POST", "/v1/transfers", transfer_body(amount=9_000), 422),  # refused by the ledger
        ("POST", "/v1/transfers", transfer_body(payee="NOBANK"), 422),  # refused before it
        ("POST", "/v1/transfers/batch", {"transfers": [transfer_body(payee="NOBANK")]}, 200),
        ("GET", "/v1/events?after=0", None, 200),  # acknowledges a cursor
    ]
    for method, path, body, expected in cases:
        status, _ = await signed_call(central_bank, a, method, path, body, tamper=keep)
        assert status == expected, (path, body)

    async def replays_refused() -> None:
        for (method, *_), (headers, content, url) in zip(cases, sent, strict=True):
            async with central_bank.session.request(method, url, data=content or None,
                                                    headers=headers) as again:
                assert again.status == 401, url
                assert "replay" in (await again.json())["detail"]

    await replays_refused()
    await central_bank.restart()
    await replays_refused()
    assert await positions(central_bank, a) == (10_000_000 - 5_000, 4_000)
