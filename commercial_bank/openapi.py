"""A commercial bank's wallet API as an OpenAPI 3.1 document, and the route that serves it.

Request bodies are generated from the msgspec Structs the handlers decode
(`commercial_bank.handlers`), so the document cannot drift from what the service reads.
The answers are plain dicts (`commercial_bank.service.Bank.summary`, `history`, `pay`,
...) and the signed payment order (`cbdc.payment_orders`) is read by hand, so their
schemas are written here; the integration tests check every answer against them.

Three kinds of caller:
    wallets         log in by challenge-response (`POST /v1/sessions/challenge`, then
                    `POST /v1/sessions`) and send the session token as a bearer token
                    (`walletSession`); a payment needs no session, its signature is the
                    authority
    tellers         `/v1/teller/...` with the bank's bearer token (`tellerToken`)
    anyone          `/health`, `/metrics`, `/openapi.json`, `/v1/ledger-keys`, and
                    `/v1/receivable...`, which other banks ask before they pay one of
                    this bank's wallets

Every 4xx and 5xx answer is an RFC 9457 problem (`application/problem+json`, `Problem`).
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from cbdc import openapi_support as oas
from cbdc import wire
from cbdc.addresses import EXAMPLE as ADDRESS_EXAMPLE
from cbdc.openapi_support import JSON, PROBLEM_JSON, Schema, json_body, ref
from cbdc.payment_orders import DOMAIN, INT_MAX, MEMO_MAX, REQUEST_ID
from commercial_bank import handlers, payment_requests

__all__ = ["JSON", "OPENAPI", "PROBLEM_JSON", "REQUEST_TYPES", "build_openapi", "openapi"]

OPENAPI = web.AppKey("openapi", dict[str, Any])

# Every request body the handlers decode with msgspec, and the problem every error is;
# each becomes components/schemas/<class name>.
REQUEST_TYPES: tuple[type[msgspec.Struct], ...] = (
    wire.Problem,
    handlers.OpenWallet,
    handlers.ChallengeRequest,
    handlers.LoginRequest,
    handlers.ClassChange,
    handlers.StatusChange,
    handlers.MoneyMove,
    handlers.ReceivableCheck,
    handlers.ReceivableChecks,
    payment_requests.NewPaymentRequest,
)

ADDRESS_PATTERN = r"^[A-Z0-9]{2,12}-[0-9]{12}-[0-9]{2}$"
TOKEN_PATTERN = r"^[A-Za-z0-9_-]{16,128}$"  # commercial_bank.sessions._OPAQUE
REQUEST_ID_PATTERN = f"^{REQUEST_ID.pattern}$"
EVENT_STREAM = "text/event-stream"
SIGNATURE_PATTERN = r"^[A-Za-z0-9_-]{1,200}$"  # base64url without padding
AMOUNT_MAX = wire.AMOUNT_LIMIT - 1


# ------------------------------------------------------------- hand-written schemas
def _integer(description: str, *, minimum: int = 0, maximum: int | None = None) -> Schema:
    schema: Schema = {"type": "integer", "minimum": minimum, "description": description}
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def _fen(description: str, *, minimum: int = 0) -> Schema:
    return _integer(f"{description}, in fen (0.01 CNY)", minimum=minimum, maximum=AMOUNT_MAX)


def _unix_seconds(description: str) -> Schema:
    return _integer(f"{description}, unix seconds")


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _hand_written_schemas(bank_code: str | None) -> dict[str, Schema]:
    own = (f"^{bank_code}-[0-9]{{12}}-[0-9]{{2}}$" if bank_code is not None
           else ADDRESS_PATTERN)
    usage = {
        "limit": _fen("the limit"),
        "used": _fen("paid out so far this period"),
        "left": _fen("what may still be paid this period"),
        "resets_at": {"type": "string", "format": "date-time",
                      "description": "when the period ends, RFC 3339 in the bank's time zone "
                                     "(midnight for the day, 1 January for the year)"},
    }
    transfer_id = msgspec.json.schema(wire.TransferId)
    return {
        "Address": {
            "title": "Address",
            "description": "A wallet address in canonical form: bank code, 12-digit wallet "
                           "number, ISO 7064 MOD 97-10 check digits.",
            "type": "string",
            "pattern": ADDRESS_PATTERN,
            "examples": [ADDRESS_EXAMPLE],
        },
        "OwnAddress": {
            "title": "OwnAddress",
            "description": "The address of one of this bank's wallets.",
            "type": "string",
            "pattern": own,
        },
        "LimitUsage": oas.closed_object(
            usage, title="LimitUsage",
            description="A payment limit of a period and how much of it is used."),
        "WalletLimits": oas.closed_object(
            {
                "balance_cap": _fen("most the wallet may hold"),
                "single": _fen("most one payment may be"),
                "daily": ref("LimitUsage"),
                "yearly": ref("LimitUsage"),
            },
            title="WalletLimits",
            description="The limits of the wallet's class (the bank's preset)."),
        "DepositAccount": oas.closed_object(
            {
                "number": _integer("deposit account number", minimum=1),
                "balance": _fen("what the deposit account holds"),
            },
            title="DepositAccount",
            description="The customer's deposit account linked to the wallet."),
        "WalletSummary": oas.closed_object(
            {
                "address": ref("OwnAddress"),
                "class": _integer("wallet class by KYC strength: 1 (in person) to 4 "
                                  "(phone number only)", minimum=1, maximum=4),
                "status": {"enum": ["active", "frozen", "lost", "closed"],
                           "description": "only an active wallet pays, receives and tops up"},
                "balance": _fen("what the wallet holds"),
                "available": _fen("the balance less payments still in progress"),
                "limits": ref("WalletLimits"),
                "deposit_account": _nullable(ref("DepositAccount")),
            },
            title="WalletSummary",
            description="A wallet, its balance and limits (Bank.summary)."),
        "Challenge": oas.closed_object(
            {
                "challenge": {"type": "string", "pattern": TOKEN_PATTERN,
                              "description": "128 random bits, base64url; sign the login "
                                             "message for it (cbdc.login) with the wallet's "
                                             "key"},
                "expires": _unix_seconds("when the challenge expires"),
            },
            title="Challenge",
            description="A login challenge, usable once."),
        "Session": oas.closed_object(
            {
                "token": {"type": "string", "pattern": TOKEN_PATTERN,
                          "description": "bearer token of the session (walletSession)"},
                "expires": _unix_seconds("when the session expires unless used before; "
                                         "each use extends it"),
            },
            title="Session",
            description="An open session of one wallet."),
        "HistoryEntry": oas.closed_object(
            {
                "id": transfer_id,
                "kind": {"enum": ["payment", "top_up", "redeem", "other"]},
                "direction": {"enum": ["in", "out"]},
                "amount": _fen("amount", minimum=1),
                "timestamp": _integer("ledger time of the entry, ns since the Unix epoch"),
                "block": _integer("height of the ledger block that holds it", minimum=1),
                "status": {"enum": ["settled", "pending", "rejected"],
                           "description": "a payment to another bank is pending until the "
                                          "central bank settles or refuses it"},
                "counterparty": _nullable({"type": "string",
                                           "description": "the other wallet's address"}),
                "memo": {"type": "string", "maxLength": MEMO_MAX},
            },
            title="HistoryEntry",
            description="One entry of a wallet's history; payments carry the counterparty "
                        "and memo.",
            optional=("counterparty", "memo")),
        "History": oas.closed_object(
            {
                "entries": {"type": "array", "items": ref("HistoryEntry")},
                "next_after": _nullable({"type": "string", "pattern": "^[0-9]+$",
                                         "description": "pass as `after` for the next page"}),
            },
            title="History",
            description="A page of a wallet's history, oldest first; `next_after` is null "
                        "on the last page."),
        "PaymentOrder": oas.closed_object(
            {
                "domain": {"const": DOMAIN},
                "payer": ref("Address"),
                "payee": ref("Address"),
                "amount": _integer("amount in fen (0.01 CNY)", minimum=1, maximum=INT_MAX),
                "sequence": _integer("per payer wallet; one order per number", minimum=1,
                                     maximum=INT_MAX),
                "expires": _integer("the order is refused from this second on, unix seconds",
                                    maximum=INT_MAX),
                "memo": {"type": "string", "maxLength": MEMO_MAX,
                         "description": "no control or bidirectional-override characters"},
            },
            title="PaymentOrder",
            description="What the payer signs: the RFC 8785 canonical JSON of these fields "
                        "(cbdc.payment_orders). Numbers are JSON integers, never floats."),
        "SignedOrder": oas.closed_object(
            {
                "order": ref("PaymentOrder"),
                "signature": {"type": "string", "pattern": SIGNATURE_PATTERN,
                              "description": "DER ECDSA P-256 signature (RFC 6979, low S) of "
                                             "the order's canonical bytes with the payer "
                                             "wallet's key, base64url without padding"},
            },
            title="SignedOrder",
            description="A signed payment order. Any JSON spelling of the order is read and "
                        "canonicalised again before the signature is checked; duplicate or "
                        "unknown fields are refused."),
        "Payment": oas.closed_object(
            {
                "id": transfer_id,
                "status": {"enum": ["settled", "pending"],
                           "description": "pending: a payment to another bank waiting for "
                                          "the central bank; the money is held meanwhile"},
                "amount": _fen("amount", minimum=1),
                "payer": ref("OwnAddress"),
                "payee": ref("Address"),
            },
            title="Payment",
            description="A payment made (or the first answer to the same order)."),
        "PaymentEvent": oas.closed_object(
            {
                "type": {"enum": ["payment_in", "payment_out"]},
                "id": transfer_id,
                "status": {"enum": ["settled", "pending"]},
                "amount": _fen("amount", minimum=1),
                "payer": {"type": "string", "description": "the paying wallet's address "
                                                          "(as the payer's bank gave it)"},
                "payee": ref("Address"),
                "memo": {"type": "string", "maxLength": MEMO_MAX},
            },
            title="PaymentEvent",
            description="`event: payment` of a wallet's event stream: a payment into or out "
                        "of the wallet, sent once it is durable."),
        "LiveStatus": oas.closed_object(
            {"live": {"type": "boolean",
                      "description": "false: events may be missed until it is true again; "
                                     "then reload the history"}},
            title="LiveStatus",
            description="`event: status` of a wallet's event stream."),
        "PaymentRequestCreated": oas.closed_object(
            {
                "uri": {"type": "string", "pattern": "^cbdc:",
                        "description": "the `cbdc:` payment request URI; it fits a version "
                                       "10 QR code"},
                "qr": {"type": "string",
                       "description": "the URI's QR code as lines of Unicode half blocks"},
                "request_id": {"type": "string", "pattern": REQUEST_ID_PATTERN},
                "expires": _unix_seconds("when the request expires"),
            },
            title="PaymentRequestCreated",
            description="A payment request to show the payer. An order pays it when its "
                        "memo starts with `req:<request_id>`."),
        "PaymentRequestStatus": oas.closed_object(
            {
                "request_id": {"type": "string", "pattern": REQUEST_ID_PATTERN},
                "status": {"enum": ["open", "paid", "expired"]},
                "amount": _nullable(_fen("the amount asked (null: the payer chooses)",
                                         minimum=1)),
                "memo": {"type": "string", "maxLength": MEMO_MAX},
                "expires": _unix_seconds("when the request expires"),
                "paid_by": _nullable({"type": "string",
                                      "description": "the paying wallet's address"}),
                "payment_id": transfer_id,
            },
            title="PaymentRequestStatus",
            description="A payment request as its payee sees it; `paid_by` and "
                        "`payment_id` once it is paid.",
            optional=("paid_by", "payment_id")),
        **oas.receipt_schemas("GET /v1/ledger-keys"),
        "WalletReceipts": oas.closed_object(
            {
                "id": transfer_id,
                "amount": _fen("amount of the payment", minimum=1),
                "bank": msgspec.json.schema(wire.BankCode) if bank_code is None
                else {"const": bank_code},
                "bank_receipt": ref("Receipt"),
                "central_bank_receipt": _nullable(ref("Receipt")),
                "central_bank_note": _nullable({
                    "type": "string",
                    "description": "why there is no central bank receipt: a payment within "
                                   "the bank, not settled yet, or the central bank is away"}),
            },
            title="WalletReceipts",
            description="Proof that one entry of the wallet's history is in a block of this "
                        "bank's ledger (signed by its ledger key) and, for a payment between "
                        "banks, in a block of the central bank's ledger (signed by the "
                        "central bank's published key). Check them with "
                        "cbdc.receipts.verify_transfer_receipt."),
        "LedgerKeys": oas.closed_object(
            {
                "bank": msgspec.json.schema(wire.BankCode) if bank_code is None
                else {"const": bank_code},
                "bank_key_pem": {"type": "string", "minLength": 1,
                                 "description": "P-256 public key (PEM) that signs this "
                                                "bank's ledger blocks"},
                "central_bank_key_pem": _nullable({
                    "type": "string", "minLength": 1,
                    "description": "the central bank's ledger key as it publishes it at its "
                                   "GET /v1/ledger-key (null while it cannot be reached)"}),
            },
            title="LedgerKeys",
            description="The public keys that verify receipts."),
        "CashIn": oas.closed_object(
            {"id": transfer_id, "status": {"const": "settled"}},
            title="CashIn",
            description="Cash paid into a deposit account."),
        "Receivable": oas.closed_object(
            {
                "receivable": {"type": "boolean"},
                "reason": _nullable({"type": "string",
                                     "description": "why not, when it cannot"}),
            },
            title="Receivable",
            description="Whether the wallet can receive the amount now."),
        "ReceivableResults": oas.closed_object(
            {"results": {"type": "array", "items": ref("Receivable"),
                         "minItems": 1, "maxItems": handlers.MAX_RECEIVABLE_CHECKS,
                         "description": "one answer per check, in the order asked"}},
            title="ReceivableResults",
            description="Whether each wallet can receive its amount now."),
        "Health": oas.closed_object(
            {
                "status": {"const": "ok"},
                "bank": ({"const": bank_code} if bank_code is not None
                         else msgspec.json.schema(wire.BankCode)),
                "ledger_height": _integer("height of the newest block of the bank's ledger "
                                          "(0: none yet)"),
            },
            title="Health",
            description="The service is up and its ledger is loaded."),
    }


def component_schemas(bank_code: str | None = None) -> dict[str, Schema]:
    """components/schemas: generated from the request Structs, then the hand-written ones."""
    return oas.component_schemas(REQUEST_TYPES, _hand_written_schemas(bank_code))


# -------------------------------------------------------------------- parameters
def _parameters() -> dict[str, Schema]:
    def query(name: str, description: str, schema: Schema) -> Schema:
        return {"name": name, "in": "query", "required": False, "description": description,
                "schema": schema}

    return {
        "Address": {
            "name": "address", "in": "path", "required": True,
            "description": "a wallet of this bank (read leniently: lower case, and a space "
                           "for a dash, are accepted)",
            "schema": ref("OwnAddress"),
        },
        "AnyAddress": {
            "name": "address", "in": "path", "required": True,
            "description": "a wallet address, of any bank",
            "schema": ref("Address"),
        },
        "EntryId": {
            "name": "id", "in": "path", "required": True,
            "description": "the id of an entry of the wallet's history",
            "schema": {"type": "string", "format": "uuid"},
        },
        "RequestId": {
            "name": "request_id", "in": "path", "required": True,
            "description": "a payment request id this wallet created",
            "schema": {"type": "string", "pattern": REQUEST_ID_PATTERN},
        },
        "DepositNumber": {
            "name": "number", "in": "path", "required": True,
            "description": "deposit account number",
            "schema": {"type": "integer", "minimum": 0},
        },
        "Direction": query("direction", "payments in, out, or both",
                           {"enum": ["both", "in", "out"], "default": "both"}),
        "After": query("after", "cursor from a previous page (`next_after`); absent: from "
                                "the start", {"type": "string", "pattern": "^[0-9]+$"}),
        "Limit": query("limit", "most entries to return",
                       {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
        "Since": query("since", "entries from this time on, unix seconds",
                       {"type": "integer", "minimum": 0}),
        "Until": query("until", "entries up to this time, unix seconds",
                       {"type": "integer", "minimum": 0}),
        "Amount": query("amount", "the amount to receive, in fen",
                        {"type": "integer", "minimum": 1, "maximum": AMOUNT_MAX,
                         "default": 1}),
    }


# --------------------------------------------------------------------- responses
_json = oas.json_response
_problem = oas.problem_response

SERVER_ERRORS = {
    "500": "Internal error (logged with the `instance` incident id); the request may or "
           "may not have been applied: retry with the same id, or send the same signed "
           "order again.",
}


def _bad_body() -> dict[str, Schema]:
    return {
        "400": _problem("Malformed request: the body is empty or not JSON."),
        "413": _problem("The body is too large (64 KiB at most)."),
    }


def _session_errors() -> dict[str, Schema]:
    return {
        "401": _problem(
            "No session, a malformed Authorization header, an expired or ended session, or "
            "a session of another wallet: log in (again) with this wallet.",
            headers={"WWW-Authenticate": {
                "description": "RFC 6750 challenge, e.g. `Bearer realm=\"wallet\", "
                               "error=\"invalid_token\"` (absent for another wallet's "
                               "session)",
                "schema": {"type": "string"}}}),
        "404": _problem("No such wallet at this bank."),
        "503": _problem("The session store cannot be reached for a moment: logins and "
                        "session calls wait; signed payments still work. Retry shortly."),
    }


def _retry_after() -> Schema:
    return {"description": "seconds to wait", "schema": {"type": "integer", "minimum": 0}}


def _requests_unavailable() -> Schema:
    return _problem("Payment requests (or the session store) are unavailable for a moment; "
                    "payments still work. Retry after the delay.",
                    headers={"Retry-After": _retry_after()})


def _teller_errors() -> dict[str, Schema]:
    return {"401": _problem("Missing or wrong teller token "
                            "(`Authorization: Bearer <token>`).")}


def _invalid(*reasons: str) -> Schema:
    """422: the listed reasons (problem `field` names the JSON path or parameter, `rule`
    the rule; a ledger refusal has type .../rejected and a `code`)."""
    return _problem("Unprocessable: " + "; ".join(reasons) + ".")


ADDRESS_INVALID = ("the address in the path is not an address or not one of this bank's "
                   "(`field` address)")
BODY_INVALID = "the body breaks the schema (`field` names its JSON path, `rule` the rule)"


def _wallet_summary(description: str) -> Schema:
    return _json(ref("WalletSummary"), description)


# -------------------------------------------------------------------- operations
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "wallet": [{"walletSession": []}],
    "teller": [{"tellerToken": []}],
    "public": [],
}


def _op(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[str, Schema],
    *,
    security: str = "public",
    body: Schema | None = None,
    parameters: tuple[str, ...] = (),
    description: str | None = None,
) -> Schema:
    operation: Schema = {
        "operationId": operation_id,
        "summary": summary,
        "tags": [tag],
        "security": list(SECURITY[security]),
    }
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = [oas.parameter_ref(name) for name in parameters]
    if body is not None:
        operation["requestBody"] = body
    operation["responses"] = oas.with_server_errors(responses, SERVER_ERRORS)
    return operation


def _wallet_op(operation_id: str, summary: str, responses: dict[str, Schema], *,
               body: Schema | None = None, parameters: tuple[str, ...] = (),
               description: str | None = None) -> Schema:
    """An operation on the wallet in the path, with that wallet's session."""
    errors = _session_errors() | (_bad_body() if body is not None else {})
    return _op(operation_id, summary, "wallets", errors | responses, security="wallet",
               body=body, parameters=("Address", *parameters), description=description)


