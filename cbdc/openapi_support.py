"""Building blocks of the services' OpenAPI 3.1 documents.

Both tiers describe their HTTP APIs the same way: request and response bodies that are
msgspec Structs become `components/schemas` through `msgspec.json.schema_components`
(JSON Schema 2020-12, which OpenAPI 3.1 uses as is), the rest are written by hand with
the helpers here, and every 4xx and 5xx answer is an RFC 9457 problem
(`application/problem+json`, the `Problem` schema generated from `cbdc.wire.Problem`).

    component_schemas(structs, hand_written)   generated + hand-written, no name twice
    ref("Name") / parameter_ref("Name")        local references
    json_response(schema, text)                a response with a JSON body
    problem_response(text)                     a response with a Problem body
    with_server_errors(responses, errors)      add 5xx problems, sort by status
    json_body("Name", text)                    a request body of a component schema
    openapi_document(...)                      the top level, `servers` only when given
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import msgspec

__all__ = [
    "JSON",
    "LICENSE",
    "NDJSON",
    "OPENAPI_VERSION",
    "PROBLEM_JSON",
    "REF_TEMPLATE",
    "TEXT",
    "Schema",
    "closed_object",
    "component_schemas",
    "hex_string",
    "json_body",
    "json_response",
    "metrics_response",
    "openapi_document",
    "openapi_response",
    "parameter_ref",
    "problem_response",
    "ref",
    "uint",
    "with_server_errors",
]

OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{name}"
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
NDJSON = "application/x-ndjson"
TEXT = "text/plain"
LICENSE = {"name": "Apache-2.0", "identifier": "Apache-2.0"}

Schema = dict[str, Any]


# ------------------------------------------------------------------- references
def ref(name: str) -> Schema:
    """A reference to `components/schemas/<name>`."""
    return {"$ref": REF_TEMPLATE.format(name=name)}


def parameter_ref(name: str) -> Schema:
    """A reference to `components/parameters/<name>`."""
    return {"$ref": f"#/components/parameters/{name}"}


# ------------------------------------------------------------------------ schemas
def hex_string(description: str, *, size: int | None = None) -> Schema:
    """Lower-case hex text: exactly `size` bytes, or any whole number of bytes."""
    pattern = f"^[0-9a-f]{{{2 * size}}}$" if size else "^(?:[0-9a-f]{2})+$"
    return {"type": "string", "pattern": pattern, "description": description}


def uint(bits: int, description: str, *, minimum: int = 0) -> Schema:
    """An unsigned integer of `bits` bits, at least `minimum`."""
    return {"type": "integer", "minimum": minimum, "maximum": (1 << bits) - 1,
            "description": description}


def closed_object(properties: dict[str, Schema], *, title: str, description: str,
                  optional: Collection[str] = ()) -> Schema:
    """An object of exactly these members; all are required but the `optional` ones."""
    unknown = set(optional) - set(properties)
    if unknown:
        raise ValueError(f"{title}: optional members {sorted(unknown)} are not properties")
    return {
        "title": title,
        "description": description,
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


SHA256_HEX = "SHA-256 digest, 64 lower-case hex digits"


def receipt_schemas(key_source: str) -> dict[str, Schema]:
    """BlockHeader, MerkleProof and Receipt (`cbdc.receipts`), shared by every ledger's
    API; `key_source` says where the signing ledger's public key is published."""
    return {
        "BlockHeader": closed_object(
            {
                "version": uint(8, "header layout version", minimum=1),
                "ledger": uint(32, "ledger number"),
                "height": uint(64, "block height; the first block is 1", minimum=1),
                "previous_hash": hex_string(f"hash of the previous block ({SHA256_HEX}; "
                                            "all zeros before the first block)", size=32),
                "merkle_root": hex_string(f"RFC 6962 Merkle root of the block's entries "
                                          f"({SHA256_HEX})", size=32),
                "time_ns": uint(64, "when the block was sealed, ns since the Unix epoch"),
                "entry_count": uint(32, "number of entries in the block"),
            },
            title="BlockHeader",
            description="cbdc.receipts.BlockHeader.to_json(); its hash is SHA-256 of the "
                        "fixed-size big-endian encoding of these fields.",
        ),
        "MerkleProof": closed_object(
            {
                "index": uint(32, "the entry's leaf index in the block"),
                "size": uint(32, "number of leaves (the block's entry_count)", minimum=1),
                "path": {"type": "array", "items": hex_string(SHA256_HEX, size=32),
                         "description": "RFC 6962 audit path, leaf to root"},
            },
            title="MerkleProof",
            description="RFC 6962 inclusion proof of one entry in a block.",
        ),
        "Receipt": closed_object(
            {
                "header": ref("BlockHeader"),
                "block_hash": hex_string(f"hash of the block header ({SHA256_HEX})", size=32),
                "signature": hex_string("DER ECDSA P-256 signature of the encoded header by "
                                        f"the ledger key ({key_source}), hex"),
                "entry": hex_string("the transfer's fixed-size ledger entry encoding, hex"),
                "proof": ref("MerkleProof"),
            },
            title="Receipt",
            description="cbdc.receipts.Receipt.to_json(): proof that one transfer is in a "
                        "signed block, verifiable offline with the ledger's public key.",
        ),
    }


