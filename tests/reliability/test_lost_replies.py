"""A reply lost after the commit: the work is durable, the caller never hears of it.

A `FaultProxy` forwards the request, lets the service commit and answer, and then drops
the answer. The tests first prove the commit happened (the transfer is in the journal),
then retry with the same id and body: the answer must be the one that was lost, and the
money must have moved once. Both hops are covered: a wallet's app to its bank (payments
within and across banks, top-ups) and a bank to the central bank (settlement, issuance).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from commercial_bank import accounts as chart
from loadtest.network import CENTRAL_BANK_SERVICE
from loadtest.retail_bench import Orders
from loadtest.seeding import WALLET_FUNDING, BenchWallet
from tests.reliability import ledgers
from tests.reliability.cluster import Cluster
from tests.reliability.fault_proxy import FaultProxy
from tests.reliability.load import bank_pools, reconcile_clean, settled
from tests.reliability.stores import PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.reliability

CODES = ("BANKA", "BANKB")


def first(count: int, method: str, path: str) -> Callable[[web.Request], bool]:
    """Fault the first `count` requests `method path...`, none after."""
    left = [count]

    def applies(request: web.Request) -> bool:
        if request.method == method and request.path.startswith(path) and left[0] > 0:
            left[0] -= 1
            return True
        return False

    return applies


@dataclass
class System:
    cluster: Cluster
    session: aiohttp.ClientSession
    to_central_bank: FaultProxy  # between the banks and the central bank
    to_bank: FaultProxy  # between the wallets' app and BANKA
    wallets: dict[str, list[BenchWallet]]

    async def lost_then_retried(self, url_path: str, body: bytes | Any, *,
                                token: str | None = None) -> tuple[dict[str, Any], Any]:
        """Send through the proxy (its answer is dropped), then the same request again
        straight to BANKA: (the lost answer, the retry's answer)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        kwargs: dict[str, Any] = {"data": body, "headers": headers | {
            "Content-Type": "application/json"}} if isinstance(body, bytes) else {
            "json": body, "headers": headers}
        with pytest.raises(aiohttp.ClientError):
            async with self.session.post(self.to_bank.url + url_path, **kwargs) as response:
                await response.read()
        [(status, payload)] = self.to_bank.lost
        self.to_bank.lost.clear()
        async with self.session.post(self.cluster.urls["BANKA"] + url_path,
                                     **kwargs) as response:
            return {"status": status, "body": payload}, {
                "status": response.status, "body": await response.json()}


@pytest.fixture
async def system(private_postgres: PrivatePostgres, private_redis: PrivateRedis,
                 tmp_path: Path, seed: int) -> AsyncIterator[System]:
    cluster = Cluster(private_postgres.url, private_redis.url, tmp_path / "system",
                      codes=CODES, float_target=3 * WALLET_FUNDING)
    rng = random.Random(seed)
    central = cluster.urls[CENTRAL_BANK_SERVICE]
    async with aiohttp.ClientSession() as session, \
            FaultProxy(central, rng) as to_central_bank, \
            FaultProxy(cluster.urls["BANKA"], rng) as to_bank, \
            cluster.running(session, central_bank_for_banks=to_central_bank.url):
        wallets = await cluster.seed_wallets(session, 2)
        yield System(cluster, session, to_central_bank, to_bank, wallets)
        async with bank_pools(cluster) as pools:
            books = await settled(pools, CODES)
            assert ledgers.problems(books) == []
            assert ledgers.conserved_total(books) == await ledgers.outstanding(
                pools[CENTRAL_BANK_SERVICE])
        await reconcile_clean(cluster)


async def balances(system: System) -> dict[str, int]:
    async with bank_pools(system.cluster) as pools:
        books = await ledgers.read_all({code: pools[code] for code in CODES})
    held = {account: posted for bank in books for account, (posted, _) in bank.balances.items()}
    return {w.text: held[chart.wallet_id(w.code, w.address.number)]
            for made in system.wallets.values() for w in made if w.address is not None}


@pytest.mark.parametrize("payee_bank", ["BANKA", "BANKB"])
async def test_a_payment_whose_reply_is_lost_is_answered_the_same_on_retry(
        system: System, seed: int, payee_bank: str) -> None:
    payer, payee = system.wallets["BANKA"][0], system.wallets[payee_bank][1]
    order = Orders(random.Random(seed)).order(payer, payee)
    system.to_bank.drop, system.to_bank.applies = 1.0, first(1, "POST", "/v1/payments")
    lost, retried = await system.lost_then_retried("/v1/payments", order)
    payment_id = uuid.UUID(lost["body"]["id"]).int
    async with bank_pools(system.cluster) as pools:
        assert await ledgers.existing(pools["BANKA"], [payment_id]) == {payment_id}
        await settled(pools, CODES)
    assert lost["status"] == 201
    assert retried == lost
    amount = lost["body"]["amount"]
    after = await balances(system)
    assert after[payer.text] == WALLET_FUNDING - amount
    assert after[payee.text] == WALLET_FUNDING + amount