def _paths() -> dict[str, Schema]:
    rejected_money = (
        "the ledger refused it (`code`: `wallet_frozen`, `wallet_lost`, `wallet_closed`, "
        "`no_deposit_account`, `insufficient_funds`, `exceeds_balance_cap`, "
        "`exceeds_single_limit`, `exceeds_daily_limit`, `exceeds_yearly_limit`, ...; the "
        "detail says how much is left and when the limit resets)")
    money_conflict = _problem("This id was used before for a different request.")
    return {
        # ----------------------------------------------------------- wallets
        "/v1/wallets": {"post": _op(
            "openWallet", "Open a class 4 wallet with a phone number", "wallets",
            {"201": oas.with_links(_wallet_summary("Opened: an active class 4 wallet."), {
                "GetReceivable": ("getReceivable", {"address": "$response.body#/address"})}),
             "409": _problem("This public key already holds an open wallet."),
             "422": _invalid(BODY_INVALID, "`public_key_pem` is not a P-256 public key "
                                           "(`rule` pem-p256)",
                             "the phone number is not a mainland mobile number (`rule` kyc)"),
             **_bad_body()},
            body=json_body("OpenWallet", "The wallet's P-256 public key (it signs logins and "
                                         "payments) and the holder's phone number."),
            description="Anonymous (class 4) wallets need a phone number only; stronger "
                        "KYC raises the class and its limits "
                        "(POST /v1/wallets/{address}/class).")},
        "/v1/wallets/{address}": {"get": _wallet_op(
            "getWallet", "The wallet, its balance and limits",
            {"200": _wallet_summary("The wallet."), "422": _invalid(ADDRESS_INVALID)})},
        "/v1/wallets/{address}/class": {"post": _wallet_op(
            "changeWalletClass", "Upgrade with KYC evidence, or downgrade",
            {"200": _wallet_summary("The class changed; the new limits apply at once."),
             "403": _problem("Class 1 needs identification in person at a branch "
                             "(POST /v1/teller/wallets/{address}/class)."),
             "422": _invalid(ADDRESS_INVALID, BODY_INVALID,
                             "the name or resident ID is not valid (`rule` kyc)",
                             "the class needs evidence the wallet lacks (`rule` required, "
                             "`field` resident_id, bank_card or in_person)",
                             "the wallet is closed (`code` wallet_closed)")},
            body=json_body("ClassChange", "The class wanted (`class`) and evidence for it."),
            description="Class 3 needs a name and resident ID number, class 2 also a bank "
                        "card; evidence given before is kept.")},
        "/v1/wallets/{address}/status": {"post": _wallet_op(
            "setWalletStatus", "Freeze, unfreeze or report the wallet lost",
            {"200": _wallet_summary("The status changed."),
             "403": _problem("A wallet reported lost cannot be unfrozen; close it instead."),
             "422": _invalid(ADDRESS_INVALID, BODY_INVALID,
                             "the wallet is closed (`code` wallet_closed)")},
            body=json_body("StatusChange", "The new status."),
            description="A frozen wallet can neither pay nor receive. Reporting a wallet "
                        "lost freezes it for good and ends all its sessions.")},
        "/v1/wallets/{address}/close": {"post": _wallet_op(
            "closeWallet", "Close the wallet, moving its balance to the deposit account",
            {"200": _wallet_summary("Closed (or already closed); the balance is in the "
                                    "linked deposit account."),
             "422": _invalid(ADDRESS_INVALID, "payments are still in progress (`code` "
                                              "payments_pending)",
                             "the ledger refused to move the balance (`code`)")},
            description="Links a deposit account if there is none, moves the balance "
                        "there and ends all the wallet's sessions. No request body.")},
        "/v1/wallets/{address}/deposit-account": {"post": _wallet_op(
            "linkDepositAccount", "Open (or find) the holder's deposit account and link it",
            {"200": _wallet_summary("Linked; `deposit_account` names it."),
             "422": _invalid(ADDRESS_INVALID)},
            description="No request body.")},
        "/v1/wallets/{address}/top-up": {"post": _wallet_op(
            "topUp", "Move money from the deposit account into the wallet",
            {"200": _wallet_summary("Topped up (or the first top-up with this id)."),
             "409": money_conflict,
             "422": _invalid(ADDRESS_INVALID, BODY_INVALID, rejected_money)},
            body=json_body("MoneyMove", "A client-chosen id (retrying with it is safe) and "
                                        "the amount."),
            description="The bank asks the central bank to issue e-CNY against its "
                        "reserves when its float is short.")},
        "/v1/wallets/{address}/redeem": {"post": _wallet_op(
            "redeem", "Move money from the wallet back to the deposit account",
            {"200": _wallet_summary("Redeemed (or the first redemption with this id)."),
             "409": money_conflict,
             "422": _invalid(ADDRESS_INVALID, BODY_INVALID, rejected_money)},
            body=json_body("MoneyMove", "A client-chosen id (retrying with it is safe) and "
                                        "the amount."))},
        "/v1/wallets/{address}/history": {"get": _wallet_op(
            "getHistory", "The wallet's payments, top-ups and redemptions, a page at a time",
            {"200": _json(ref("History"), "A page, oldest first."),
             "422": _invalid(ADDRESS_INVALID, "a query parameter is out of range (`field` "
                                              "names it)")},
            parameters=("Direction", "After", "Limit", "Since", "Until"))},
        "/v1/wallets/{address}/receipts/{id}": {"get": _wallet_op(
            "getReceipts", "Receipts proving one history entry is in signed blocks",
            {"200": _json(ref("WalletReceipts"), "The bank's receipt and, for a payment "
                                                 "between banks, the central bank's."),
             "404": _problem("No such entry in this wallet's history."),
             "422": _invalid(ADDRESS_INVALID, "the id is not a UUID (`field` id)")},
            parameters=("EntryId",))},
        "/v1/wallets/{address}/events": {"get": _wallet_op(
            "getWalletEvents", "The wallet's payments as they happen (Server-Sent Events)",
            {"200": {
                "description": "A `text/event-stream` that stays open: `retry: 3000`, then "
                               "`event: status` (LiveStatus), `event: payment` "
                               "(PaymentEvent) for each payment in or out, and a "
                               "`: keepalive` comment every 15 s. It ends when the session "
                               "ends, the client lags far behind, or the bank stops.",
                "content": {EVENT_STREAM: {
                    "schema": {"type": "string"},
                    "x-sse-events": {"status": ref("LiveStatus"),
                                     "payment": ref("PaymentEvent")},
                }},
            },
             "422": _invalid(ADDRESS_INVALID),
             "503": _problem("Live events (or the session store) are unavailable for a "
                             "moment; payments still work. Retry after the delay.",
                             headers={"Retry-After": _retry_after()})},
            description="Events are not stored: when `status` says `live: false`, events "
                        "may be lost until it says `live: true` again; reload the history "
                        "then.")},
        "/v1/wallets/{address}/payment-requests": {"post": _wallet_op(
            "createPaymentRequest", "Ask to be paid: a `cbdc:` URI and its QR code",
            {"201": {**oas.with_links(_json(ref("PaymentRequestCreated"), "Created."), {
                "GetPaymentRequest": ("getPaymentRequest", {
                    "address": "$request.path.address",
                    "request_id": "$response.body#/request_id"})}),
                     "headers": {"Location": {
                         "description": "the request's status "
                                        "(GET .../payment-requests/{request_id})",
                         "schema": {"type": "string"}}}},
             "422": _invalid(ADDRESS_INVALID, BODY_INVALID,
                             "the memo has a control character (`rule` memo) or makes "
                             "the URI too long for a QR code (`rule` payment-uri)"),
             "503": _requests_unavailable()},
            body=json_body("NewPaymentRequest", "The amount (absent: the payer chooses), a "
                                                "memo, and how long the request stays "
                                                "open."))},
        "/v1/wallets/{address}/payment-requests/{request_id}": {"get": _wallet_op(
            "getPaymentRequest", "Whether a payment request was paid",
            {"200": _json(ref("PaymentRequestStatus"), "The request."),
             "404": _problem("No such wallet, or the wallet has no such payment request "
                             "(or it expired more than a day ago)."),
             "422": _invalid(ADDRESS_INVALID),
             "503": _requests_unavailable()},
            parameters=("RequestId",),
            description="A settled payment into the wallet before the request expires, "
                        "with the request's memo tag and (if it names one) its amount, "
                        "fills it; the first such payment is kept.")},
        # ---------------------------------------------------------- sessions
        "/v1/sessions/challenge": {"post": _op(
            "createChallenge", "A login challenge for a wallet", "sessions",
            {"200": _json(ref("Challenge"), "Sign it within its lifetime, once."),
             "422": _invalid(BODY_INVALID, "the address is not one of this bank's"),
             "503": _session_errors()["503"], **_bad_body()},
            body=json_body("ChallengeRequest", "The wallet that wants to log in."))},
        "/v1/sessions": {"post": _op(
            "login", "Open a session with a signed challenge", "sessions",
            {"200": _json(ref("Session"), "Logged in: send `token` as a bearer token."),
             "401": _problem("The challenge is unknown, used or expired, was issued for "
                             "another wallet, or the signature does not match the "
                             "wallet's key."),
             "404": _problem("No such wallet at this bank."),
             "422": _invalid(BODY_INVALID, "the address is not one of this bank's"),
             "503": _session_errors()["503"], **_bad_body()},
            body=json_body("LoginRequest", "The address, the challenge and the wallet's "
                                           "signature of the login message, base64url."),
            description="The wallet signs the RFC 8785 canonical JSON of `{\"domain\": "
                        "\"cbdc/login/v1\", \"bank\", \"address\", \"challenge\"}` "
                        "(cbdc.login). Each challenge gets one attempt.")},
        # ---------------------------------------------------------- payments
        "/v1/payments": {"post": _op(
            "pay", "Pay with a signed payment order", "payments",
            {"201": _json(ref("Payment"), "Paid, or accepted as pending when the payee is "
                                          "at another bank and the central bank cannot be "
                                          "reached; the same order again gets the same "
                                          "answer and pays nothing more."),
             "409": _problem("The payer's sequence number was used for another order."),
             "413": _problem("The body is too large (64 KiB at most)."),
             "422": _invalid(
                 "the order is malformed or not JSON (`rule` malformed, `field` order.<name>)",
                 "signed for another purpose (`rule` wrong_domain), badly signed (`rule` "
                 "bad_signature) or expired (`rule` expired)",
                 "the payer is not a wallet of this bank (`field` order.payer)",
                 "the payee cannot receive (`code` payee_unknown, payee_cannot_receive, "
                 "exceeds_balance_cap; `field` order.payee)",
                 rejected_money)},
            body=json_body("SignedOrder", "The order and the payer's signature."),
            description="No session needed: the payer wallet's signature is the authority. "
                        "A payee at another bank is checked with that bank first, then "
                        "paid through the central bank.")},
        "/v1/receivable/{address}": {"get": _op(
            "getReceivable", "Can this wallet receive an amount now?", "interbank",
            {"200": _json(ref("Receivable"), "The answer, and why not."),
             "422": _invalid("the address or amount is not valid (`field` names it)")},
            parameters=("AnyAddress", "Amount"),
            description="Asked by a payer's bank before it pays one of this bank's wallets; "
                        "a wallet of another bank is never receivable here. The answer "
                        "advises: it reads the balance as this bank's ledger has decided "
                        "it so far (a credit still committing counts), and the credit is "
                        "checked again when it is booked; one that no longer fits is sent "
                        "back to the payer's bank.")},
        "/v1/receivable": {"post": _op(
            "checkReceivable", "Can these wallets receive these amounts now?", "interbank",
            {"200": _json(ref("ReceivableResults"), "An answer per check, in order."),
             "422": _invalid(BODY_INVALID, "an address is not valid (`field` "
                             "$.checks[i].address)"),
             **_bad_body()},
            body=json_body("ReceivableChecks", "Up to 1,000 (address, amount) checks."),
            description="GET /v1/receivable/{address} for many wallets in one request, "
                        "asked by a payer's bank with many payments on their way; each "
                        "answer is the one that GET would give.")},
        # ------------------------------------------------------------ teller
        "/v1/teller/wallets/{address}/class": {"post": _op(
            "tellerChangeWalletClass", "Change a wallet's class at a branch", "teller",
            {"200": _wallet_summary("The class changed."),
             "404": _problem("No such wallet at this bank."),
             "422": _invalid(ADDRESS_INVALID, BODY_INVALID,
                             "the name or resident ID is not valid (`rule` kyc)",
                             "the class needs evidence the wallet lacks (`rule` required)",
                             "the wallet is closed (`code` wallet_closed)"),
             **_teller_errors(), **_bad_body()},
            security="teller", parameters=("Address",),
            body=json_body("ClassChange", "The class and the evidence the teller saw; "
                                          "`in_person` allows class 1."))},
        "/v1/teller/deposits/{number}/cash-in": {"post": _op(
            "cashIn", "Pay cash into a deposit account", "teller",
            {"201": _json(ref("CashIn"), "Paid in (or the first result for this id)."),
             "409": _problem("The id was used before for another amount or account."),
             "422": _invalid("the number is not digits (`field` number)", BODY_INVALID,
                             "the ledger refused it (`code`, e.g. credit_account_not_found "
                             "for an unknown account)"),
             **_teller_errors(), **_bad_body()},
            security="teller", parameters=("DepositNumber",),
            body=json_body("MoneyMove", "A client-chosen id and the amount."))},
        # ------------------------------------------------------------ public
        "/v1/ledger-keys": {"get": _op(
            "getLedgerKeys", "The keys that verify receipts", "public",
            {"200": _json(ref("LedgerKeys"), "This bank's and the central bank's keys.")})},
        "/health": {"get": _op(
            "health", "Liveness and ledger height", "public",
            {"200": _json(ref("Health"), "Up, ledger loaded.")})},
        "/metrics": {"get": _op(
            "metrics", "Prometheus metrics", "public", {"200": oas.metrics_response()})},
        "/openapi.json": {"get": _op(
            "openapi", "This document", "public", {"200": oas.openapi_response()})},
    }


