"""RFC 9457 problem responses for the aiohttp services.

Handlers raise `ProblemError` (usually through a helper: `not_found(...)`,
`validation(...)`, ...) and `problem_middleware` turns it, and every other failure,
into an ``application/problem+json`` response:

    CbdcError                       (cbdc.errors)
    └── ProblemError                an HTTP problem (.status, .type, .title, .detail,
                                    .field, .rule, .code, .extra, .headers)

    ProblemError                    its own status and body
    aiohttp HTTPException >= 400    the same status (404 unknown route, 405, 413, ...)
    msgspec.ValidationError         422, `field` = the JSON path, `rule` = msgspec's words
    msgspec.DecodeError             400, the body is not JSON
    anything else                   500 with a generic detail, logged with its traceback

Each problem `type` is a stable URI, ``https://cbdc.example/problems/<slug>``, that a
client may branch on; `title` is the same for every problem of a type; `detail` says
what happened this time.
"""

from __future__ import annotations

import http
import logging
import math
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from cbdc.errors import CbdcError
from cbdc.wire import Problem, id_from_text

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_TYPE_BASE",
    "ProblemError",
    "bad_request",
    "conflict",
    "forbidden",
    "from_msgspec_error",
    "json_response",
    "not_found",
    "problem_middleware",
    "rate_limited",
    "read_json",
    "rejected",
    "too_large",
    "unauthorized",
    "validation",
]

PROBLEM_TYPE_BASE = "https://cbdc.example/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"

# Slug and title of the problem type for each plain HTTP status. Titles are RFC 9110's
# reason phrases, written out so they stay the same whatever Python's http module says.
_STATUS_TYPES = {
    400: ("bad-request", "Bad Request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not Found"),
    405: ("method-not-allowed", "Method Not Allowed"),
    406: ("not-acceptable", "Not Acceptable"),
    409: ("conflict", "Conflict"),
    411: ("length-required", "Length Required"),
    413: ("payload-too-large", "Content Too Large"),
    415: ("unsupported-media-type", "Unsupported Media Type"),
    422: ("validation-failed", "Unprocessable Content"),
    429: ("rate-limited", "Too Many Requests"),
    500: ("internal-error", "Internal Server Error"),
    501: ("not-implemented", "Not Implemented"),
    502: ("bad-gateway", "Bad Gateway"),
    503: ("unavailable", "Service Unavailable"),
    504: ("gateway-timeout", "Gateway Timeout"),
}
_DEFAULT_DETAILS = {
    404: "there is no such resource",
    405: "the resource does not accept this method",
    413: "the request body is too large",
}
# Headers an aiohttp HTTPException may carry that still mean something on a problem.
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")
# msgspec's messages end with " - at `$.path`" when the error is below the root.
_AT_PATH = re.compile(r"^(?P<rule>.*) - at `(?P<path>\$[^`]*)`$", re.DOTALL)
_NAMED_FIELD = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<name>[^`]+)`")

T = TypeVar("T")
U = TypeVar("U")


def problem_type(slug: str) -> str:
    return PROBLEM_TYPE_BASE + slug


def _status_type(status: int) -> tuple[str, str]:
    """The slug and title for a plain HTTP status."""
    if status in _STATUS_TYPES:
        return _STATUS_TYPES[status]
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = f"HTTP {status}"
    return f"http-{status}", phrase


class ProblemError(CbdcError):
    """An error a handler reports to its client as an RFC 9457 problem.

    `type` is a stable URI, `title` a fixed summary of the type, `detail` this
    occurrence; `field` names the offending JSON path and `rule` the rule it broke;
    `code` is a ledger result code (e.g. ``exceeds_credits``); `instance` a URI naming
    this occurrence; `extra` holds extension members added to the body and `headers`
    response headers (e.g. Retry-After).
    """

    def __init__(
        self,
        status: int,
        type: str,  # the RFC 9457 member name, shadowing the builtin here only
        title: str,
        detail: str | None = None,
        *,
        field: str | None = None,
        rule: str | None = None,
        code: str | None = None,
        instance: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.field = field
        self.rule = rule
        self.code = code
        self.instance = instance
        self.extra: dict[str, Any] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})

    def to_problem(self) -> Problem:
        return Problem(
            type=self.type,
            title=self.title,
            status=self.status,
            detail=self.detail,
            field=self.field,
            rule=self.rule,
            code=self.code,
            instance=self.instance,
        )

    def to_response(self) -> web.Response:
        """The problem as an ``application/problem+json`` response."""
        body = msgspec.to_builtins(self.to_problem())
        # Extension members never override the members RFC 9457 defines.
        body.update({k: v for k, v in self.extra.items() if k not in body})
        return web.Response(
            status=self.status,
            body=msgspec.json.encode(body),
            content_type=PROBLEM_CONTENT_TYPE,
            headers=self.headers,
        )


