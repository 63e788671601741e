"""The gateway routes as the OpenAPI document shows them.

The routes read the raw body themselves (the signature covers its exact bytes, and
unusable content is dropped field by field rather than refused), so FastAPI cannot
derive their request schemas; this module states them, with every answer a gateway can
get, from the same models the routes validate with. docs/gateways.md says the same in
words.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from dispatch.api.errors import ErrorBody

SIGNATURE_HEADERS: list[dict[str, Any]] = [
    {
        "name": "X-ERSS-Gateway",
        "in": "header",
        "required": True,
        "description": "The gateway's id (e.g. panic, telecom, sms, vehicle)",
        "schema": {"type": "string"},
    },
    {
        "name": "X-ERSS-Timestamp",
        "in": "header",
        "required": True,
        "description": "Unix time in seconds, ASCII digits; within 300 s of the server clock",
        "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
    },
    {
        "name": "X-ERSS-Signature",
        "in": "header",
        "required": True,
        "description": "sha256= + hex HMAC-SHA256(secret, timestamp + '.' + raw body bytes)",
        "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
    },
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": True,
        "description": "The sender's id for this delivery (1-200 characters); a retry reuses"
        " it. A delivery is also known by its own id (trigger_id, call_id, message_id, the"
        " AML body): the same delivery under a new key gets the first answer.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
    },
]


class GatewayAnswer(BaseModel):
    """The 202 answer: the report is committed."""

    incident_id: int | None = Field(
        description="The incident the report made or joined (null for a vehicle packet that"
        " is no emergency: login, health, tracking)"
    )
    report_id: int | None
    status: str = Field(description="The incident's status after this report")
    duplicate_of: int | None = Field(
        description="The incident id when the report joined an existing incident"
    )
    warnings: list[str] = Field(
        description="Content that could not be used and was dropped, each naming the field"
    )
    moved_incident: int | None = Field(
        default=None,
        description="Vehicle packets that are no emergency only: the vehicle's open incident"
        " its fix moved, or null",
    )


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ANSWERS: dict[int | str, dict[str, Any]] = {
    202: {"model": GatewayAnswer, "description": "Committed: the incident it made or joined"},
    401: _error("Bad or missing signature, unknown gateway, stale timestamp: nothing stored"),
    409: _error("The Idempotency-Key was used for a different body: nothing stored"),
    413: _error("The body is larger than the limit: nothing stored"),
    422: _error(
        "The envelope cannot be read (not JSON, not an object, an identity field missing"
        " or invalid; see fields): nothing stored"
    ),
    429: _error("Over the gateway's rate: retry after Retry-After seconds"),
    503: _error("The store is unreachable: retry the same request after Retry-After seconds"),
}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a route whose JSON body follows ``model``."""
    return {
        "parameters": SIGNATURE_HEADERS,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(model)}},
        },
    }


def json_or_text_body(model: type[BaseModel], text: str) -> dict[str, Any]:
    """``openapi_extra`` for a route taking a JSON body of ``model`` or plain text (what
    ``text`` describes), told apart by Content-Type."""
    return {
        "parameters": SIGNATURE_HEADERS,
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": inline_schema(model)},
                "text/plain": {"schema": {"type": "string", "description": text}},
            },
        },
    }


def form_body(fields: dict[str, str]) -> dict[str, Any]:
    """``openapi_extra`` for a form-encoded route; ``fields`` maps names to descriptions."""
    properties = {name: {"type": "string", "description": d} for name, d in fields.items()}
    return {
        "parameters": SIGNATURE_HEADERS,
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "properties": properties}
                }
            },
        },
    }


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema (as the body is read) with its ``$defs`` written in place,
    so it can sit inside the OpenAPI document without a components entry."""
    schema = model.model_json_schema(by_alias=True)
    defs: dict[str, Any] = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
