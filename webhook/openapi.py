"""The OpenAPI 3.1 document of the webhook app, built from the same pydantic models that validate requests."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from webhook.callbacks import CALLBACK_PATH
from webhook.inbox_schemas import DeadLetterList, Readiness, SpooledAck
from webhook.schemas import BatchCallback, CallbackAck, CallbackResult, ErrorBody, Health, JobOut, SummaryOut

bp = Blueprint("openapi", __name__)

_REF = "#/components/schemas/{model}"

_MODELS: list[tuple[type[BaseModel], str]] = [
    (CallbackResult, "validation"),
    (BatchCallback, "validation"),
    (CallbackAck, "serialization"),
    (ErrorBody, "serialization"),
    (Health, "serialization"),
    (Readiness, "serialization"),
    (SpooledAck, "serialization"),
    (DeadLetterList, "serialization"),
    (JobOut, "serialization"),
    (SummaryOut, "serialization"),
]


def _error(description: str, **headers: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}
_DB_DOWN = _error("The database is unreachable; nothing was recorded.", **{"Retry-After": _RETRY_AFTER})


def build_openapi(max_body_bytes: int) -> dict[str, Any]:
    refs, defs = models_json_schema(_MODELS, ref_template=_REF, by_alias=True)

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return refs[(model, mode)]

    def header(name: str, description: str) -> dict[str, Any]:
        return {
            "name": name,
            "in": "header",
            "required": False,
            "description": description,
            "schema": {"type": "string"},
        }

    job_id_param = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
    read_errors = {
        "401": _error("Missing or wrong bearer token (or the read API is closed: no api_token configured)."),
        "404": _error("Unknown job."),
        "503": _DB_DOWN,
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "robotjobs webhook",
            "version": "1.0.0",
            "description": "Robot callbacks (robot-protocol.md §2–3), the read API for jobs, and health checks.",
        },
        "paths": {
            CALLBACK_PATH: {
                "post": {
                    "operationId": "robotCallback",
                    "summary": "One order's result, or a whole batch's results",
                    "description": (
                        "Authenticated by the job's X-Callback-Secret (the existing robot), the legacy global secret "
                        "when enabled, or Standard Webhooks signatures. Every result is committed in one "
                        "transaction before the 200; duplicates are acknowledged with changed=false. When the "
                        "database cannot take it (or this host's spool still holds earlier callbacks), the request is "
                        "written to the host's durable spool and answered 202; it is recorded, in arrival order, once "
                        "the database answers. An authenticated callback refused for any reason but the database is "
                        "also kept as a dead letter (GET /api/dead-letters). "
                        f"Bodies above {max_body_bytes} bytes are refused with 413."
                    ),
                    "parameters": [
                        header("X-Callback-Secret", "The per-job secret sent in the dispatch request."),
                        header("webhook-id", "Standard Webhooks message id (deduplicated)."),
                        header("webhook-timestamp", "Standard Webhooks timestamp, integer Unix seconds."),
                        header("webhook-signature", "Standard Webhooks signatures: 'v1,<base64>' separated by spaces."),
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [ref(CallbackResult, "validation"), ref(BatchCallback, "validation")]
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Committed (or already recorded: see changed/unchanged).",
                            "content": {"application/json": {"schema": ref(CallbackAck, "serialization")}},
                        },
                        "202": {
                            "description": "Kept in this host's durable spool; recorded once the database answers.",
                            "content": {"application/json": {"schema": ref(SpooledAck, "serialization")}},
                        },
                        "400": _error("The body is not UTF-8 JSON."),
                        "401": _error("Missing, malformed or wrong credentials (also an unknown item under a secret)."),
                        "403": _error("A result names an item of another job; nothing was recorded."),
                        "404": _error("Unknown job or item (signed or legacy callers only)."),
                        "413": _error("The body is larger than the configured limit."),
                        "422": _error("A field breaks the protocol; `details` names it and says why."),
                        "503": _error(
                            "This host's spool is full (or unwritable) while the database cannot take the callback.",
                            **{"Retry-After": _RETRY_AFTER},
                        ),
                    },
                    "security": [{"callbackSecret": []}, {"standardWebhooks": []}],
                }
            },
            "/api/jobs/{job_id}": {
                "get": {
                    "operationId": "getJob",
                    "summary": "A robot job with its items, orders and contacts",
                    "parameters": [job_id_param],
                    "responses": {
                        "200": {
                            "description": "The job.",
                            "content": {"application/json": {"schema": ref(JobOut, "serialization")}},
                        },
                        **read_errors,
                    },
                    "security": [{"bearer": []}],
                }
            },
            "/api/jobs/{job_id}/summary": {
                "get": {
                    "operationId": "getJobSummary",
                    "summary": "The batch summary: JSON, or the operators' reference text",
                    "parameters": [
                        job_id_param,
                        {
                            "name": "format",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["json", "text"]},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The summary.",
                            "content": {
                                "application/json": {"schema": ref(SummaryOut, "serialization")},
                                "text/plain": {"schema": {"type": "string"}},
                            },
                        },
                        **read_errors,
                    },
                    "security": [{"bearer": []}],
                }
            },
            "/api/dead-letters": {
                "get": {
                    "operationId": "listDeadLetters",
                    "summary": "Authenticated callbacks that could not be applied, newest first",
                    "parameters": [
                        {
                            "name": "pending",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "boolean"},
                            "description": "Only the ones not replayed yet.",
                        },
                        {
                            "name": "job_id",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 36, "pattern": "^[^\\x00]*$"},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The dead letters.",
                            "content": {"application/json": {"schema": ref(DeadLetterList, "serialization")}},
                        },
                        "400": _error("A bad query parameter."),
                        "401": read_errors["401"],
                        "503": _DB_DOWN,
                    },
                    "security": [{"bearer": []}],
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "The process answers",
                    "responses": {
                        "200": {
                            "description": "Alive.",
                            "content": {"application/json": {"schema": ref(Health, "serialization")}},
                        }
                    },
                }
            },
            "/readyz": {
                "get": {
                    "operationId": "readyz",
                    "summary": "Callbacks can be taken: the database answers, or this host's spool has room",
                    "responses": {
                        "200": {
                            "description": "Ready: status ok, or degraded "
                            "(the database is down; callbacks are spooled).",
                            "content": {"application/json": {"schema": ref(Readiness, "serialization")}},
                        },
                        "503": {
                            "description": "The spool is full or unusable.",
                            "headers": {"Retry-After": _RETRY_AFTER},
                            "content": {"application/json": {"schema": ref(Readiness, "serialization")}},
                        },
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "callbackSecret": {"type": "apiKey", "in": "header", "name": "X-Callback-Secret"},
                "standardWebhooks": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "webhook-signature",
                    "description": "With webhook-id and webhook-timestamp; HMAC-SHA256 of '{id}.{timestamp}.{body}'.",
                },
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(current_app.extensions["robotjobs"].openapi)
