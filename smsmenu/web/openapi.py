"""The OpenAPI 3 document of /api/v1, served at /api/v1/openapi.json (SPEC §9)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_ERRORS = {str(code): _ERROR for code in (400, 401, 403, 404, 409, 422)}
_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]
_KINDS = ["fixed", "mobile", "phs", "broadband"]


def _id_in_path(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }


def _agent(description: str) -> dict[str, Any]:
    """A response of the agent's object (``agent show --json``)."""
    schema = {"$ref": "#/components/schemas/Agent"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _idempotency_key(required: bool) -> dict[str, Any]:
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": required,
        "schema": {"type": "string", "minLength": 1, "maxLength": 100},
    }


RECHARGE = {
    "type": "object",
    "required": [
        "tx_id",
        "number",
        "kind",
        "amount_fen",
        "commission_fen",
        "debit_fen",
        "status",
        "created_at",
    ],
    "properties": {
        "tx_id": {"type": "integer"},
        "number": {"type": "string"},
        "kind": {"type": "string", "enum": _KINDS},
        "amount_fen": {"type": "integer"},
        "commission_fen": {"type": "integer"},
        "debit_fen": {"type": "integer"},
        "status": {"type": "string", "enum": ["pending", "succeeded", "failed", "reversed"]},
        "created_at": {"type": "string", "format": "date-time"},
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "smsmenu",
        "version": "1",
        "description": "Air recharge for the operator's own systems. Money in fen. A refusal "
        "is a 4xx with {'error': {'rule', 'message'}}, the rule named as on the command line.",
    },
    "servers": [{"url": "/"}],
    "security": _AUTH,
    "paths": {
        "/api/v1/agents/{agent_id}": {
            "get": {
                "operationId": "getAgent",
                "summary": "One agent (the object of `smsmenu agent show --json`).",
                "parameters": [_id_in_path("agent_id")],
                "responses": {
                    "200": _agent("The agent."),
                    **_ERRORS,
                },
            }
        },
        "/api/v1/recharges": {
            "post": {
                "operationId": "makeRecharge",
                "summary": "Recharge a subscriber from an agent's float (`recharge make`).",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": True,
                        "description": "The same key again returns the first result and "
                        "moves nothing.",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 100},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/RechargeRequest"}
                        }
                    },
                },
                "responses": {
                    "201": {
                        "description": "The recharge (the first one for a repeated key).",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Recharge"}
                            }
                        },
                    },
                    **_ERRORS,
                },
            },
            "get": {
                "operationId": "listRecharges",
                "summary": "An agent's recharges, newest first (`recharge list`).",
                "parameters": [
                    {
                        "name": "agent_id",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0},
                    },
                    {
                        "name": "from",
                        "in": "query",
                        "schema": {"type": "string", "format": "date"},
                        "description": "First business day (TIMEZONE).",
                    },
                    {
                        "name": "to",
                        "in": "query",
                        "schema": {"type": "string", "format": "date"},
                        "description": "Last business day, inclusive.",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The recharges.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Recharge"},
                                }
                            }
                        },
                    },
                    **_ERRORS,
                },
            },
        },
        "/api/v1/agents": {
            "post": {
                "operationId": "openAgent",
                "summary": "Open an agent (`agent open`; operator keys only).",
                "parameters": [_idempotency_key(required=True)],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["phone", "trade_pin", "mgmt_pin", "deposit_fen"],
                                "additionalProperties": False,
                                "properties": {
                                    "phone": {"type": "string"},
                                    "trade_pin": {"type": "string"},
                                    "mgmt_pin": {"type": "string"},
                                    "deposit_fen": {"type": "integer"},
                                    "commission_bp": {"type": "integer"},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "201": _agent("The agent opened."),
                    **_ERRORS,
                },
            }
        },
        "/api/v1/agents/{agent_id}/status": {
            "post": {
                "operationId": "setAgentStatus",
                "summary": "Suspend or resume an agent (operator keys only).",
                "parameters": [_id_in_path("agent_id")],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["status"],
                                "additionalProperties": False,
                                "properties": {
                                    "status": {"type": "string", "enum": ["active", "suspended"]}
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _agent("The agent."),
                    **_ERRORS,
                },
            }
        },
        "/api/v1/agents/{agent_id}/deposits": {
            "post": {
                "operationId": "depositIntoFloat",
                "summary": "续存 into the agent's float (`agent deposit`; operator keys only).",
                "parameters": [
                    _id_in_path("agent_id"),
                    _idempotency_key(required=True),
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["amount_fen"],
                                "additionalProperties": False,
                                "properties": {"amount_fen": {"type": "integer"}},
                            }
                        }
                    },
                },
                "responses": {
                    "201": _agent("The agent after the deposit."),
                    **_ERRORS,
                },
            }
        },
        "/api/v1/subscribers/{number}": {
            "get": {
                "operationId": "getSubscriber",
                "summary": "One subscriber account (`subscriber show --json`; operator keys only).",
                "parameters": [
                    {
                        "name": "number",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "maxLength": 32},
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The subscriber, with validity and allowances.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Subscriber"}
                            }
                        },
                    },
                    **_ERRORS,
                },
            }
        },
        "/api/v1/recharges/{tx_id}/reversal": {
            "post": {
                "operationId": "reverseRecharge",
                "summary": "返销 under SPEC §7's rules (operator keys only).",
                "parameters": [
                    _id_in_path("tx_id"),
                    _idempotency_key(required=False),
                ],
                "responses": {
                    "201": {
                        "description": "The reversal.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Reversal"}
                            }
                        },
                    },
                    **_ERRORS,
                },
            }
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "responses": {
            "Error": {
                "description": "Refused: nothing moved.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        },
        "schemas": {
            "Agent": {
                "type": "object",
                "required": ["agent_id", "phone", "status", "balance_fen", "commission_bp"],
                "properties": {
                    "agent_id": {"type": "integer"},
                    "phone": {"type": "string"},
                    "status": {"type": "string", "enum": ["active", "suspended", "closed"]},
                    "balance_fen": {"type": "integer"},
                    "commission_bp": {"type": "integer"},
                },
            },
            "RechargeRequest": {
                "type": "object",
                "required": ["agent_id", "kind", "number", "amount_fen", "pin"],
                "additionalProperties": False,
                "properties": {
                    "agent_id": {"type": "integer", "minimum": 0},
                    "kind": {"type": "string", "enum": _KINDS},
                    "number": {"type": "string", "maxLength": 32},
                    "amount_fen": {"type": "integer", "description": "10.00 to 1000.00 yuan"},
                    "pin": {"type": "string", "maxLength": 32, "description": "Trade password"},
                    "notify": {"type": "string", "nullable": True, "maxLength": 32},
                },
            },
            "Recharge": RECHARGE,
            "Subscriber": {
                "type": "object",
                "required": ["number", "kind", "billing", "status", "balance_fen", "allowances"],
                "properties": {
                    "number": {"type": "string"},
                    "kind": {"type": "string", "enum": _KINDS},
                    "billing": {"type": "string", "enum": ["prepaid", "postpaid"]},
                    "status": {"type": "string", "enum": ["active", "suspended", "closed"]},
                    "balance_fen": {"type": "integer"},
                    "valid_until": {"type": "string", "format": "date", "nullable": True},
                    "allowances": {"type": "array", "items": {"type": "object"}},
                },
            },
            "Reversal": {
                "type": "object",
                "required": [
                    "tx_id",
                    "recharge_tx_id",
                    "agent_id",
                    "number",
                    "amount_fen",
                    "commission_fen",
                    "debit_fen",
                    "float_after_fen",
                    "created_at",
                ],
                "properties": {
                    "tx_id": {"type": "integer"},
                    "recharge_tx_id": {"type": "integer"},
                    "agent_id": {"type": "integer"},
                    "number": {"type": "string"},
                    "amount_fen": {"type": "integer"},
                    "commission_fen": {"type": "integer"},
                    "debit_fen": {"type": "integer"},
                    "float_after_fen": {"type": "integer"},
                    "created_at": {"type": "string", "format": "date-time"},
                },
            },
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["rule", "message"],
                        "properties": {
                            "rule": {"type": "string"},
                            "message": {"type": "string"},
                        },
                    }
                },
            },
        },
    },
}
