"""HTTP conventions shared by every diemcau server: problem answers and the middleware."""

from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger(__name__)


class Problem(Exception):
    """Answer the request with `status` and a JSON body naming what was wrong."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def unauthorized(reason: str) -> Problem:
    return Problem(401, reason, {"WWW-Authenticate": 'Bearer realm="diemcau"'})


def problem_response(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": reason, "status": status}, status=status, headers=headers)


PASSED_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate", "Location")


@web.middleware
async def problem_middleware(request: web.Request, handler):
    """Turn Problem into JSON, give aiohttp's own errors a JSON reason, hide tracebacks."""
    try:
        return await handler(request)
    except Problem as exc:
        return problem_response(exc.status, exc.reason, exc.headers)
    except web.HTTPRequestEntityTooLarge:
        return problem_response(413, "request body too large")
    except web.HTTPException as exc:
        if exc.status >= 400:
            # keep only headers that mean something to the client (not aiohttp's own Content-Type)
            keep = {k: v for k, v in exc.headers.items() if k in PASSED_HEADERS}
            return problem_response(exc.status, exc.reason or "error", keep)
        raise
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return problem_response(500, "internal error; the event is logged")


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


async def on_prepare_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for k, v in SECURITY_HEADERS.items():
        response.headers.setdefault(k, v)
