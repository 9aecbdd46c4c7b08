"""The OpenAPI 3.1 document of the orchestrator's REST API (served at /api/v1/openapi.json)."""

from __future__ import annotations

from collections.abc import Iterable

from diemcau import __version__

_ERR = {"description": "Problem", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
_AUTH_ERRORS = {"401": _ERR, "403": _ERR}


def _op(summary: str, responses: dict, body: str | None = None, params: list | None = None, public: bool = False,
        body_required: bool = True) -> dict:
    op: dict = {"summary": summary, "responses": {**responses, **({} if public else _AUTH_ERRORS)}}
    if not public:
        op["security"] = [{"bearer": []}, {"cookie": []}]
    else:
        op["security"] = []
    if body:
        op["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}}}
    if params:
        op["parameters"] = params
    return op


def _json(desc: str, schema: dict | None = None) -> dict:
    return {"description": desc, "content": {"application/json": {"schema": schema or {"type": "object"}}}}


def openapi_document(themes: Iterable[str] = ()) -> dict:
    """`themes`: the programme's theme ids, the values a session's theme may take."""
    session_param = {"name": "session", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"}}
    edits = {"400": _ERR, "404": _ERR, "409": _ERR, "413": _ERR, "415": _ERR, "422": _ERR}
    hall_param = {"name": "hall", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[A-Z]{2,3}-[0-9]{2,5}$"}}
    # what diemcau.programme.check_session accepts; that end is after start, and that the halls
    # exist, are checked on the server only (422)
    session_fields = {
        "title": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"}, "title_en": {"type": "string", "maxLength": 200},
        "theme": {"type": "string", **({"enum": sorted(themes)} if themes else {})},
        "start": {"type": "string", "format": "date-time"}, "end": {"type": "string", "format": "date-time"},
        "stream": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,31}$"},
        "halls": {"type": "array", "minItems": 1, "items": {"type": "string"},
                  "description": "\"all\", region names (north, central, south) and/or hall ids"},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "diemcau orchestrator", "version": __version__,
                 "description": "Control plane of diemcau: halls, relays, media tokens, events."},
        "paths": {
            "/api/v1/login": {"post": _op("Log in as an operator", {"200": _json("Session"), "400": _ERR, "401": _ERR, "413": _ERR, "415": _ERR, "422": _ERR, "429": _ERR}, body="Login", public=True)},
            "/api/v1/logout": {"post": _op("End the session", {"200": _json("Logged out")})},
            "/api/v1/me": {"get": _op("Who am I", {"200": _json("Principal")})},
            "/api/v1/halls": {"get": _op("All halls with live state", {"200": _json("Halls")})},
            "/api/v1/halls/{hall}": {"get": _op("One hall", {"200": _json("Hall"), "404": _ERR}, params=[hall_param])},
            "/api/v1/relays": {"get": _op("All relays", {"200": _json("Relays")})},
            "/api/v1/leadership": {"get": _op("This instance: does it lead, and its terms as leader", {"200": _json(
                "Leadership", {"type": "object", "required": ["instance", "leader", "fence", "now", "terms"], "properties": {
                    "instance": {"type": "string"}, "leader": {"type": "boolean"}, "fence": {"type": "integer"},
                    "now": {"type": "number"},
                    "terms": {"type": "array", "items": {"type": "object", "required": ["from", "until", "fence"], "properties": {
                        "from": {"type": "number"}, "until": {"type": ["number", "null"]}, "fence": {"type": "integer"}}}}}})})},
            "/api/v1/tokens/media": {"post": _op("Mint a media token (WHIP/WHEP)", {"200": _json("Token"), "400": _ERR, "413": _ERR, "415": _ERR, "422": _ERR}, body="MediaToken")},
            "/api/v1/tokens/join": {"post": _op("Invite a participant to a hall (join token)", {"200": _json("Token"), "400": _ERR, "404": _ERR, "413": _ERR, "415": _ERR, "422": _ERR}, body="JoinToken")},
            "/api/v1/join": {"post": {"summary": "A participant joins: its hall's WHEP endpoint and a media token",
                                      "security": [{"bearer": []}],
                                      "requestBody": {"required": False, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JoinBody"}}}},
                                      "responses": {"200": _json("Join"), "400": _ERR, "401": _ERR, "403": _ERR, "413": _ERR, "415": _ERR, "422": _ERR, "503": _ERR}}},
            "/api/v1/source": {
                "get": _op("The studio feeds at each origin and which is on air", {"200": _json("Source")}),
                "post": _op("Put the primary or backup studio feed on air", {"200": _json("Switched"), "400": _ERR, "404": _ERR, "409": _ERR, "413": _ERR, "415": _ERR, "422": _ERR, "503": _ERR}, body="SourceSwitch"),
            },
            "/api/v1/halls/{hall}/move": {"post": _op("Move a hall to another relay (make-before-break)", {"202": _json("Accepted"), "400": _ERR, "404": _ERR, "409": _ERR, "413": _ERR, "415": _ERR, "422": _ERR}, body="Move", params=[hall_param])},
            "/api/v1/halls/{hall}/layer": {"post": _op("Bound a hall's layer of the bitrate ladder, or make it audio only", {"202": _json("Layer"), "400": _ERR, "404": _ERR, "409": _ERR, "413": _ERR, "415": _ERR, "422": _ERR}, body="LayerBody", params=[hall_param])},
            "/api/v1/halls/{hall}/hitless": {"post": _op("Hitless mode for a hall: both paths carry the programme, merged frame by frame", {"202": _json("Hitless"), "400": _ERR, "404": _ERR, "409": _ERR, "413": _ERR, "415": _ERR, "422": _ERR}, body="HitlessBody", params=[hall_param])},
            "/api/v1/halls/{hall}/player": {"post": _op("The hall's projector page address, with a media token for its programme", {"200": _json("Player"), "400": _ERR, "404": _ERR, "409": _ERR, "413": _ERR, "415": _ERR, "422": _ERR}, body="PlayerBody", params=[hall_param], body_required=False)},
            "/api/v1/floor": {
                "get": _op("Who holds the floor, and the halls asking to speak", {"200": _json("Floor")}),
                "post": _op("Give the floor to a hall (from whoever holds it)", {"202": _json("Floor"), **edits}, body="FloorBody"),
                "delete": _op("Take the floor back", {"200": _json("Floor"), "409": _ERR}),
            },
            "/api/v1/floor/queue": {"post": _op("A hall asks to speak", {"201": _json("Floor"), **edits}, body="QueueBody")},
            "/api/v1/floor/queue/{hall}": {"delete": _op("Withdraw a hall's request to speak", {"200": _json("Floor"), "404": _ERR}, params=[hall_param])},
            "/api/v1/sessions": {
                "get": _op("The schedule: every session, its theme, times, halls and state", {"200": _json("Sessions")}),
                "post": _op("Create a session", {"201": _json("Session"), **edits}, body="SessionBody"),
            },
            "/api/v1/sessions/{session}": {
                "get": _op("One session with its hall ids", {"200": _json("Session"), "404": _ERR}, params=[session_param]),
                "patch": _op("Edit a session (a live one's halls follow at once)", {"200": _json("Session"), **edits}, body="SessionPatch", params=[session_param]),
            },
            "/api/v1/sessions/{session}/start": {"post": _op("Start a session: its halls follow its stream", {"200": _json("Session"), "404": _ERR, "409": _ERR}, params=[session_param])},
            "/api/v1/sessions/{session}/end": {"post": _op("End a live session: its halls return to the default programme", {"200": _json("Session"), "404": _ERR, "409": _ERR}, params=[session_param])},
            "/api/v1/relays/{relay}/drain": {"post": _op("Drain a relay (drain=true) or put it back in service", {"200": _json("Drain"), "400": _ERR, "404": _ERR, "409": _ERR, "413": _ERR, "415": _ERR, "422": _ERR}, body="Drain", params=[
                {"name": "relay", "in": "path", "required": True, "schema": {"type": "string"}}])},
            "/api/v1/nodes/{node}/credential/reissue": {"post": _op("A new credential for a node: earlier ones stop working at once (shown in this answer only)", {"200": _json("Reissued"), "404": _ERR}, params=[{"name": "node", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}])},
            "/api/v1/nodes/{node}/credential": {"post": _op("Revoke (revoked=true) or reinstate a node's credential", {"200": _json("Credential"), "400": _ERR, "404": _ERR, "413": _ERR, "415": _ERR, "422": _ERR}, body="Revoke", params=[
                {"name": "node", "in": "path", "required": True, "schema": {"type": "string"}}])},
            "/api/v1/preview": {"post": {**_op("Programme preview: WHEP offer in, a relay's answer out", {"201": {"description": "SDP answer", "content": {"application/sdp": {"schema": {"type": "string"}}}}, "400": _ERR, "404": _ERR, "409": _ERR, "413": _ERR, "415": _ERR, "429": _ERR, "502": _ERR, "503": _ERR}, params=[
                {"name": "relay", "in": "query", "schema": {"type": "string"}}]),
                "requestBody": {"required": True, "content": {"application/sdp": {"schema": {"type": "string", "pattern": "^v=0\\r?\\n"}}}}}},
            "/api/v1/preview/{session}": {"delete": _op("End a preview", {"204": {"description": "Ended"}, "404": _ERR}, params=[
                {"name": "session", "in": "path", "required": True, "schema": {"type": "string"}}])},
            "/api/v1/events": {"get": _op("Event and audit log, newest first (JSON, or CSV with format=csv)", {"200": {
                "description": "Events", "content": {"application/json": {"schema": {"type": "object"}}, "text/csv": {"schema": {"type": "string"}}}}, "400": _ERR}, params=[
                {"name": "count", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 5000}},
                {"name": "kind", "in": "query", "schema": {"type": "string"}, "description": "one kind or several separated by commas"},
                {"name": "subject", "in": "query", "schema": {"type": "string"}},
                {"name": "actor", "in": "query", "schema": {"type": "string"}},
                {"name": "after", "in": "query", "schema": {"type": "string", "pattern": "^([0-9]{1,19}-[0-9]{1,19})?$"}, "description": "only events newer than this id (empty: all)"},
                {"name": "format", "in": "query", "schema": {"type": "string", "enum": ["json", "csv"]}},
            ])},
            "/api/v1/board/stream": {"get": _op("Live board (server-sent events)", {"200": {"description": "`event: board` with the board as JSON in `data`, at once and on each change; a comment every 15 s",
                 "content": {"text/event-stream": {}}}, "503": _ERR})},
            "/api/v1/openapi.json": {"get": _op("This document", {"200": _json("OpenAPI")})},
            "/metrics": {"get": _op("Prometheus metrics", {"200": {"description": "Prometheus exposition", "content": {"text/plain": {"schema": {"type": "string"}}}}})},
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "dc_session"},
            },
            "schemas": {
                "Problem": {"type": "object", "required": ["error", "status"],
                            "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}},
                "Login": {"type": "object", "required": ["username", "password"], "additionalProperties": False,
                          "properties": {"username": {"type": "string"}, "password": {"type": "string"}}},
                "JoinBody": {"type": "object", "additionalProperties": False,
                             "properties": {"hall": {"type": "string", "description": "must be the join token's hall when given"}}},
                "JoinToken": {"type": "object", "required": ["hall", "participant"], "additionalProperties": False,
                              "properties": {"hall": {"type": "string"}, "participant": {"type": "string", "minLength": 1, "maxLength": 64},
                                             "ttl_s": {"type": "integer", "minimum": 10, "maximum": 604800}}},
                "SourceSwitch": {"type": "object", "required": ["role"], "additionalProperties": False,
                                 "properties": {"role": {"type": "string", "enum": ["primary", "backup"]},
                                                "stream": {"type": "string"}, "expect": {"type": "string"}}},
                "Move": {"type": "object", "required": ["relay"], "additionalProperties": False,
                         "properties": {"relay": {"type": "string"}, "expect": {"type": "string"}}},
                "Drain": {"type": "object", "additionalProperties": False, "properties": {"drain": {"type": "boolean"}}},
                "FloorBody": {"type": "object", "additionalProperties": False, "required": ["hall"],
                              "properties": {"hall": {"type": "string"}, "expect": {"type": "string"}}},
                "QueueBody": {"type": "object", "additionalProperties": False, "required": ["hall"],
                              "properties": {"hall": {"type": "string"}}},
                "SessionBody": {"type": "object", "additionalProperties": False, "required": ["id", "title", "theme", "start", "end"],
                                "properties": {"id": session_param["schema"], **session_fields}},
                "SessionPatch": {"type": "object", "additionalProperties": False, "minProperties": 1,
                                 "description": "only the fields given change", "properties": session_fields},
                "PlayerBody": {"type": "object", "additionalProperties": False, "properties": {"ttl_s": {"type": "integer", "minimum": 60, "maximum": 1209600}}},
                "Player": {"type": "object", "properties": {"hall": {"type": "string"}, "url": {"type": "string"}, "expires_in": {"type": "integer"}}},
                "LayerBody": {"type": "object", "additionalProperties": False, "properties": {"floor": {"type": "string", "maxLength": 16}, "ceiling": {"type": "string", "maxLength": 16}, "audio_only": {"type": "boolean"}}},
                "Layer": {"type": "object", "properties": {"hall": {"type": "string"}, "floor": {"type": "string"}, "ceiling": {"type": "string"}, "audio_only": {"type": "boolean"}, "layers": {"type": "array", "items": {"type": "string"}}, "status": {"type": "string"}}},
                "Reissued": {"type": "object", "properties": {"node": {"type": "string"}, "generation": {"type": "integer"}, "credential": {"type": "string"}}},
                "HitlessBody": {"type": "object", "additionalProperties": False, "required": ["on"], "properties": {"on": {"type": "boolean"}}},
                "Hitless": {"type": "object", "properties": {"hall": {"type": "string"}, "hitless": {"type": "boolean"}, "status": {"type": "string"}}},
                "Revoke": {"type": "object", "additionalProperties": False,
                           "properties": {"revoked": {"type": "boolean"}, "reason": {"type": "string", "maxLength": 200}}},
                "MediaToken": {"type": "object", "required": ["stream", "direction", "subject"], "additionalProperties": False,
                               "properties": {"stream": {"type": "string"}, "direction": {"type": "string", "enum": ["pub", "sub"]},
                                              "subject": {"type": "string"}, "relay": {"type": "string"},
                                              "ttl_s": {"type": "integer", "minimum": 10, "maximum": 86400}}},
            },
        },
    }