TAGS = [
    {"name": "wallets", "description": "A wallet's own calls (wallet session)."},
    {"name": "sessions", "description": "Logging in by challenge-response."},
    {"name": "payments", "description": "Signed payment orders."},
    {"name": "interbank", "description": "Calls other banks make (no authentication)."},
    {"name": "teller", "description": "Branch operations (teller token)."},
    {"name": "public", "description": "No authentication."},
]

DESCRIPTION = """\
Retail e-CNY wallets of one operator bank: opening wallets by phone number, KYC classes
and their limits, deposits, top-up and redemption, and payments by signed payment order,
within the bank or to other banks through the central bank.

Amounts are integers of fen (0.01 CNY), never floats. Ids are 128-bit, chosen by the
client, in UUID form; retrying a request with the same id is safe, and so is sending the
same signed order again.

A wallet logs in by signing a challenge with its key (`walletSession`); a payment needs no
session, the order's signature is the authority. Teller calls carry the bank's bearer
token (`tellerToken`). Every error is an RFC 9457 problem.
"""


def build_openapi(bank_code: str | None = None) -> dict[str, Any]:
    """A fresh OpenAPI 3.1.0 document; with `bank_code`, addresses of this bank's wallets
    are constrained to it."""
    title = "CBDC commercial bank wallet API"
    return oas.openapi_document(
        title=f"{title} ({bank_code})" if bank_code else title,
        version="0.1.0",
        description=DESCRIPTION,
        tags=TAGS,
        paths=_paths(),
        components={
            "schemas": component_schemas(bank_code),
            "parameters": _parameters(),
            "securitySchemes": {
                "walletSession": {
                    "type": "http", "scheme": "bearer",
                    "description": "Session token from POST /v1/sessions (a challenge "
                                   "signed with the wallet's key); it stays valid 30 "
                                   "minutes after its last use, for its own wallet only."},
                "tellerToken": {
                    "type": "http", "scheme": "bearer",
                    "description": "The bank's teller token."},
            },
        },
    )


async def openapi(request: web.Request) -> web.StreamResponse:
    """GET /openapi.json: the document built when the app was created."""
    return web.Response(body=msgspec.json.encode(request.app[OPENAPI]),
                        content_type="application/json")
