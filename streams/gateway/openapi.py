"""The OpenAPI 3.1 description of the gateway, checked in as `openapi.json` next to this file.

`python -m streams.gateway.openapi` rewrites it; `tests/unit/gateway/test_openapi.py` fails when
the file differs from what this builds or names a route the app does not serve (or misses one).
The message schema is the engine's own model (`schemas.message.InboundMessage`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from router.intake import meta
from router.intake.request import BATCH, JSON, STRUCTURED
from router.intake.signature import SIGNATURE_HEADER, SOURCE_HEADER
from schemas.dead_letter import RejectReason
from schemas.message import Channel, InboundMessage

FILE = Path(__file__).with_name("openapi.json")
_REF = "#/components/schemas/{model}"


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _retry(description: str) -> dict[str, Any]:
    return {
        **_error(description),
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
    }


def build() -> dict[str, Any]:
    message = InboundMessage.model_json_schema(ref_template=_REF)
    defs = message.pop("$defs", {})
    event = {
        "type": "object",
        "description": "CloudEvents 1.0 structured mode; `data` is an InboundMessage.",
        "required": ["specversion", "id", "source", "type", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "description": "idempotency key: a resend adds nothing"},
            "source": {"type": "string"},
            "type": {"const": "support.message.received"},
            "time": {"type": "string", "format": "date-time"},
            "subject": {"type": "string"},
            "data": {"$ref": "#/components/schemas/InboundMessage"},
        },
    }
    channel = {
        "name": "channel", "in": "path", "required": True,
        "schema": {"type": "string", "enum": [c.value for c in Channel]},
    }  # fmt: skip
    signed = [
        channel,
        {
            "name": SOURCE_HEADER, "in": "header", "required": True,
            "schema": {"type": "string"}, "description": "the source whose secret signed it",
        },
        {
            "name": SIGNATURE_HEADER, "in": "header", "required": True,
            "schema": {"type": "string", "example": "t=1767225600,v1=<64 hex>"},
            "description": 't=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">; '
            "several v1 values during a secret rotation",
        },
    ]  # fmt: skip
    refusals = {
        "401": _error("missing, malformed, stale, wrong or replayed signature; unknown source"),
        "404": _error("unknown channel"),
        "408": _error("the body did not arrive in time"),
        "413": _error("over the size limit (or too many items)"),
        "415": _error("unsupported content type"),
        "429": _retry("over the source's rate limit"),
    }
    one = {
        "tags": ["messages"],
        "summary": "Put one message on the channel topic",
        "description": "Structured (application/cloudevents+json), binary (ce-* headers, "
        "the body is data) or the plain message, wrapped in a CloudEvent whose id derives from "
        "the source, channel and message_id. 202 only once Kafka acknowledged it (acks=all).",
        "parameters": signed,
        "requestBody": {
            "required": True,
            "content": {
                STRUCTURED: {"schema": {"$ref": "#/components/schemas/InboundEvent"}},
                JSON: {"schema": {"$ref": "#/components/schemas/InboundMessage"}},
            },
        },
        "responses": {
            "202": {
                "description": "acknowledged by Kafka",
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/Accepted"}}},
            },
            "400": _error("invalid: the engine's dead-letter reasons, each failing field named"),
            **refusals,
            "503": _retry("Kafka did not acknowledge in time: retry the same request"),
        },
    }
    many = {
        "tags": ["messages"],
        "summary": "Put up to the configured number of messages on the channel topic",
        "parameters": signed,
        "requestBody": {
            "required": True,
            "content": {
                media: {"schema": {"type": "array", "items": {"oneOf": [
                    {"$ref": "#/components/schemas/InboundEvent"},
                    {"$ref": "#/components/schemas/InboundMessage"},
                ]}}}
                for media in (BATCH, JSON)
            },
        },
        "responses": {
            "200": {
                "description": "every item answered: 202 or its refusal",
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/BatchResult"}}},
            },
            "400": _error("not a JSON array"),
            **refusals,
            "503": {
                **_retry("some items were not acknowledged: retry the same batch"),
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/BatchResult"}}},
            },
        },
    }
    meta_handshake = {
        "tags": ["webhooks"],
        "summary": "Meta's subscription handshake (WhatsApp Cloud API, Messenger, Instagram)",
        "parameters": [
            {"name": "hub.mode", "in": "query", "required": True,
             "schema": {"const": "subscribe"}},
            {"name": "hub.verify_token", "in": "query", "required": True,
             "schema": {"type": "string"}, "description": "gateway_meta_verify_token"},
            {"name": "hub.challenge", "in": "query", "required": True,
             "schema": {"type": "string", "maxLength": meta.MAX_CHALLENGE_CHARS}},
        ],
        "responses": {
            "200": {"description": "the challenge, echoed",
                    "content": {"text/plain": {"schema": {"type": "string"}}}},
            "400": {"description": "a malformed challenge",
                    "content": {"text/plain": {"schema": {"type": "string"}}}},
            "403": {"description": "not subscribe, or not our verify token",
                    "content": {"text/plain": {"schema": {"type": "string"}}}},
        },
    }
    meta_delivery = {
        "tags": ["webhooks"],
        "summary": "A Meta webhook delivery: each message, comment or mention to its channel",
        "description": "WhatsApp and Messenger (and Instagram direct) messages go to "
        "channel.chat, Instagram comments and mentions and Facebook page comments to "
        "channel.social (attributes.public: true). Event ids derive from Meta's message ids, "
        "so a redelivery adds nothing. Delivery and read receipts go to delivery.receipts (the "
        "engine puts them on the thread's ticket as support.message.status); receipts, echoes "
        "and reactions open nothing. 200 only once Kafka acknowledged every record.",
        "parameters": [
            {"name": meta.SIGNATURE_HEADER, "in": "header", "required": True,
             "schema": {"type": "string", "example": "sha256=<64 hex>"},
             "description": "hex HMAC-SHA256 of the raw body with the app secret"},
        ],
        "requestBody": {"required": True, "content": {JSON: {"schema": {
            "type": "object", "required": ["object", "entry"],
            "properties": {"object": {"type": "string"}, "entry": {"type": "array"}},
        }}}},
        "responses": {
            "200": {
                "description": "every record acknowledged by Kafka",
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/MetaResult"}}},
            },
            "400": _error("not JSON, or not a webhook object"),
            "401": _error("missing, malformed or wrong signature"),
            "408": _error("the body did not arrive in time"),
            "413": _error("the body is over gateway_batch_max_bytes"),
            "503": _retry("Kafka did not acknowledge in time: Meta delivers it again"),
        },
    }
    status = {"type": "object", "additionalProperties": True}
    schemas = {
        "InboundMessage": message,
        **defs,
        "InboundEvent": event,
        "Accepted": {
            "type": "object", "required": ["status", "id"],
            "properties": {"status": {"const": 202}, "id": {"type": "string"}},
        },
        "Error": {
            "type": "object", "required": ["status", "reason", "error", "errors"],
            "properties": {
                "status": {"type": "integer"},
                "reason": {
                    "type": "string",
                    "description": "for a 400: one of " + ", ".join(r.value for r in RejectReason),
                },
                "error": {"type": "string"},
                "errors": {"type": "array", "items": {
                    "type": "object", "properties": {
                        "field": {"type": "string"}, "error": {"type": "string"}
                    },
                }},
            },
        },
        "MetaResult": {
            "type": "object",
            "required": ["status", "accepted", "ids", "receipts", "ignored", "skipped"],
            "properties": {
                "status": {"const": 200},
                "accepted": {"type": "integer"},
                "ids": {"type": "array", "items": {"type": "string"}},
                "receipts": {
                    "type": "integer",
                    "description": "delivery and read receipts produced to delivery.receipts",
                },
                "ignored": {"type": "integer", "description": "echoes, reactions, edits, ..."},
                "skipped": {"type": "array", "items": {
                    "type": "object", "properties": {
                        "where": {"type": "string"}, "error": {"type": "string"}
                    },
                }},
            },
        },
        "BatchResult": {
            "type": "object", "required": ["accepted", "refused", "results"],
            "properties": {
                "accepted": {"type": "integer"}, "refused": {"type": "integer"},
                "results": {"type": "array", "items": {"oneOf": [
                    {"$ref": "#/components/schemas/Accepted"},
                    {"$ref": "#/components/schemas/Error"},
                ]}},
            },
        },
    }  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ticket-router channel gateway",
            "version": "1",
            "description": "HTTP front door for channel connectors: signed messages in, "
            "channel topic records out.",
        },
        "paths": {
            "/v1/channels/{channel}/messages": {"post": one},
            "/v1/channels/{channel}/messages:batch": {"post": many},
            "/v1/webhooks/meta": {"get": meta_handshake, "post": meta_delivery},
            "/healthz": {"get": {"summary": "alive", "responses": {"200": {
                "description": "the process serves", "content": {JSON: {"schema": status}}}}}},
            "/readyz": {"get": {"summary": "Kafka answers and the topics the gateway writes exist",
                "responses": {
                    "200": {"description": "ready", "content": {JSON: {"schema": status}}},
                    "503": {"description": "not ready", "content": {JSON: {"schema": status}}},
                }}},
            "/openapi.json": {"get": {"summary": "this document", "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {JSON: {"schema": status}}}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics of this gateway process",
                "responses": {"200": {"description": "the Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        },
        "components": {"schemas": schemas},
    }


def render() -> bytes:
    return orjson.dumps(build(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


if __name__ == "__main__":
    FILE.write_bytes(render())
    sys.stdout.write(f"{FILE}\n")