def component_schemas(structs: Iterable[Any], hand_written: Mapping[str, Schema]
                      ) -> dict[str, Schema]:
    """components/schemas: generated from the msgspec `structs`, then the hand-written
    ones; a name may not be both."""
    _, generated = msgspec.json.schema_components(tuple(structs), ref_template=REF_TEMPLATE)
    schemas: dict[str, Schema] = dict(generated)
    for name, schema in hand_written.items():
        if name in schemas:
            raise ValueError(f"schema {name} is both generated from a Struct and hand-written")
        schemas[name] = schema
    return schemas


# ---------------------------------------------------------------------- responses
def json_response(schema: Schema, description: str, media: str = JSON) -> Schema:
    """A response whose body is `schema` in `media` (JSON unless said otherwise)."""
    return {"description": description, "content": {media: {"schema": schema}}}


def with_links(response: Schema, links: Mapping[str, tuple[str, Mapping[str, str]]]
               ) -> Schema:
    """`response` with OpenAPI links: name -> (operationId, {parameter: runtime
    expression}), e.g. ("getTransfer", {"id": "$response.body#/id"}). Clients and
    stateful fuzzers follow them from one call to the next."""
    return {**response, "links": {
        name: {"operationId": operation, "parameters": dict(parameters)}
        for name, (operation, parameters) in links.items()}}


def problem_response(description: str, *, headers: Mapping[str, Schema] | None = None
                     ) -> Schema:
    """An RFC 9457 problem response; `headers` maps header names to Header Objects."""
    response = json_response(ref("Problem"), description, PROBLEM_JSON)
    if headers:
        response["headers"] = dict(headers)
    return response


def with_server_errors(responses: Mapping[str, Schema], server_errors: Mapping[str, str]
                       ) -> dict[str, Schema]:
    """`responses` with a problem for each of `server_errors` (status -> description)
    that they do not give themselves, sorted by status."""
    merged = {**{code: problem_response(text) for code, text in server_errors.items()},
              **responses}
    return dict(sorted(merged.items()))


def json_body(name: str, description: str, *, required: bool = True) -> Schema:
    """A JSON request body of `components/schemas/<name>`."""
    return {"required": required, "description": description,
            "content": {JSON: {"schema": ref(name)}}}


def metrics_response() -> Schema:
    """200 of GET /metrics (cbdc.http_metrics)."""
    return {"description": "Prometheus text exposition format.",
            "content": {TEXT: {"schema": {"type": "string"}}}}


def openapi_response() -> Schema:
    """200 of GET /openapi.json."""
    return json_response({"type": "object"}, "The OpenAPI 3.1 document.")


# ----------------------------------------------------------------------- document
def openapi_document(
    *,
    title: str,
    version: str,
    description: str,
    tags: list[dict[str, str]],
    paths: dict[str, Schema],
    components: dict[str, Any],
    server_url: str | None = None,
) -> dict[str, Any]:
    """The top level of an OpenAPI 3.1.0 document."""
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": description,
            "license": dict(LICENSE),
        },
        "tags": [dict(tag) for tag in tags],
        "paths": paths,
        "components": components,
    }
    if server_url is not None:
        document["servers"] = [{"url": server_url}]
    return document
