"""Check a service's answers against its OpenAPI 3.1 document.

    checker = OpenApiChecker(build_openapi())
    checker.check("GET", "/v1/transfers/0192c4e0-...", 200, resp.content_type, await resp.json())

`check` finds the operation (a concrete path is matched against the path templates, a
literal segment winning over a `{param}`), requires the status to be documented, the
content type to be the documented one (parameters such as `; charset=utf-8` are ignored)
and the body to validate against the documented schema (JSON Schema 2020-12, with
`#/components/schemas/...` refs resolved through a `referencing` registry). Any breach is
an AssertionError naming the request, the JSON path in the body and the rule broken.

JSON is stricter here than in JSON Schema: an `integer` must be a JSON integer, so `5.0` is
refused (amounts are never floats). For JSON media types a `bytes` or `str` body is parsed
first; for `application/x-ndjson` each line is also checked against the media type's
`x-item-schema`.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote, urlsplit

import jsonschema
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOCUMENT_URI = "urn:cbdc:openapi"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
MAX_ERRORS = 5


def _is_json_integer(_checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


StrictValidator = jsonschema.validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_json_integer),
)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


def _pointer(*segments: str) -> str:
    escaped = (segment.replace("~", "~0").replace("/", "~1") for segment in segments)
    return "#/" + "/".join(quote(segment, safe="~") for segment in escaped)


def _describe(error: jsonschema.ValidationError) -> str:
    rule = error.validator
    schema_path = "/".join(str(part) for part in error.absolute_schema_path)
    return f"{error.json_path}: {error.message} (rule {rule!r} at schema {schema_path})"


class OpenApiChecker:
    """Validates answers against an OpenAPI 3.1 document (see the module docstring)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.registry: Registry[Any] = Registry().with_resource(
            DOCUMENT_URI, Resource.from_contents(document, default_specification=DRAFT202012))
        self._templates: list[tuple[int, re.Pattern[str], str]] = []
        for template in document.get("paths", {}):
            segments = template.strip("/").split("/")
            pattern = "/".join(
                "[^/]+" if re.fullmatch(r"\{[^{}]+\}", segment) else re.escape(segment)
                for segment in segments)
            templated = sum(1 for segment in segments if segment.startswith("{"))
            self._templates.append((templated, re.compile(f"/{pattern}"), template))
        self._templates.sort(key=lambda item: (item[0], item[2]))

    # ------------------------------------------------------------------ lookup
    def find(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        """(path template, operation) for a concrete or templated path."""
        path = urlsplit(path).path or path
        verb = method.lower()
        paths: dict[str, Any] = self.document.get("paths", {})
        if path in paths and verb in paths[path]:
            return path, paths[path][verb]
        matched = [template for _, regex, template in self._templates if regex.fullmatch(path)]
        for template in matched:
            if verb in paths[template]:
                return template, paths[template][verb]
        if matched:
            allowed = sorted(m.upper() for t in matched for m in paths[t] if m in METHODS)
            raise AssertionError(f"{method.upper()} {path}: the document has no {method.upper()}"
                                 f" operation for {' or '.join(matched)} (it has {allowed})")
        raise AssertionError(f"{method.upper()} {path}: no path template in the document "
                             "matches this path")

    # ------------------------------------------------------------------- check
    def check(self, method: str, path_template_or_path: str, status: int, content_type: str,
              body: Any) -> None:
        template, operation = self.find(method, path_template_or_path)
        where = f"{method.upper()} {path_template_or_path} ({operation.get('operationId')})"
        responses: dict[str, Any] = operation.get("responses", {})
        key = str(status)
        if key not in responses:
            key = f"{str(status)[0]}XX"
            if key not in responses:
                raise AssertionError(f"{where}: status {status} is not documented (documented: "
                                     f"{', '.join(sorted(responses))})")
        response = self._deref(responses[key])
        content: dict[str, Any] = response.get("content") or {}
        where = f"{where} -> {status}"
        if not content:
            if body not in (None, b"", ""):
                raise AssertionError(f"{where}: the document gives no body, but one came")
            return
        media = _media_type(content_type or "")
        if media not in content:
            raise AssertionError(f"{where}: content type {content_type!r} is not documented "
                                 f"(documented: {', '.join(content)})")
        pointer = _pointer("paths", template, method.lower(), "responses", key, "content", media)
        if _is_json(media):
            self._validate(where, f"{pointer}/schema", self._parse_json(where, body))
        else:
            text = body.decode() if isinstance(body, bytes | bytearray) else body
            self._validate(where, f"{pointer}/schema", text)
            if "x-item-schema" in content[media] and isinstance(text, str):
                for number, line in enumerate(text.splitlines(), start=1):
                    if line.strip():
                        item = self._parse_json(f"{where} line {number}", line)
                        self._validate(f"{where} line {number}", f"{pointer}/x-item-schema",
                                       item)

    # ---------------------------------------------------------------- helpers
    def _deref(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            resolved = self.registry.resolver(DOCUMENT_URI).lookup(node["$ref"]).contents
            node = resolved
        return node

    @staticmethod
    def _parse_json(where: str, body: Any) -> Any:
        if not isinstance(body, bytes | bytearray | str):
            return body
        try:
            return json.loads(body)
        except ValueError as exc:
            raise AssertionError(f"{where}: the body is not JSON ({exc})") from None

    def _validate(self, where: str, pointer: str, instance: Any) -> None:
        validator = StrictValidator({"$ref": DOCUMENT_URI + pointer}, registry=self.registry)
        errors = sorted(validator.iter_errors(instance),
                        key=lambda e: (list(map(str, e.absolute_path)), e.validator))
        if not errors:
            return
        # Surface the innermost cause of an anyOf/oneOf failure where there is one.
        lines = [_describe(jsonschema.exceptions.best_match([error]) if not error.context
                           else jsonschema.exceptions.best_match(error.context))
                 for error in errors[:MAX_ERRORS]]
        more = f"\n  ... and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        raise AssertionError(f"{where}: the body breaks the schema:\n  " + "\n  ".join(lines)
                             + more + f"\n  body: {_short(instance)}")


def _short(instance: Any, limit: int = 400) -> str:
    try:
        text = json.dumps(instance, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(instance)
    return text if len(text) <= limit else text[:limit] + "..."