def _status_problem(status: int, detail: str | None, **fields: Any) -> ProblemError:
    slug, title = _status_type(status)
    return ProblemError(status, problem_type(slug), title, detail, **fields)


# ---------------------------------------------------------------------- helpers
def bad_request(detail: str) -> ProblemError:
    """400: the request cannot be understood (e.g. the body is not JSON)."""
    return _status_problem(400, detail)


def validation(field: str, rule: str, detail: str) -> ProblemError:
    """422: `field` (a JSON path or parameter name) breaks `rule`."""
    return _status_problem(422, detail, field=field, rule=rule)


def query_value(request: web.Request, name: str) -> str | None:
    """The query parameter `name` (None when absent); given more than once it is a 422,
    not a silent pick of one of the values. Given empty (`?name=`) it is "", which is no
    value of any parameter: callers refuse it rather than take it for absent."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise validation(name, "single", f"{name} may be given once, not {len(values)} times")
    return values[0] if values else None


def transfer_id(text: str, field: str = "id") -> int:
    """A client-chosen id in UUID form as the ledger's 128-bit number; the nil UUID is no
    id (422 naming `field`)."""
    try:
        return id_from_text(text)
    except ValueError:
        raise validation(field, "nonzero-uuid",
                         f"{text!r} is not an id: use a UUID other than the nil UUID") from None


def unauthorized(detail: str) -> ProblemError:
    """401: the request is not signed, or its signature is refused."""
    return _status_problem(401, detail)


def forbidden(detail: str) -> ProblemError:
    """403: the caller is known but may not do this."""
    return _status_problem(403, detail)


def not_found(detail: str) -> ProblemError:
    return _status_problem(404, detail)


def conflict(detail: str) -> ProblemError:
    """409: e.g. an idempotency key or id reused with different content."""
    return _status_problem(409, detail)


def too_large(detail: str) -> ProblemError:
    return _status_problem(413, detail)


def rate_limited(detail: str, retry_after: float) -> ProblemError:
    """429 with ``Retry-After`` (whole seconds, rounded up) and a `retry_after` member."""
    seconds = max(0, math.ceil(retry_after))
    return _status_problem(
        429, detail, extra={"retry_after": seconds}, headers={"Retry-After": str(seconds)}
    )


def rejected(code: str, detail: str, field: str | None = None) -> ProblemError:
    """422: the ledger refused the operation with result `code` (e.g. ``exceeds_credits``)."""
    return ProblemError(
        422, problem_type("rejected"), "Rejected by the ledger", detail, field=field, code=code
    )


def internal_error(incident: str) -> ProblemError:
    return _status_problem(
        500,
        f"an internal error occurred; it was logged as incident {incident}",
        instance=f"urn:uuid:{incident}",
    )


def from_msgspec_error(exc: msgspec.DecodeError) -> ProblemError:
    """422 naming the JSON path for a ValidationError; 400 for JSON that does not parse."""
    message = str(exc)
    if not isinstance(exc, msgspec.ValidationError):
        return bad_request(f"the request body is not valid JSON: {message}")
    path, rule = "$", message
    match = _AT_PATH.match(message)
    if match:
        path, rule = match["path"], match["rule"]
    named = _NAMED_FIELD.match(rule)
    if named:  # a missing or unknown member: name it, not its parent object
        path = f"{path}.{named['name']}"
    return validation(path, rule, f"{path}: {rule}")


def from_http_exception(exc: web.HTTPException) -> ProblemError:
    headers = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
    # aiohttp's default text is "<status>: <reason>", the title again; say something useful.
    detail = exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else None
    if detail is None:
        detail = _DEFAULT_DETAILS.get(exc.status)
    return _status_problem(exc.status, detail, headers=headers)


# ------------------------------------------------------------------- middleware
def problem_middleware(logger: logging.Logger) -> Middleware:
    """A middleware that answers every error with an RFC 9457 problem (see module doc)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ProblemError as exc:
            problem = exc
        except web.HTTPException as exc:
            if exc.status < 400:
                raise  # redirects and 2xx shortcuts are not problems
            problem = from_http_exception(exc)
        except msgspec.DecodeError as exc:  # ValidationError is a subclass
            problem = from_msgspec_error(exc)
        except Exception:
            incident = str(uuid.uuid4())
            logger.exception(
                "unhandled error in %s %s (incident %s)", request.method, request.path, incident
            )
            problem = internal_error(incident)
        logger.debug("%s %s: %s %s", request.method, request.path, problem.status, problem)
        return problem.to_response()

    return middleware