async def test_a_retry_is_answered_as_the_first_time_even_with_the_payee_bank_down(
        system: System, seed: int) -> None:
    """The first attempt went through; by the retry the payee's bank is down, so a fresh
    payment could not be checked. The retry must still get the original answer (not
    'payee cannot receive', which would tell the payer nothing was taken)."""
    payer, payee = system.wallets["BANKA"][0], system.wallets["BANKB"][1]
    order = Orders(random.Random(seed)).order(payer, payee)
    system.to_bank.drop, system.to_bank.applies = 1.0, first(1, "POST", "/v1/payments")
    with pytest.raises(aiohttp.ClientError):
        async with system.session.post(system.to_bank.url + "/v1/payments", data=order,
                                       headers={"Content-Type": "application/json"}
                                       ) as response:
            await response.read()
    [(status, lost)] = system.to_bank.lost
    await system.cluster.kill("BANKB")
    try:
        answer = await system.cluster.pay(system.session, "BANKA", order)
    finally:
        await system.cluster.restart(system.session, "BANKB")
    assert (answer.status, answer.body) == (status, lost)
    amount = lost["amount"]
    async with bank_pools(system.cluster) as pools:
        await settled(pools, CODES)
    after = await balances(system)
    assert after[payer.text] == WALLET_FUNDING - amount
    assert after[payee.text] == WALLET_FUNDING + amount


async def test_a_top_up_whose_reply_is_lost_is_answered_the_same_on_retry(
        system: System) -> None:
    wallet = system.wallets["BANKA"][0]
    teller = system.cluster.tellers["BANKA"]
    async with system.session.post(
            f"{system.cluster.urls['BANKA']}/v1/wallets/{wallet.text}/deposit-account",
            headers={"Authorization": f"Bearer {wallet.token}"}) as response:
        deposit = (await response.json())["deposit_account"]["number"]
    async with system.session.post(
            f"{system.cluster.urls['BANKA']}/v1/teller/deposits/{deposit}/cash-in",
            json={"id": str(uuid.uuid4()), "amount": 5_000},
            headers={"Authorization": f"Bearer {teller}"}) as response:
        assert response.status == 201
    system.to_bank.drop, system.to_bank.applies = 1.0, first(1, "POST", "/v1/wallets/")
    top_up = {"id": str(uuid.uuid4()), "amount": 5_000}
    lost, retried = await system.lost_then_retried(f"/v1/wallets/{wallet.text}/top-up",
                                                   top_up, token=wallet.token)
    assert lost["status"] == 200
    assert retried == lost
    assert (await balances(system))[wallet.text] == WALLET_FUNDING + 5_000


async def test_settlement_answers_lost_between_bank_and_central_bank_are_retried(
        system: System, seed: int) -> None:
    """The central bank settles, its answer is lost twice; the bank's client asks again
    under the same idempotency key and the payment settles once."""
    payer, payee = system.wallets["BANKA"][0], system.wallets["BANKB"][0]
    order = Orders(random.Random(seed)).order(payer, payee)
    system.to_central_bank.drop = 1.0
    system.to_central_bank.applies = first(2, "POST", "/v1/transfers")
    answer = await system.cluster.pay(system.session, "BANKA", order)
    assert answer.status == 201
    assert answer.body["status"] == "settled"
    assert system.to_central_bank.stats["dropped"] == 2
    async with bank_pools(system.cluster) as pools:
        await settled(pools, CODES)
        assert await ledgers.existing(pools[CENTRAL_BANK_SERVICE],
                                      [answer.payment_id]) == {answer.payment_id}
    amount = answer.body["amount"]
    after = await balances(system)
    assert after[payer.text] == WALLET_FUNDING - amount
    assert after[payee.text] == WALLET_FUNDING + amount


async def test_issuance_whose_answers_are_all_lost_is_resolved(system: System) -> None:
    """A top-up needs e-CNY from the central bank; it issues, but every answer is lost, so
    the bank cannot tell. The bank must find out (nothing issued twice, nothing issued
    and forgotten): afterwards its position mirror equals the central bank's figure."""
    wallet = system.wallets["BANKA"][1]
    teller = system.cluster.tellers["BANKA"]
    url = system.cluster.urls["BANKA"]
    async with system.session.post(
            f"{url}/v1/wallets/{wallet.text}/deposit-account",
            headers={"Authorization": f"Bearer {wallet.token}"}) as response:
        deposit = (await response.json())["deposit_account"]["number"]
    amount = 4 * WALLET_FUNDING  # more than the float holds: the bank must issue
    async with system.session.post(
            f"{url}/v1/teller/deposits/{deposit}/cash-in",
            json={"id": str(uuid.uuid4()), "amount": amount},
            headers={"Authorization": f"Bearer {teller}"}) as response:
        assert response.status == 201
    system.to_central_bank.drop = 1.0
    system.to_central_bank.applies = first(3, "POST", "/v1/issuance")  # every attempt
    top_up = {"id": str(uuid.uuid4()), "amount": amount}
    async with system.session.post(f"{url}/v1/wallets/{wallet.text}/top-up", json=top_up,
                                   headers={"Authorization": f"Bearer {wallet.token}"}
                                   ) as response:
        first_status = response.status
    assert system.to_central_bank.stats["dropped"] == 3
    assert first_status == 503
    async with system.session.post(f"{url}/v1/wallets/{wallet.text}/top-up", json=top_up,
                                   headers={"Authorization": f"Bearer {wallet.token}"}
                                   ) as response:
        assert response.status == 200, await response.text()
    assert (await balances(system))[wallet.text] == WALLET_FUNDING + amount
    # The fixture's teardown then checks the mirror against the central bank.
