"""REST API under /api/v1, the SSE board stream, /metrics and the console's static files."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import re
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import msgspec
from aiohttp import web

from diemcau.http import Problem
from diemcau.messages import SwitchSource
from diemcau.programme import Session, SessionSpec, check_session, resolve_halls
from diemcau.tokens import MediaTokenSigner, node_credential

from .auth import SESSION_COOKIE, Accounts, authenticate
from .board import snapshot
from .store import now_ms
from .openapi import openapi_document
from diemcau.tls import http_session

log = logging.getLogger(__name__)
CONSOLE_DIR = Path(__file__).parent / "console"


class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str


class SourceBody(msgspec.Struct, forbid_unknown_fields=True):
    role: str  # primary | backup
    stream: str = ""
    expect: str = ""  # the feed the operator saw on air; refused (409) if another operator changed it


class MoveBody(msgspec.Struct, forbid_unknown_fields=True):
    relay: str
    expect: str = ""  # the relay the operator saw the hall on; refused (409) if it moved meanwhile


class SessionPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # only the fields given change; null is no value for any of them (422, as the document says)
    title: str | msgspec.UnsetType = msgspec.UNSET
    title_en: str | msgspec.UnsetType = msgspec.UNSET
    theme: str | msgspec.UnsetType = msgspec.UNSET
    start: datetime | msgspec.UnsetType = msgspec.UNSET
    end: datetime | msgspec.UnsetType = msgspec.UNSET
    stream: str | msgspec.UnsetType = msgspec.UNSET
    halls: list[str] | msgspec.UnsetType = msgspec.UNSET


class FloorBody(msgspec.Struct, forbid_unknown_fields=True):
    hall: str
    expect: str = ""  # the hall the operator saw holding the floor ("" : nobody); refused (409) if it changed


class QueueBody(msgspec.Struct, forbid_unknown_fields=True):
    hall: str


class PlayerBody(msgspec.Struct, forbid_unknown_fields=True):
    ttl_s: int = 7 * 24 * 3600  # the summit's five days, with margin


class HitlessBody(msgspec.Struct, forbid_unknown_fields=True):
    on: bool


class LayerBody(msgspec.Struct, forbid_unknown_fields=True):
    floor: str = ""  # "" : no floor (adaptation may go down to audio only)
    ceiling: str = ""  # "" : no ceiling (the studio's own encoding, "top", when the link allows)
    audio_only: bool = False


class DrainBody(msgspec.Struct, forbid_unknown_fields=True):
    drain: bool = True


class RevokeBody(msgspec.Struct, forbid_unknown_fields=True):
    revoked: bool = True
    reason: str = ""


# a Redis stream id that Redis can start after: 19 digits a part stay below 2^64 - 1 (more, and
# Redis answers an error that would read as the store being down, 503); fullmatch, as $ would let
# a trailing newline through
EVENT_ID = re.compile(r"[0-9]{1,19}-[0-9]{1,19}")


class JoinTokenBody(msgspec.Struct, forbid_unknown_fields=True):
    hall: str
    participant: str
    ttl_s: int = 3600


class JoinBody(msgspec.Struct, forbid_unknown_fields=True):
    hall: str = ""  # must match the token's hall when given


class MediaTokenBody(msgspec.Struct, forbid_unknown_fields=True):
    stream: str
    direction: str  # pub | sub
    subject: str
    relay: str = "*"
    ttl_s: int = 300


async def read_json(request: web.Request, cls: type, max_bytes: int):
    if request.content_type != "application/json":
        raise Problem(415, "send a JSON body with Content-Type: application/json")
    if request.content_length is not None and request.content_length > max_bytes:
        raise Problem(413, f"body larger than {max_bytes} bytes")
    body = await request.read()
    if len(body) > max_bytes:
        raise Problem(413, f"body larger than {max_bytes} bytes")
    try:
        return msgspec.json.decode(body, type=cls)
    except msgspec.ValidationError as exc:
        if "got `float`" in str(exc):
            return _with_whole_numbers(body, cls)
        raise Problem(422, f"invalid body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise Problem(400, f"body is not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise Problem(400, f"body is not UTF-8 (byte {exc.start})") from None


def _with_whole_numbers(body: bytes, cls: type):
    """JSON has one kind of number: 300.0 is the integer 300 (JSON Schema agrees), not a type error.
    A number with a fraction is still refused, and so is anything else the strict decoding refused."""
    try:
        doc = msgspec.json.decode(body)
    except RecursionError:
        raise Problem(400, "body nests too deeply") from None
    except msgspec.ValidationError as exc:  # a number out of range elsewhere in the body
        raise Problem(422, f"invalid body: {exc}") from None
    stack = [doc] if isinstance(doc, (dict, list)) else []
    while stack:
        node = stack.pop()
        for k, v in list(node.items() if isinstance(node, dict) else enumerate(node)):
            if isinstance(v, float) and v.is_integer():
                node[k] = int(v)
            elif isinstance(v, (dict, list)):
                stack.append(v)
    try:
        return msgspec.convert(doc, type=cls)
    except msgspec.ValidationError as exc:
        raise Problem(422, f"invalid body: {exc}") from None


BOARD_ALWAYS_HALLS = 1000  # up to this many halls the board is rebuilt every tick, watched or not


class Api:
    def __init__(self, app_state) -> None:
        self.st = app_state  # orchestrator.app.State
        self.board: dict = {"at": 0, "halls": [], "relays": [], "counts": {}}
        self.board_version = 0
        self._board_changed = asyncio.Event()
        self.sse_clients = 0
        self.previews: dict[str, tuple[str, str, str]] = {}  # session -> (relay URL, token, operator)
        self.closing = False
        self._refresh_pending = False
        self._refresh_task: asyncio.Task | None = None  # set on shutdown: open event streams end instead of holding it up
        self._verifier = app_state.signer.verifier()

    @property
    def accounts(self) -> Accounts:
        return self.st.accounts

    def refresh_board_soon(self, delay_s: float) -> None:
        if self._refresh_pending or self.closing:
            return
        self._refresh_pending = True

        async def later() -> None:
            await asyncio.sleep(delay_s)
            self._refresh_pending = False
            try:
                await self.refresh_board()
            except Exception as exc:  # Redis down or busy: the periodic refresh carries on
                log.warning("board refresh failed: %s", exc)

        self._refresh_task = asyncio.ensure_future(later())

    def close_streams(self) -> None:
        self.closing = True
        self._board_changed.set()

    async def refresh_board_if_wanted(self) -> None:
        """The periodic refresh: always for a deployment of national size (it stays warm for /metrics
        and the API), and at commune scale only while a console watches (10 000 rows cost tens of ms)."""
        if self.sse_clients or len(self.st.topology.halls) <= BOARD_ALWAYS_HALLS:
            await self.refresh_board()

    async def refresh_board(self) -> None:
        board = await snapshot(self.st.store, self.st.topology.halls, self.st.settings)
        self.board = board
        self.board_version += 1
        self._board_changed.set()
        self._board_changed = asyncio.Event()

    # -- auth ------------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        body = await read_json(request, LoginBody, 4096)
        request["claimed_user"] = body.username
        token, principal = await self.accounts.login(body.username, body.password)
        await self.st.store.event("login", principal.user, principal.role, actor=principal.user)
        resp = web.json_response({"token": token, "user": principal.user, "role": principal.role,
                                  "expires_in": self.st.settings.session_ttl_s})
        resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict", path="/",
                        max_age=self.st.settings.session_ttl_s, secure=request.secure)
        return resp

    async def logout(self, request: web.Request) -> web.Response:
        p = await authenticate(request, self.accounts, "viewer")
        token = request.cookies.get(SESSION_COOKIE) or request.headers.get("Authorization", "").partition(" ")[2]
        await self.accounts.logout(token)
        await self.st.store.event("logout", p.user, actor=p.user)
        resp = web.json_response({"ok": True})
        resp.del_cookie(SESSION_COOKIE, path="/")
        return resp

    async def me(self, request: web.Request) -> web.Response:
        p = await authenticate(request, self.accounts, "viewer")
        return web.json_response({"user": p.user, "role": p.role})

    # -- fleet -----------------------------------------------------------------------------

    async def halls(self, request: web.Request) -> web.Response:
        await authenticate(request, self.accounts, "viewer")
        board = await snapshot(self.st.store, self.st.topology.halls, self.st.settings)
        return web.json_response({"halls": board["halls"], "counts": board["counts"]})

    async def hall(self, request: web.Request) -> web.Response:
        await authenticate(request, self.accounts, "viewer")
        hall_id = request.match_info["hall"]
        if hall_id not in self.st.halls_by_id:
            raise Problem(404, f"unknown hall {hall_id}")
        board = await snapshot(self.st.store, self.st.topology.halls, self.st.settings)
        return web.json_response(next(h for h in board["halls"] if h["id"] == hall_id))

    async def relays(self, request: web.Request) -> web.Response:
        await authenticate(request, self.accounts, "viewer")
        board = await snapshot(self.st.store, self.st.topology.halls, self.st.settings)
        return web.json_response({"relays": board["relays"]})

    async def leadership(self, request: web.Request) -> web.Response:
        """This instance's view: does it lead now, and when it led (wall-clock seconds)."""
        await authenticate(request, self.accounts, "viewer")
        lead = self.st.leadership
        return web.json_response({"instance": lead.instance, "leader": lead.is_leader, "fence": lead.fence,
                                  "now": time.time(), "terms": lead.terms})

    async def media_token(self, request: web.Request) -> web.Response:
        p = await authenticate(request, self.accounts, "operator")
        body = await read_json(request, MediaTokenBody, 4096)
        if body.direction not in ("pub", "sub"):
            raise Problem(422, "direction must be 'pub' or 'sub'")
        if not 10 <= body.ttl_s <= 24 * 3600:
            raise Problem(422, "ttl_s must be between 10 and 86400")
        signer: MediaTokenSigner = self.st.signer
        token = signer.mint(body.subject, body.stream, body.direction, body.ttl_s, aud=body.relay)
        await self.st.store.event("media_token", body.subject,
                                  f"{body.direction} {body.stream} at {body.relay} for {body.ttl_s}s", actor=p.user)
        return web.json_response({"token": token, "expires_in": body.ttl_s})

    async def source(self, request: web.Request) -> web.Response:
        await authenticate(request, self.accounts, "viewer")
        board = await snapshot(self.st.store, self.st.topology.halls, self.st.settings)
        return web.json_response({"stream": self.st.settings.stream, **board["source"]})

    async def switch_source(self, request: web.Request) -> web.Response:
        """Put the primary or backup studio feed on air at every origin."""
        p = await authenticate(request, self.accounts, "operator")
        body = await read_json(request, SourceBody, 4096)
        if body.role not in ("primary", "backup"):
            raise Problem(422, "role must be 'primary' or 'backup'")
        stream = body.stream or self.st.settings.stream
        if stream != self.st.settings.stream:
            raise Problem(404, f"unknown stream {stream}")
        async with self._locked("source", p.user):
            return await self._switch_source(p, body, stream)

    async def _switch_source(self, p, body: SourceBody, stream: str) -> web.Response:
        board = await snapshot(self.st.store, self.st.topology.halls, self.st.settings)
        on_air = board["source"]["on_air"]
        if body.expect and on_air and body.expect != on_air:
            raise Problem(409, f"the {on_air} feed is on air now, not {body.expect}: another operator switched it")
        origins = [r for r in board["relays"] if r.get("role") == "origin" and r["alive"]]
        without = [r["id"] for r in origins if body.role not in r.get("feeds", [])]
        if not origins:
            raise Problem(503, "no origin relay is alive", {"Retry-After": "2"})
        if len(without) == len(origins):
            raise Problem(409, f"no origin has a {body.role} feed of {stream} on air")
        sent = []
        for r in origins:
            if await self.st.hub.deliver(r["id"], SwitchSource(stream=stream, role=body.role, reason=f"operator {p.user}")):
                sent.append(r["id"])
        await self.st.store.event("source_switch", stream, f"to {body.role} at {', '.join(sent)}", actor=p.user)
        return web.json_response({"stream": stream, "role": body.role, "origins": sent, "without_feed": without})

    async def join_token(self, request: web.Request) -> web.Response:
        """Operators invite a participant to a hall: a signed join token they present to /join."""
        p = await authenticate(request, self.accounts, "operator")
        body = await read_json(request, JoinTokenBody, 4096)
        if body.hall not in self.st.halls_by_id:
            raise Problem(404, f"unknown hall {body.hall}")
        if not 10 <= body.ttl_s <= 7 * 24 * 3600:
            raise Problem(422, "ttl_s must be between 10 and 604800")
        if not body.participant or len(body.participant) > 64:
            raise Problem(422, "participant must be 1-64 characters")
        token = self.st.signer.mint(body.participant, f"join:{body.hall}", "sub", body.ttl_s)
        await self.st.store.event("join_token", body.hall, body.participant, actor=p.user)
        return web.json_response({"token": token, "expires_in": body.ttl_s})

    async def join(self, request: web.Request) -> web.Response:
        """A participant with a join token gets its hall's WHEP endpoint and a media token for it."""
        from diemcau.tokens import TokenError, bearer

        token = bearer(request.headers.get("Authorization"))
        if token is None:
            raise Problem(401, "join token required (Authorization: Bearer ...)", {"WWW-Authenticate": 'Bearer realm="diemcau"'})
        body = await read_json(request, JoinBody, 1024) if request.can_read_body else JoinBody()
        try:
            verified = self._verifier.claims(token)
        except TokenError as exc:
            raise Problem(401, f"join token rejected: {exc}") from None
        if not verified.stream.startswith("join:") or verified.dir != "sub":
            raise Problem(401, "join token rejected: not a join token")
        hall = verified.stream.removeprefix("join:")
        if body.hall and body.hall != hall:
            raise Problem(403, f"this join token is for hall {hall}, not {body.hall}")
        nodes = await self.st.store.nodes()
        conn = await self.st.store.connected()
        url = nodes.get(hall, {}).get("url", "")
        if hall not in conn or not url:
            raise Problem(503, f"hall {hall} is not on line now; try again shortly", {"Retry-After": "2"})
        # single use: a participant asks again (a new join) for each session it opens
        media = self.st.signer.mint(verified.sub, self.st.settings.stream, "sub", 3600, aud=hall, once=True)
        return web.json_response({"hall": hall, "whep_url": f"{url}/whep/{self.st.settings.stream}",
                                  "token": media, "participant": verified.sub})

    # -- operator actions on halls and relays -------------------------------------------------

    @contextlib.asynccontextmanager
    async def _locked(self, target: str, user: str):
        """One operator action on a target at a time, across instances: the second gets a 409."""
        holder = await self.st.store.lock(target, user)
        if holder is not None:
            raise Problem(409, f"{holder} is changing {target} right now; look at the board and try again",
                          {"Retry-After": "3"})
        try:
            yield
        finally:
            await self.st.store.unlock(target, user)

    async def _operator_on_hall(self, request: web.Request):
        """An operator acting on a hall of the topology: (principal, hall id), or 401/403/404."""
        p = await authenticate(request, self.accounts, "operator")
        hall = request.match_info["hall"]
        if hall not in self.st.halls_by_id:
            raise Problem(404, f"unknown hall {hall}")
        return p, hall

    async def move_hall(self, request: web.Request) -> web.Response:
        """Move a hall to another relay (make-before-break); the leader carries it out."""
        p, hall = await self._operator_on_hall(request)
        body = await read_json(request, MoveBody, 4096)
        async with self._locked(hall, p.user):
            views, assignments = await self.st.planner.relay_views()
            current = (assignments.get(hall) or {}).get("upstream", "")
            if body.expect and body.expect != current:
                raise Problem(409, f"hall {hall} is on {current or 'no relay'} now, not {body.expect}: "
                                   "it moved meanwhile")
            if body.relay == current:
                raise Problem(409, f"hall {hall} is already on {current}")
            target = next((v for v in views if v.id == body.relay), None)
            if target is None:
                raise Problem(404, f"unknown relay {body.relay}")
            if not target.alive:
                raise Problem(409, f"relay {body.relay} is not alive")
            if target.drained:
                raise Problem(409, f"relay {body.relay} is being drained")
            if target.load >= target.capacity:
                raise Problem(409, f"relay {body.relay} is full ({target.load}/{target.capacity})")
            await self.st.store.request_move(hall, body.relay, p.user)
            await self.st.store.event("operator_move", hall, f"from {current or 'none'} to {body.relay}", actor=p.user)
        return web.json_response({"hall": hall, "from": current, "relay": body.relay, "status": "accepted"},
                                 status=202)

    # -- sessions and the schedule ------------------------------------------------------------

    def _session_view(self, s: Session, with_halls: bool = False) -> dict:
        try:
            halls = resolve_halls(s.halls, self.st.topology.halls)
        except ValueError:
            halls = []
        view = msgspec.to_builtins(s)
        view["theme_name"] = (self.st.programme.themes if self.st.programme else {}).get(s.theme, s.theme)
        view["hall_count"] = len(halls)
        if with_halls:
            view["hall_ids"] = halls
        return view

    async def sessions(self, request: web.Request) -> web.Response:
        await authenticate(request, self.accounts, "viewer")
        rows = sorted((await self.st.store.sessions()).values(), key=lambda s: (s.start, s.id))
        return web.json_response({"sessions": [self._session_view(s) for s in rows],
                                  "themes": self.st.programme.themes if self.st.programme else {},
                                  "default_stream": self.st.settings.stream})

    async def session(self, request: web.Request) -> web.Response:
        await authenticate(request, self.accounts, "viewer")
        s = (await self.st.store.sessions()).get(request.match_info["session"])
        if s is None:
            raise Problem(404, f"unknown session {request.match_info['session']}")
        return web.json_response(self._session_view(s, with_halls=True))

    def _check(self, s: Session, others: dict[str, Session]) -> list[str]:
        """Validate a session against the themes, the topology and the live sessions it would share halls with."""
        try:
            halls = check_session(s, self.st.programme.themes if self.st.programme else {}, self.st.topology)
        except ValueError as exc:
            raise Problem(422, str(exc)) from None
        if s.state == "live":
            for o in others.values():
                if o.id != s.id and o.state == "live":
                    shared = [h for h in halls if h in set(resolve_halls(o.halls, self.st.topology.halls))]
                    if shared:
                        raise Problem(409, f"session {o.id} is live at {', '.join(shared[:5])}"
                                           f"{' …' if len(shared) > 5 else ''}: end it first, or leave those halls out")
        return halls

    async def create_session(self, request: web.Request) -> web.Response:
        p = await authenticate(request, self.accounts, "operator")
        body = await read_json(request, SessionSpec, 16384)
        s = Session(**msgspec.structs.asdict(body))
        async with self._locked("sessions", p.user):
            existing = await self.st.store.sessions()
            if s.id in existing:
                raise Problem(409, f"session {s.id} exists already")
            self._check(s, existing)
            await self.st.store.put_session(s)
            await self.st.store.event("session_created", s.id, s.title, actor=p.user)
        return web.json_response(self._session_view(s, with_halls=True), status=201)

    async def edit_session(self, request: web.Request) -> web.Response:
        p = await authenticate(request, self.accounts, "operator")
        sid = request.match_info["session"]
        body = await read_json(request, SessionPatch, 16384)
        async with self._locked("sessions", p.user):
            existing = await self.st.store.sessions()
            s = existing.get(sid)
            if s is None:
                raise Problem(404, f"unknown session {sid}")
            changes = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not msgspec.UNSET}
            if not changes:
                raise Problem(422, "nothing to change")
            s = msgspec.structs.replace(s, **changes)
            self._check(s, existing)
            await self.st.store.put_session(s)
            await self.st.store.event("session_edited", sid, ", ".join(sorted(changes)), actor=p.user)
        return web.json_response(self._session_view(s, with_halls=True))

    async def start_session(self, request: web.Request) -> web.Response:
        """Its halls follow its stream within a sweep (~0.25 s); a hall in another live session is a 409."""
        return await self._set_live(request, True)

    async def end_session(self, request: web.Request) -> web.Response:
        return await self._set_live(request, False)

    async def _set_live(self, request: web.Request, live: bool) -> web.Response:
        p = await authenticate(request, self.accounts, "operator")
        sid = request.match_info["session"]
        async with self._locked("sessions", p.user):
            existing = await self.st.store.sessions()
            s = existing.get(sid)
            if s is None:
                raise Problem(404, f"unknown session {sid}")
            if live and s.state == "live":
                raise Problem(409, f"session {sid} is live already (started by {s.by})")
            if not live and s.state != "live":
                raise Problem(409, f"session {sid} is not live")
            now = time.time()
            s = msgspec.structs.replace(s, state="live" if live else "ended", by=p.user,
                                        **({"started_at": now} if live else {"ended_at": now}))
            halls = self._check(s, existing)
            await self.st.store.put_session(s)
            await self.st.store.event("session_started" if live else "session_ended", sid,
                                      f"{s.title} ({len(halls)} halls, stream {s.stream})", actor=p.user)
        return web.json_response(self._session_view(s, with_halls=True))

    # -- the floor ---------------------------------------------------------------------------

    async def _floor_view(self) -> dict:
        holder = await self.st.store.floor()
        if holder is not None:
            holder["session"] = self.st.planner.session_of.get(holder["hall"], ("",))[0] if hasattr(
                self.st.planner, "session_of") else ""
        return {"holder": holder, "queue": await self.st.store.floor_queue()}

    async def floor(self, request: web.Request) -> web.Response:
        await authenticate(request, self.accounts, "viewer")
        return web.json_response(await self._floor_view())

    async def give_floor(self, request: web.Request) -> web.Response:
        """Give the floor to a hall (taking it from whoever holds it): its camera reaches the other
        halls of its session as the programme's second track."""
        p = await authenticate(request, self.accounts, "operator")
        body = await read_json(request, FloorBody, 1024)
        if body.hall not in self.st.halls_by_id:
            raise Problem(404, f"unknown hall {body.hall}")
        async with self._locked("floor", p.user):
            holder = await self.st.store.floor()
            current = holder["hall"] if holder else ""
            if body.expect != current and (body.expect or current) and body.expect != "*":
                raise Problem(409, f"{current or 'nobody'} holds the floor now, not {body.expect or 'nobody'}: "
                                   "another operator changed it")
            if current == body.hall:
                raise Problem(409, f"{body.hall} holds the floor already")
            if body.hall not in await self.st.store.connected():
                raise Problem(409, f"hall {body.hall} is not on line")
            await self.st.store.set_floor(body.hall, p.user)
            await self.st.store.event("floor_given", body.hall, f"from {current or 'nobody'}", actor=p.user)
        return web.json_response(await self._floor_view(), status=202)

    async def take_floor(self, request: web.Request) -> web.Response:
        p = await authenticate(request, self.accounts, "operator")
        async with self._locked("floor", p.user):
            holder = await self.st.store.floor()
            if holder is None:
                raise Problem(409, "nobody holds the floor")
            await self.st.store.set_floor(None, p.user)
            await self.st.store.event("floor_taken", holder["hall"], "floor taken back", actor=p.user)
        return web.json_response(await self._floor_view())

    async def raise_hand(self, request: web.Request) -> web.Response:
        """A hall asks to speak (an operator enters it, e.g. from the hall's call): it joins the queue."""
        p = await authenticate(request, self.accounts, "operator")
        body = await read_json(request, QueueBody, 1024)
        if body.hall not in self.st.halls_by_id:
            raise Problem(404, f"unknown hall {body.hall}")
        if not await self.st.store.queue_floor(body.hall, True, p.user):
            raise Problem(409, f"{body.hall} is in the queue already")
        await self.st.store.event("floor_requested", body.hall, "asks to speak", actor=p.user)
        return web.json_response(await self._floor_view(), status=201)

    async def lower_hand(self, request: web.Request) -> web.Response:
        p = await authenticate(request, self.accounts, "operator")
        hall = request.match_info["hall"]
        if not await self.st.store.queue_floor(hall, False, p.user):
            raise Problem(404, f"{hall} is not in the queue")
        await self.st.store.event("floor_request_withdrawn", hall, "", actor=p.user)
        return web.json_response(await self._floor_view())

    async def hall_player(self, request: web.Request) -> web.Response:
        """The address to open full screen on the hall's projector PC: its own player page, with a
        media token for the hall's programme in the URL fragment (never sent to a server)."""
        p, hall = await self._operator_on_hall(request)
        body = await read_json(request, PlayerBody, 1024) if request.can_read_body else PlayerBody()
        if not 60 <= body.ttl_s <= 14 * 24 * 3600:
            raise Problem(422, "ttl_s must be between 60 and 1209600")
        url = (await self.st.store.nodes()).get(hall, {}).get("url", "")
        if not url:
            raise Problem(409, f"hall {hall} has not registered its viewer server yet")
        stream = self.st.settings.stream
        token = self.st.signer.mint(f"player:{hall}", stream, "sub", body.ttl_s, aud=hall)
        floor = self.st.signer.mint(f"player:{hall}", "floor", "sub", body.ttl_s, aud=hall)  # the speaker, in a corner
        await self.st.store.event("player_url", hall, f"projector page issued for {body.ttl_s} s", actor=p.user)
        camera = self.st.signer.mint(f"player:{hall}", "camera", "pub", body.ttl_s, aud=hall)  # its camera, when it speaks
        return web.json_response({"hall": hall, "url": f"{url}/player/#stream={stream}&token={token}&floor={floor}"
                                                      f"&camera={camera}",
                                  "expires_in": body.ttl_s})

    async def hall_hitless(self, request: web.Request) -> web.Response:
        """Put a hall in hitless mode (both paths carry the programme; twice the bandwidth) or back."""
        p, hall = await self._operator_on_hall(request)
        body = await read_json(request, HitlessBody, 1024)
        async with self._locked(hall, p.user):
            await self.st.store.set_hitless(hall, body.on, p.user)
            await self.st.store.event("operator_hitless", hall, "hitless on: both paths carry the programme"
                                      if body.on else "hitless off: the standby path is parked", actor=p.user)
        return web.json_response({"hall": hall, "hitless": body.on, "status": "accepted"}, status=202)

    async def hall_layer(self, request: web.Request) -> web.Response:
        """Bound a hall's layer of the bitrate ladder (floor, ceiling) or make it audio only."""
        p, hall = await self._operator_on_hall(request)
        body = await read_json(request, LayerBody, 1024)
        ladders = [s.get("ladder") for s in (await self.st.store.stats()).values() if s.get("ladder")]
        if not ladders:
            raise Problem(409, "no relay has a bitrate ladder (relay setting ladder): there are no layers to choose")
        names = max(ladders, key=len)
        for key in ("floor", "ceiling"):
            value = getattr(body, key)
            if value and value not in names:
                raise Problem(422, f"{key} must be one of {', '.join(names)} (or empty for none), not {value!r}")
        if body.floor and body.ceiling and names.index(body.ceiling) > names.index(body.floor):
            raise Problem(422, f"ceiling {body.ceiling} is below floor {body.floor}")
        async with self._locked(hall, p.user):
            await self.st.store.set_layer_policy(hall, body.floor, body.ceiling, body.audio_only, p.user)
            what = ("audio only" if body.audio_only else
                    f"floor {body.floor or 'none'}, ceiling {body.ceiling or 'none'}")
            await self.st.store.event("operator_layer", hall, what, actor=p.user)
        return web.json_response({"hall": hall, "floor": body.floor, "ceiling": body.ceiling,
                                  "audio_only": body.audio_only, "layers": names, "status": "accepted"}, status=202)

    async def drain_relay(self, request: web.Request) -> web.Response:
        """Empty a relay (its halls and relays move, make-before-break) or put it back in service."""
        p = await authenticate(request, self.accounts, "operator")
        relay = request.match_info["relay"]
        body = await read_json(request, DrainBody, 1024)
        nodes = await self.st.store.nodes()
        if nodes.get(relay, {}).get("kind") != "relay":
            raise Problem(404, f"unknown relay {relay}")
        async with self._locked(relay, p.user):
            drained = await self.st.store.drained()
            if body.drain and relay in drained:
                raise Problem(409, f"relay {relay} is already being drained (by {drained[relay]['by']})")
            if not body.drain and relay not in drained:
                raise Problem(409, f"relay {relay} is in service already")
            await self.st.store.set_drained(relay, body.drain, p.user)
            await self.st.store.event("operator_drain" if body.drain else "operator_undrain", relay,
                                      "emptying: no new placements" if body.drain else "back in service",
                                      actor=p.user)
        return web.json_response({"relay": relay, "drained": body.drain})

    async def node_credential(self, request: web.Request) -> web.Response:
        """Revoke a hall's or relay's credential (its control channel closes within a second and
        it cannot come back), or reinstate it."""
        p = await authenticate(request, self.accounts, "admin")
        node = request.match_info["node"]
        body = await read_json(request, RevokeBody, 4096)  # room for a reason of 200 escaped characters
        if len(body.reason) > 200:
            raise Problem(422, "reason must be at most 200 characters")
        known = node in self.st.halls_by_id or node in (await self.st.store.nodes())
        if not known:
            raise Problem(404, f"unknown node {node}")
        await self.st.store.set_revoked(node, body.revoked, p.user, body.reason)
        await self.st.store.event("credential_revoked" if body.revoked else "credential_reinstated", node,
                                  body.reason, actor=p.user)
        if body.revoked:
            await self.st.hub.enforce_revocations()
        return web.json_response({"node": node, "revoked": body.revoked})

    async def node_credential_reissue(self, request: web.Request) -> web.Response:
        """A new credential for a hall or relay (its PC was lost, its secret leaked): the node moves
        to the next generation, every earlier credential stops working at once (its channel closes),
        and a revocation is lifted. The credential is in this answer only; install it on the node."""
        p = await authenticate(request, self.accounts, "admin")
        node = request.match_info["node"]
        known = node in self.st.halls_by_id or node in (await self.st.store.nodes())
        if not known:
            raise Problem(404, f"unknown node {node}")
        generation = await self.st.store.next_generation(node)
        await self.st.store.set_revoked(node, False, p.user)
        await self.st.store.event("credential_reissued", node, f"generation {generation}; earlier ones refused",
                                  actor=p.user)
        await self.st.hub.enforce_revocations()
        return web.json_response({"node": node, "generation": generation,
                                  "credential": node_credential(self.st.hub.node_key, node, generation)})

    # -- programme preview in the console ------------------------------------------------------

    async def preview(self, request: web.Request) -> web.Response:
        """WHEP through the orchestrator: the console posts its offer here and gets the answer of a
        relay chosen for it, so the page needs neither a media token nor cross-origin requests."""
        p = await authenticate(request, self.accounts, "viewer")
        if request.content_type != "application/sdp":
            raise Problem(415, "send an SDP offer with Content-Type: application/sdp")
        offer = await request.content.read(self.st.settings.max_body_bytes + 1)
        if len(offer) > self.st.settings.max_body_bytes:
            raise Problem(413, f"body larger than {self.st.settings.max_body_bytes} bytes")
        # an operator holds at most two previews: a page closed without its DELETE (a crashed
        # browser) must not hold a place for ever, so the oldest of theirs makes way
        mine = [s for s, (_, _, user) in self.previews.items() if user == p.user]
        for session in mine[: max(len(mine) - 1, 0)]:
            url, token, _ = self.previews.pop(session)
            asyncio.ensure_future(self._end_preview(url, token))
        if len(self.previews) >= self.st.settings.previews_max:
            raise Problem(503, "too many console previews open", {"Retry-After": "10"})
        views, _ = await self.st.planner.relay_views()
        wanted = request.query.get("relay")
        pool = [v for v in views if v.alive and v.url and (v.id == wanted if wanted else True)]
        if wanted and not pool:
            raise Problem(404, f"relay {wanted} is not alive")
        if not pool:
            raise Problem(503, "no relay is alive", {"Retry-After": "2"})
        relay = min(pool, key=lambda v: (v.role != "regional", v.region != "north", v.utilisation, v.id))
        stream = self.st.settings.stream
        token = self.st.signer.mint(f"console:{p.user}", stream, "sub", 3600, aud=relay.id, once=True)
        url = f"{relay.url.rstrip('/')}/whep/{stream}"
        try:
            async with http_session(timeout=aiohttp.ClientTimeout(total=10)) as http:
                async with http.post(url, data=offer, headers={
                        "Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}) as r:
                    answer = await r.text()
                    location = r.headers.get("Location", "")
                    status = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise Problem(502, f"relay {relay.id} did not answer: {type(exc).__name__}") from None
        if status != 201 or not location:
            raise Problem(status if 400 <= status < 500 else 502, f"relay {relay.id} refused: {answer[:200]}")
        session = location.rstrip("/").rsplit("/", 1)[-1]
        self.previews[session] = (f"{relay.url.rstrip('/')}{location}", token, p.user)
        return web.Response(status=201, text=answer, content_type="application/sdp", headers={
            "Location": f"/api/v1/preview/{session}", "X-Diemcau-Relay": relay.id})

    async def preview_delete(self, request: web.Request) -> web.Response:
        p = await authenticate(request, self.accounts, "viewer")
        entry = self.previews.get(request.match_info["session"])
        if entry is None:
            raise Problem(404, "no such preview session")
        url, token, user = entry
        if user != p.user and not p.allows("admin"):
            raise Problem(403, "this preview belongs to another operator")
        del self.previews[request.match_info["session"]]
        await self._end_preview(url, token)
        return web.Response(status=204)

    async def _end_preview(self, url: str, token: str) -> None:
        try:
            async with http_session(timeout=aiohttp.ClientTimeout(total=5)) as http:
                async with http.delete(url, headers={"Authorization": f"Bearer {token}"}):
                    pass
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass  # the relay is gone or ends the session itself when the peer connection closes

    # -- events ----------------------------------------------------------------------------

    async def events(self, request: web.Request) -> web.Response:
        await authenticate(request, self.accounts, "viewer")
        raw = request.query.get("count", "200")
        # digits only: int() would also take " 5", "+5", "1_000" and other scripts' digits
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 9 and 1 <= int(raw) <= 5000):
            raise Problem(400, "count must be an integer between 1 and 5000")
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "csv"):
            raise Problem(400, "format must be json or csv")
        after = request.query.get("after") or None
        if after is not None and not EVENT_ID.fullmatch(after):
            raise Problem(400, "after must be an event id such as 1700000000000-0")
        evs = await self.st.store.events(int(raw), request.query.get("kind") or None, request.query.get("subject") or None,
                                         request.query.get("actor") or None, after)
        if fmt == "csv":
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["id", "time", "kind", "subject", "actor", "detail"])
            for e in evs:
                ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(e.get("ts", 0)) / 1000))
                w.writerow([e["id"], ts, e.get("kind"), e.get("subject"), e.get("actor"), e.get("detail")])
            return web.Response(text=buf.getvalue(), content_type="text/csv",
                                headers={"Content-Disposition": 'attachment; filename="diemcau-events.csv"'})
        return web.json_response({"events": evs})

    async def board_stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the whole board on connect, then each new snapshot (~2 per second)."""
        await authenticate(request, self.accounts, "viewer")
        if self.sse_clients >= self.st.settings.sse_clients_max:
            raise Problem(503, "too many console connections", {"Retry-After": "5"})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await resp.prepare(request)
        self.sse_clients += 1
        try:
            version = -1
            while not self.closing:
                if version != self.board_version:
                    version = self.board_version
                    await resp.write(b"event: board\ndata: " + json.dumps(self.board).encode() + b"\n\n")
                try:
                    await asyncio.wait_for(self._board_changed.wait(), 15)
                except asyncio.TimeoutError:
                    await resp.write(b": keepalive\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.sse_clients -= 1
        return resp

    # -- documents -------------------------------------------------------------------------

    async def openapi(self, request: web.Request) -> web.Response:
        await authenticate(request, self.accounts, "viewer")
        return web.json_response(openapi_document(self.st.programme.themes if self.st.programme else ()))

    async def metrics(self, request: web.Request) -> web.Response:
        await authenticate(request, self.accounts, "viewer")
        if now_ms() - self.board["at"] > 2 * self.st.settings.board_interval_ms:
            await self.refresh_board()  # nobody watches the board at this scale: build it for this scrape
        b = self.board
        lines = [
            "# HELP diemcau_halls Halls by state.", "# TYPE diemcau_halls gauge",
        ]
        for state in ("on_air", "degraded", "audio_only", "connecting", "dark"):
            lines.append(f'diemcau_halls{{state="{state}"}} {b["counts"].get(state, 0)}')
        lines += ["# HELP diemcau_relay_alive Relay liveness.", "# TYPE diemcau_relay_alive gauge"]
        for r in b["relays"]:
            lines.append(f'diemcau_relay_alive{{relay="{r["id"]}",role="{r["role"]}"}} {int(r["alive"])}')
        lines += ["# HELP diemcau_relay_subscribers WHEP sessions on a relay.",
                  "# TYPE diemcau_relay_subscribers gauge"]
        for r in b["relays"]:
            lines.append(f'diemcau_relay_subscribers{{relay="{r["id"]}"}} {r.get("subscribers", 0)}')
        for name, key, help_ in (
            ("diemcau_hall_frames_received", "frames_received", "Frames a hall received."),
            ("diemcau_hall_latency_ms_p50", "latency_ms_p50", "Capture-to-hall latency, median."),
            ("diemcau_hall_latency_ms_p95", "latency_ms_p95", "Capture-to-hall latency, 95th pct."),
            ("diemcau_hall_loss_percent", "loss_pct", "Packet loss seen by a hall."),
        ):
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge"]
            for h in b["halls"]:
                if key in h:
                    lines.append(f'{name}{{hall="{h["id"]}",region="{h["region"]}"}} {h[key]}')
        hub = self.st.hub
        lines += [
            "# TYPE diemcau_control_connections gauge", f"diemcau_control_connections {len(hub.channels)}",
            "# TYPE diemcau_heartbeats_total counter", f"diemcau_heartbeats_total {hub.heartbeats}",
            "# TYPE diemcau_control_rejected_total counter", f"diemcau_control_rejected_total {hub.rejected_messages}",
            "# TYPE diemcau_leader gauge", f"diemcau_leader {int(self.st.leadership.is_leader)}",
            "# TYPE diemcau_replans_total counter", f"diemcau_replans_total {self.st.planner.replans}",
            # relays that looked silent only because this orchestrator's own loop had stood still
            "# TYPE diemcau_relay_deaths_deferred_total counter",
            f"diemcau_relay_deaths_deferred_total {self.st.planner.deaths_deferred}",
            "# TYPE diemcau_loop_stall_seconds gauge",
            f"diemcau_loop_stall_seconds {self.st.planner.loop_watch.stalled_within(60):.3f}",
            *hub.lag.prometheus("diemcau_heartbeat_lag_ms"),
            *self.st.gc_watch.prometheus(),
            "# TYPE diemcau_sweep_seconds gauge",
            f'diemcau_sweep_seconds{{of="last"}} {self.st.planner.sweep_s_last:.4f}',
            f'diemcau_sweep_seconds{{of="max"}} {self.st.planner.sweep_s_max:.4f}',
        ]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    async def console(self, request: web.Request) -> web.FileResponse:
        name = request.match_info.get("file") or "index.html"
        try:
            path = (CONSOLE_DIR / name).resolve()
            found = CONSOLE_DIR.resolve() in path.parents and path.is_file()
        except (OSError, ValueError):  # a name too long for the file system, a NUL byte...
            found = False
        if not found:
            raise Problem(404, "no such console file")
        return web.FileResponse(path)

    async def root(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/console/")


ROUTES = [
    # (method, path, handler name, minimum role or "public"/"node")
    ("POST", "/api/v1/login", "login", "public"),
    ("POST", "/api/v1/logout", "logout", "viewer"),
    ("GET", "/api/v1/me", "me", "viewer"),
    ("GET", "/api/v1/halls", "halls", "viewer"),
    ("GET", "/api/v1/halls/{hall}", "hall", "viewer"),
    ("GET", "/api/v1/relays", "relays", "viewer"),
    ("GET", "/api/v1/leadership", "leadership", "viewer"),
    ("POST", "/api/v1/tokens/media", "media_token", "operator"),
    ("POST", "/api/v1/tokens/join", "join_token", "operator"),
    ("POST", "/api/v1/join", "join", "participant"),
    ("GET", "/api/v1/source", "source", "viewer"),
    ("POST", "/api/v1/source", "switch_source", "operator"),
    ("POST", "/api/v1/halls/{hall}/move", "move_hall", "operator"),
    ("POST", "/api/v1/halls/{hall}/hitless", "hall_hitless", "operator"),
    ("POST", "/api/v1/halls/{hall}/layer", "hall_layer", "operator"),
    ("POST", "/api/v1/halls/{hall}/player", "hall_player", "operator"),
    ("GET", "/api/v1/floor", "floor", "viewer"),
    ("POST", "/api/v1/floor", "give_floor", "operator"),
    ("DELETE", "/api/v1/floor", "take_floor", "operator"),
    ("POST", "/api/v1/floor/queue", "raise_hand", "operator"),
    ("DELETE", "/api/v1/floor/queue/{hall}", "lower_hand", "operator"),
    ("GET", "/api/v1/sessions", "sessions", "viewer"),
    ("POST", "/api/v1/sessions", "create_session", "operator"),
    ("GET", "/api/v1/sessions/{session}", "session", "viewer"),
    ("PATCH", "/api/v1/sessions/{session}", "edit_session", "operator"),
    ("POST", "/api/v1/sessions/{session}/start", "start_session", "operator"),
    ("POST", "/api/v1/sessions/{session}/end", "end_session", "operator"),
    ("POST", "/api/v1/relays/{relay}/drain", "drain_relay", "operator"),
    ("POST", "/api/v1/nodes/{node}/credential", "node_credential", "admin"),
    ("POST", "/api/v1/nodes/{node}/credential/reissue", "node_credential_reissue", "admin"),
    ("POST", "/api/v1/preview", "preview", "viewer"),
    ("DELETE", "/api/v1/preview/{session}", "preview_delete", "viewer"),
    ("GET", "/api/v1/events", "events", "viewer"),
    ("GET", "/api/v1/board/stream", "board_stream", "viewer"),
    ("GET", "/api/v1/openapi.json", "openapi", "viewer"),
    ("GET", "/metrics", "metrics", "viewer"),
    ("GET", "/", "root", "public"),
    ("GET", "/console/", "console", "public"),
    ("GET", "/console/{file}", "console", "public"),
]


def add_routes(app: web.Application, api: Api) -> None:
    for method, path, name, _ in ROUTES:
        app.router.add_route(method, path, getattr(api, name))
