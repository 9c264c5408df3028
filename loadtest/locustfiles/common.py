"""What the Locust users share: their command-line options, the seed file written by
`cbdc loadtest`, the record of acknowledged transfers, pacing and the load shape.

Options (Locust forwards them from the master to its workers):

    --seed-file PATH   JSON written by the runner: the services' URLs, the operator banks'
                       keys (settlement) and the wallets' keys (retail)
    --ack-dir DIR      each Locust process appends the transfers it was told succeeded to
                       DIR/acks-<host>-<pid>.txt, one `<ledger> <id> <amount> <unix time>`
                       a line, where <ledger> is `central_bank` or the payer's bank code;
                       the runner checks every one against the ledgers after the run
    --pace R           requests per second per user (constant throughput, for latency
                       runs: an overloaded server shows as latency, not as fewer
                       requests); 0 (default): back to back
    --batch-size N     transfers per batch request (1000)
    --hot-banks K      the first K operator banks are hot (2) ...
    --hot-share F      ... and receive share F of the transfers (0.5)
    --cross-share F    retail: share of payments to the other bank (0.5)

The shape is chosen by the `LOADTEST_SHAPE` environment variable (ramp, step, spike,
soak; unset: none, Locust's own -u/-r/-t), read when the locust file is imported, as
Locust finds a shape class only among the file's module attributes.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, TextIO

from locust import LoadTestShape, User, events
from locust.env import Environment
from locust.user.wait_time import constant_throughput

from cbdc.heap import freeze_long_lived
from cbdc.httpsig import signed_headers
from cbdc.signing import SigningKey
from loadtest import shapes

SHAPE_ENV = "LOADTEST_SHAPE"
CENTRAL_BANK_LEDGER = "central_bank"


def _add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("cbdc", "options of the cbdc locust files")
    group.add_argument("--seed-file", default="", help="JSON written by `cbdc loadtest`")
    group.add_argument("--ack-dir", default="",
                       help="folder for the ids of acknowledged transfers")
    group.add_argument("--pace", type=float, default=0.0,
                       help="requests/s per user (constant throughput); 0: back to back")
    group.add_argument("--batch-size", type=int, default=1000,
                       help="transfers per batch request")
    group.add_argument("--hot-banks", type=int, default=2, help="how many banks are hot")
    group.add_argument("--hot-share", type=float, default=0.5,
                       help="share of transfers paid to a hot bank")
    group.add_argument("--cross-share", type=float, default=0.5,
                       help="retail: share of payments to the other bank")


def options(environment: Environment) -> Any:
    """The parsed command line (custom options included)."""
    if environment.parsed_options is None:
        raise RuntimeError("the cbdc locust files run from the locust command line")
    return environment.parsed_options


@cache
def _seed(path: str) -> dict[str, Any]:
    if not path:
        raise RuntimeError("--seed-file is required (written by `cbdc loadtest`)")
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


def seed(environment: Environment) -> dict[str, Any]:
    """The seed file's content, read once per process."""
    return _seed(options(environment).seed_file)


@cache
def signing_key(pem: str) -> SigningKey:
    return SigningKey.from_pem(pem.encode())


def signed(url: str, body: bytes, key_id: str, pem: str, idempotency_key: str
           ) -> dict[str, str]:
    """The headers of a signed operator POST to `url` (RFC 9421)."""
    return signed_headers("POST", url, body, key_id=key_id, key=signing_key(pem),
                          idempotency_key=idempotency_key)


# ------------------------------------------------------------------ acknowledgements
class AckLog:
    """This process's record of acknowledged transfers (buffered; flushed when the test
    stops and when Locust quits)."""

    def __init__(self) -> None:
        self._file: TextIO | None = None

    def record(self, environment: Environment, ledger: str, transfer_id: str,
               amount: int) -> None:
        self.record_many(environment, ledger, [(transfer_id, amount)])

    def record_many(self, environment: Environment, ledger: str,
                    acknowledged: Iterable[tuple[str, int]]) -> None:
        """(transfer id, amount) of each transfer `ledger` acknowledged, in one write
        (a batch user acknowledges 8,000 at a time)."""
        if self._file is None:
            folder = options(environment).ack_dir
            if not folder:
                return  # a run without reconciliation (e.g. by hand)
            path = Path(folder) / f"acks-{socket.gethostname()}-{os.getpid()}.txt"
            self._file = path.open("a", buffering=1 << 20)
        at = f"{time.time():.3f}"
        self._file.write("".join(f"{ledger} {transfer_id} {amount} {at}\n"
                                 for transfer_id, amount in acknowledged))

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()


ACKS = AckLog()


def _flush_on_stop(**_: Any) -> None:
    ACKS.flush()


def _flush_on_quit(**_: Any) -> None:
    ACKS.flush()


def _freeze_on_start(**_: Any) -> None:
    # Locust, the seed and the keys live through the test: out of the full walks, which
    # would otherwise stall every user of this process inside its measured latencies.
    freeze_long_lived()


# Locust's hooks are untyped; registered by call, not as decorators, for the type checker.
events.init_command_line_parser.add_listener(_add_arguments)  # type: ignore[no-untyped-call]
events.test_start.add_listener(_freeze_on_start)  # type: ignore[no-untyped-call]
events.test_stop.add_listener(_flush_on_stop)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_flush_on_quit)  # type: ignore[no-untyped-call]


# ------------------------------------------------------------------------ pacing
def paced(user: User) -> float:
    """The wait between tasks: none, or what keeps the user at --pace tasks/s."""
    pace = float(options(user.environment).pace)
    if pace <= 0:
        return 0.0
    return constant_throughput(pace)(user)


def selected_shape() -> type[LoadTestShape] | None:
    """The shape named by LOADTEST_SHAPE, or None."""
    name = os.environ.get(SHAPE_ENV, "").strip().lower()
    if not name or name == "none":
        return None
    try:
        return shapes.SHAPES[name]
    except KeyError:
        raise RuntimeError(f"{SHAPE_ENV}={name!r} is not one of "
                           f"{', '.join(shapes.SHAPES)}") from None