# ------------------------------------------------------------------- JSON bodies
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


async def read_json(request: web.Request, type_: type[T]) -> T:
    """The request body decoded into `type_`, or a ProblemError: 413, 400 or 422."""
    return _decode(await _read_body(request), type_)


async def read_json_checked(request: web.Request, unchecked: type[U],
                            check: Callable[[U], bool], type_: type[T]) -> U | T:
    """`read_json(request, type_)`, in two cheaper steps when the body is good: decode
    into `unchecked` (a twin of `type_` without its costly checks), then `check` the
    result for what the twin left out. Either step failing, the body is decoded into
    `type_` as read_json does, so a refusal is the same problem read_json gives."""
    body = await _read_body(request)
    try:
        result: U = _decoder(unchecked).decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass
    else:
        if check(result):
            return result
    return _decode(body, type_)


async def _read_body(request: web.Request) -> bytes:
    limit = request.client_max_size
    if limit and request.content_length is not None and request.content_length > limit:
        raise too_large(f"the request body is larger than the {limit} bytes allowed")
    try:
        body = await request.read()  # aiohttp stops reading past client_max_size
    except web.HTTPRequestEntityTooLarge:
        raise too_large(f"the request body is larger than the {limit} bytes allowed") from None
    if not body.strip():
        raise bad_request("the request body is empty; a JSON document was expected")
    return body


def _decoder(type_: type[T]) -> msgspec.json.Decoder[T]:
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.json.Decoder(type_)
    return decoder


def _decode(body: bytes, type_: type[T]) -> T:
    try:
        result: T = _decoder(type_).decode(body)
    except msgspec.ValidationError as exc:
        # msgspec validates while it parses, so broken JSON can first trip over a field:
        # tell the client about the JSON, which is the thing to fix first.
        try:
            msgspec.json.decode(body)
        except msgspec.DecodeError as syntax:
            raise from_msgspec_error(syntax) from None
        raise from_msgspec_error(exc) from None
    except msgspec.DecodeError as exc:
        raise from_msgspec_error(exc) from None
    return result


class _NoFields(msgspec.Struct, forbid_unknown_fields=True):
    """A JSON object with no fields."""


async def read_empty(request: web.Request) -> None:
    """A body that must be absent or `{}`: anything else is a 400 (not JSON) or a 422
    naming the field that should not be there."""
    if request.can_read_body and (await request.read()).strip():
        await read_json(request, _NoFields)


def json_response(
    obj: object, status: int = 200, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """`obj` (msgspec Structs, dicts, lists, ...) as ``application/json``."""
    return web.Response(
        status=status,
        body=msgspec.json.encode(obj),
        content_type="application/json",
        headers=headers,
    )
