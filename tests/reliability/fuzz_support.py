"""What the schemathesis fuzz tests of both services share: request signing at the
transport, the checks, the example budgets, the seed and a tally of what was sent (the
services themselves run in a thread: `api_support.services`).

Operator calls to the central bank are signed after schemathesis has serialised the
request (a `requests` auth hook sees the exact bytes and URL), so the fuzzer reaches the
handlers and not only the signature check. Checks: no 5xx, and every status, content
type, header and body is one the document gives for the operation.
"""

from __future__ import annotations

import collections
import uuid

import pytest
import requests
from hypothesis import HealthCheck, Phase, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cbdc.httpsig import sign_request
from cbdc.signing import SigningKey
from tests.reliability.api_support import long_profile, seeded

# Hypothesis examples per operation: at least 100 in CI, many more in the long profile.
EXAMPLES = 1_000 if long_profile() else 100
SEED = seeded("schemathesis fuzz")  # one seed for every fuzz test of the run
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
    suppress_health_check=list(HealthCheck), print_blob=True)
# Stateful runs (links followed from one call to the next): scenarios and their length.
# No shrinking: the services keep their state from one scenario to the next, so a
# scenario replayed to shrink it answers differently and Hypothesis would report only
# that ("flaky"), hiding the failure itself. For the same reason the long profile runs
# longer scenarios rather than many more: Hypothesis also refuses a second scenario
# that starts as an earlier one did and then finds other links to follow.
STATEFUL_SETTINGS = settings(
    max_examples=12 if long_profile() else 8, stateful_step_count=40 if long_profile() else 8,
    deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True,
    phases=[Phase.explicit, Phase.generate])
# not_a_server_error is in the default set; these add the document's promises.
CHECKS = [status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
# The signature headers are the signer's to set, after the fuzzer: a header the fuzzer
# left out comes back signed, so "missing header accepted" says nothing there.
# Nor does "schema-violating request accepted": the violation may be a header the signer
# then set right.
SIGNED_EXCLUDED = [missing_required_header, negative_data_rejection]
# A request the schema allows may still be refused by a rule of the bank (a 422 the
# document gives: an unknown payee bank, the nil UUID as id, a key that is not P-256).
EXCLUDED = [positive_data_acceptance]



def fuzz_config() -> SchemathesisConfig:
    """Schemathesis's defaults, but a request made invalid by its size may also be
    refused with 413: the services refuse an oversized body before they parse it (a
    batch past its maxItems is usually past the body limit too)."""
    default = SchemathesisConfig.from_dict({}).projects.default.checks
    statuses = [*default.negative_data_rejection.expected_statuses, "413"]
    return SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": statuses}}})


# Seconds a fuzzed request may take (the whole chain export grows with the long profile).
CALL_TIMEOUT = 60
# Requests sent, by "METHOD /path template" and status: the figures of the report.
TALLY: collections.Counter[tuple[str, int]] = collections.Counter()


class OperatorSignature(requests.auth.AuthBase):
    """RFC 9421 signature of the request exactly as it leaves, under a fresh
    Idempotency-Key (the fuzzer draws few distinct keys, and a key reused with another
    body only ever reaches the 409; the races test keys)."""

    def __init__(self, key_id: str, key: SigningKey) -> None:
        self.key_id = key_id
        self.key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        for name in ("Signature", "Signature-Input", "Content-Digest"):
            request.headers.pop(name, None)
        request.headers["Idempotency-Key"] = key = str(uuid.uuid4())
        request.headers.update(sign_request(
            str(request.method), str(request.url), {"Idempotency-Key": key}, bytes(body),
            key_id=self.key_id, key=self.key))
        return request


def fresh_public_key(drawn: object) -> object:
    """Half the time (by the drawn text's length, so a seed replays) a real P-256 public
    key in place of the drawn text, so that creating a wallet or an operator succeeds
    and the links from its answer are followed."""
    if isinstance(drawn, str) and len(drawn) % 2 == 0:
        return SigningKey.generate().public.to_pem().decode()
    return drawn


@pytest.fixture(autouse=True)
def fuzz_seed() -> int:
    """Each fuzz test says its seed in its own output, shown when it fails."""
    print(f"schemathesis fuzz: seed {SEED} (replay with CBDC_SEED={SEED})")
    return SEED


def tally(label: str, status: int) -> None:
    TALLY[(label, status)] += 1


def report(title: str) -> str:
    """One line per operation: requests and their statuses (then the tally starts over,
    for the next module)."""
    by_operation: dict[str, collections.Counter[int]] = collections.defaultdict(
        collections.Counter)
    for (label, status), count in TALLY.items():
        by_operation[label][status] += count
    lines = [f"{title}: {sum(TALLY.values())} requests, {len(by_operation)} operations and "
             f"stateful runs (seed {SEED})"]
    for label in sorted(by_operation):
        statuses = ", ".join(f"{s}x{n}" for s, n in sorted(by_operation[label].items()))
        lines.append(f"  {label}: {statuses}")
    TALLY.clear()
    return "\n".join(lines)
