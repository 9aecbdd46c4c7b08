"""The relay's HTTP face: WHIP (publish) and WHEP (subscribe) per RFC 9725 and the WHEP draft."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from pathlib import Path

from aiohttp import web

from diemcau.http import Problem, unauthorized
from diemcau.tokens import MediaClaims, MediaTokenVerifier, TokenError, bearer

from .adapt import LayerControl
from .ladder import LAYER_SEP, Transcoder, layer_stream, parse_ladder, split_stream
from .sdp import SdpError, check_offer
from .sessions import PublishSession, SessionError, SubscribeSession
from .settings import RelaySettings
from .source import Source

log = logging.getLogger(__name__)

STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(~[a-z0-9]{1,16})?$")  # ~: a ladder layer
LAYER_WAIT_S = 2.5  # a layer being started (transcoder warming up, pull connecting) gets this long


class RelayCore:
    """Streams and sessions of one relay process; knows nothing of Redis or placement."""

    def __init__(self, settings: RelaySettings, verifier: MediaTokenVerifier) -> None:
        self.settings = settings
        self.verifier = verifier
        self.sources: dict[str, Source] = {}
        self.info: dict = {}  # what a hall's player page shows (hall, session, title, floor...): set_info() only
        self.info_version = 0  # counts changes of `info`: a page waits (long-polls) for the next one
        self._info_changed = asyncio.Event()  # set (and replaced) on each change
        self._closing = False
        self.on_local_publish = None  # async (stream): a stream pulled here gets a local publisher (the agent stops pulling)
        self.expected: set[str] = set()  # streams we are told to carry (upstream pending)
        self.publishers: dict[str, PublishSession] = {}
        self.subscribers: dict[str, SubscribeSession] = {}
        self.spent: dict[str, int] = {}  # single-use tokens' jti -> expiry: each opened its one session
        self._tasks: set[asyncio.Task] = set()
        try:
            self.ladder = parse_ladder(settings.ladder)
        except ValueError as exc:
            raise ValueError(f"relay setting ladder: {exc}") from None
        self.transcoders: dict[str, Transcoder] = {}  # base stream -> its transcoder (where published)
        self.layer_holders: dict[str, set] = {}  # layer stream -> the LayerControls using it
        self.layer_controls: set = set()  # every adapting subscriber's LayerControl
        self._layer_idle_since: dict[str, float] = {}
        self.on_hand = None  # async (up): the hall's projector page asks to speak (hall daemons only)
        self.pull_layer = None  # async (layer stream): pull it from our upstream (the agent sets this)
        self.drop_layer = None  # async (layer stream): stop pulling it

    # -- helpers -------------------------------------------------------------------------

    def source(self, name: str, create: bool = False) -> Source | None:
        src = self.sources.get(name)
        if src is None and create:
            src = self.sources[name] = Source(name, self.settings.keyframe_min_interval_s)
        return src

    def set_info(self, **values) -> None:
        """Change what the player pages show; pages waiting for a change are answered at once."""
        if all(self.info.get(k, _MISSING) == v for k, v in values.items()):
            return
        self.info.update(values)
        self.info_version += 1
        self._wake_info_waiters()

    def _wake_info_waiters(self) -> None:
        changed, self._info_changed = self._info_changed, asyncio.Event()
        changed.set()

    def shutdown(self) -> None:
        """The server stops: answer every waiting player page now (not after its wait runs out)."""
        self._closing = True
        self._wake_info_waiters()

    def _authorize(self, request: web.Request, stream: str, direction: str) -> MediaClaims:
        token = bearer(request.headers.get("Authorization"))
        if token is None:
            raise unauthorized("missing Bearer token")
        try:
            # a token for a stream covers its ladder layers
            return self.verifier.verify(token, split_stream(stream)[0], direction, self.settings.id)
        except TokenError as exc:
            # A token that proves nothing is 401; a valid token for something else is 403.
            scoped = any(w in str(exc) for w in ("is for stream", "allows", "is for relay"))
            raise _TokenRejected(403 if scoped else 401, str(exc)) from None

    def _spend(self, claims: MediaClaims) -> None:
        """A single-use token opens one session: a replay (after its DELETE, or alongside) is refused."""
        if not claims.once:
            return
        if claims.jti in self.spent:
            raise _TokenRejected(401, "single-use media token already used (its session was opened before); ask for a new one")
        if len(self.spent) > 10_000:
            now = time.time()
            self.spent = {j: exp for j, exp in self.spent.items() if exp > now}
        self.spent[claims.jti] = claims.exp

    def _check_session_limits(self, request: web.Request, claims: MediaClaims) -> None:
        """A token holds at most a few sessions (a reconnect may overlap the old one), a source
        address a bounded number: a leaked token or one noisy host cannot take a relay's capacity."""
        sessions = [*self.publishers.values(), *self.subscribers.values()]
        limit = self.settings.max_sessions_per_token
        if claims.jti and limit and sum(1 for s in sessions if s.token_id == claims.jti) >= limit:
            raise _Rejected(429, f"this token already holds {limit} sessions here; DELETE one first", retry_after="2")
        limit = self.settings.max_sessions_per_address
        remote = request.remote or ""
        if limit and sum(1 for s in sessions if s.remote == remote) >= limit:
            raise _Rejected(429, f"{remote} already holds {limit} sessions here", retry_after="5")

    async def _read_offer(self, request: web.Request) -> str:
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/sdp":
            raise _Rejected(415, "body must be an SDP offer with Content-Type: application/sdp")
        if request.content_length is not None and request.content_length > self.settings.max_body_bytes:
            raise _Rejected(413, f"SDP offer larger than {self.settings.max_body_bytes} bytes")
        body = await request.content.read(self.settings.max_body_bytes + 1)
        if len(body) > self.settings.max_body_bytes:
            raise _Rejected(413, f"SDP offer larger than {self.settings.max_body_bytes} bytes")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise _Rejected(400, "SDP offer is not UTF-8 text") from None
        return text

    def _stream_name(self, request: web.Request) -> str:
        name = request.match_info["stream"]
        if not STREAM_NAME.fullmatch(name):
            raise _Rejected(400, "stream name must be 1-64 letters, digits, '_', '.', '-' (and '~LAYER' for a ladder layer)")
        layer = split_stream(name)[1]
        if layer and layer not in {x.name for x in self.ladder}:
            raise _Rejected(404, f"no ladder layer {layer!r} here (layers: {', '.join(x.name for x in self.ladder) or 'none'})")
        return name

    # -- the bitrate ladder --------------------------------------------------------------

    def layer_names(self) -> list[str]:
        return ["top", *(x.name for x in self.ladder)]

    def layer_up(self, base: str, name: str):
        """The video UpTrack carrying layer `name` of stream `base` here, if it runs."""
        src = self.sources.get(base if name == "top" else layer_stream(base, name))
        return src.tracks.get("video") if src is not None else None

    async def acquire_layer(self, base: str, name: str, holder=None):
        """The UpTrack of a layer, started if need be: transcoded here when the stream is
        published here, pulled from our upstream otherwise. None if it cannot start in time."""
        if name == "top":
            return self.layer_up(base, "top")
        stream = layer_stream(base, name)
        if holder is not None:
            self.layer_holders.setdefault(stream, set()).add(holder)
        self._layer_idle_since.pop(stream, None)
        up = self.layer_up(base, name)
        if up is not None:
            return up
        src = self.sources.get(base)
        top = src.tracks.get("video") if src is not None else None
        if top is None:
            return None
        if src.publisher and src.publisher not in ("upstream",):
            spec = next(x for x in self.ladder if x.name == name)
            tr = self.transcoders.get(base)
            if tr is None or tr.top is not top:
                if tr is not None:
                    tr.close()
                tr = self.transcoders[base] = Transcoder(top)
            layer_src = self.source(stream, create=True)
            layer_src.publisher = "transcoder"
            up = layer_src.track_for("video", top.codec)
            tr.enable(spec, up)
            log.info("%s: %s transcodes layer %s (%dx%d, %d kbps)", base, self.settings.id, name, spec.width, spec.height, spec.kbps)
            return up
        if self.pull_layer is None:
            return None
        await self.pull_layer(stream)
        deadline = asyncio.get_running_loop().time() + LAYER_WAIT_S
        while (up := self.layer_up(base, name)) is None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        return up

    def release_layers(self, holder) -> None:
        for holders in self.layer_holders.values():
            holders.discard(holder)

    def hold_only(self, holder, base: str, name: str) -> None:
        """`holder` now uses layer `name` of `base` only; the others may stop when nobody uses them."""
        keep = layer_stream(base, name)
        for stream, holders in self.layer_holders.items():
            if stream != keep:
                holders.discard(holder)

    async def _stop_unused_layers(self) -> None:
        """A layer nobody has used for `layer_linger_s` stops: its transcoder or its pull."""
        now = asyncio.get_running_loop().time()
        for stream in [n for n in self.sources if LAYER_SEP in n]:
            src = self.sources[stream]
            up = src.tracks.get("video")
            used = bool(self.layer_holders.get(stream)) or (up is not None and (up.downtracks or up.switchers))
            if used:
                self._layer_idle_since.pop(stream, None)
                continue
            since = self._layer_idle_since.setdefault(stream, now)
            if now - since < self.settings.layer_linger_s:
                continue
            base, name = split_stream(stream)
            log.info("%s: layer %s unused for %.0f s at %s; stopping it", base, name, now - since, self.settings.id)
            self._layer_idle_since.pop(stream, None)
            self.layer_holders.pop(stream, None)
            tr = self.transcoders.get(base)
            if tr is not None and name in tr.layers:
                tr.disable(name)
                if not tr.layers:
                    tr.close()
                    del self.transcoders[base]
            elif self.drop_layer is not None:
                await self.drop_layer(stream)
            src.close()
            self.sources.pop(stream, None)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drop_when_failed(self, table: dict, session) -> None:
        """Forget a session whose connection never completes or later fails."""
        from .peer import wait_connected

        ok = await wait_connected(session.pc, self.settings.connect_timeout_s)
        if ok:
            done = asyncio.get_running_loop().create_future()

            def on_change() -> None:
                if session.pc.connectionState in ("failed", "closed") and not done.done():
                    done.set_result(None)

            session.pc.on("connectionstatechange", on_change)
            on_change()
            await done
        if table.get(session.id) is session:
            del table[session.id]
            await session.close()

    # -- handlers ------------------------------------------------------------------------

    async def whip_post(self, request: web.Request) -> web.Response:
        stream = self._stream_name(request)
        if LAYER_SEP in stream:
            raise _Rejected(400, "a ladder layer is made by the relay from its stream; publish the stream itself")
        claims = self._authorize(request, stream, "pub")
        text = await self._read_offer(request)
        try:
            check_offer(text, self.settings.max_body_bytes, self.settings.max_sdp_lines)
        except SdpError as exc:
            raise _Rejected(400, str(exc)) from None
        if len(self.publishers) >= self.settings.max_publishers:
            raise _Rejected(503, "relay has reached its publisher limit", retry_after="5")
        self._check_session_limits(request, claims)
        self._spend(claims)
        role = request.query.get("role", "primary")
        if role not in ("primary", "backup"):
            raise _Rejected(400, "role must be 'primary' or 'backup'")
        src = self.source(stream, create=True)
        assert src is not None
        if src.publisher == "upstream":
            if not stream.startswith(FLOOR_PREFIX):
                raise _Rejected(409, f"stream {stream} is pulled from upstream here; publish to an origin")
            if self.on_local_publish is not None:
                await self.on_local_publish(stream)  # the floor came to a hall behind this relay: stop pulling it
        held = src.feeds.get(role)
        if held is not None and held.session_id in self.publishers:
            if not stream.startswith(FLOOR_PREFIX):
                raise _Rejected(409, f"stream {stream} already has a {role} publisher; DELETE it first")
            # the floor passes: the new speaker (its token is the orchestrator's word) replaces the last
            old = self.publishers.pop(held.session_id)
            log.info("%s: a new speaker replaces %s", stream, old.subject)
            await old.close()
        session = PublishSession(src, claims.sub, self.settings.ice_servers, role)
        session.token_id, session.remote = claims.jti, request.remote or ""
        try:
            answer = await session.accept(text)
        except SessionError as exc:
            await session.close()
            raise _Rejected(exc.status, exc.reason) from None
        self.publishers[session.id] = session
        self._spawn(self._drop_when_failed(self.publishers, session))
        log.info("WHIP %s: %s feed from %s (session %s)", stream, role, claims.sub, session.id)
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": f"/whip/{stream}/{session.id}", "ETag": f'"{session.id}"'},
        )

    async def whep_post(self, request: web.Request) -> web.Response:
        stream = self._stream_name(request)
        claims = self._authorize(request, stream, "sub")
        text = await self._read_offer(request)
        try:
            offer = check_offer(text, self.settings.max_body_bytes, self.settings.max_sdp_lines)
        except SdpError as exc:
            raise _Rejected(400, str(exc)) from None
        base, layer = split_stream(stream)
        if layer:
            await self.acquire_layer(base, layer)  # a relay below wants a layer: start it here
        src = self.sources.get(stream)
        expected = stream in self.expected or stream.startswith(FLOOR_PREFIX)  # a floor may be on its way up
        if (src is None or not src.tracks) and expected:
            # a stream this relay was told to carry (a session just started, a floor just given):
            # hold the request a moment rather than make the subscriber come back later
            deadline = asyncio.get_running_loop().time() + EXPECTED_WAIT_S
            while (src is None or "video" not in src.tracks) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
                src = self.sources.get(stream)
        if src is None or not src.tracks:
            if expected:
                raise _Rejected(503, f"stream {stream} is not yet arriving here", retry_after="1")
            raise _Rejected(404, f"unknown stream {stream}")
        if len(self.subscribers) >= self.settings.capacity:
            raise _Rejected(503, "relay is at capacity", retry_after="2")
        self._check_session_limits(request, claims)
        self._spend(claims)
        session = SubscribeSession(src, claims.sub, self.settings.ice_servers)
        session.token_id, session.remote = claims.jti, request.remote or ""
        try:
            standby = request.query.get("standby", "") in ("1", "true")
            answer = await session.accept(text, [m.kind for m in offer.media], standby=standby)
        except SessionError as exc:
            await session.close()
            raise _Rejected(exc.status, exc.reason) from None
        self.subscribers[session.id] = session
        self._spawn(self._drop_when_failed(self.subscribers, session))
        if self.ladder and not layer and "video" in src.tracks and request.query.get("adapt", "1") not in ("0", "false"):
            # a hall or a viewer: its layer follows its link (a relay pulls with adapt=0)
            session.control = LayerControl(session, self, stream, self.layer_names(),
                                           [0, *(x.kbps for x in self.ladder)])
            session.control.start()
        return web.Response(
            status=201,
            text=answer,
            content_type="application/sdp",
            headers={"Location": f"/whep/{stream}/{session.id}", "ETag": f'"{session.id}"'},
        )

    async def _delete(self, request: web.Request, table: dict, direction: str) -> web.Response:
        stream = self._stream_name(request)
        claims = self._authorize(request, stream, direction)
        session = table.get(request.match_info["session"])
        if session is None or session.source.name != stream:
            raise _Rejected(404, "no such session")
        if session.subject != claims.sub:
            raise _Rejected(403, "session belongs to another subject")
        del table[session.id]
        await session.close()
        return web.Response(status=200)

    async def whep_layer(self, request: web.Request) -> web.Response:
        """WHEP layer extension: {"active": bool} wakes or parks a standby path."""
        stream = self._stream_name(request)
        claims = self._authorize(request, stream, "sub")
        session = self.subscribers.get(request.match_info["session"])
        if session is None or session.source.name != stream:
            raise _Rejected(404, "no such session")
        if session.subject != claims.sub:
            raise _Rejected(403, "session belongs to another subject")
        body = await _read_json(request, 4096)
        policy = ("adapt", "floor", "ceiling", "audio_only")
        if not isinstance(body, dict) or not body or set(body) - {"active", *policy}:
            raise _Rejected(422, 'body must be an object with some of "active", "adapt", "floor", "ceiling", "audio_only"')
        for key in ("active", "adapt", "audio_only"):
            if key in body and not isinstance(body[key], bool):
                raise _Rejected(422, f"{key} must be true or false")
        for key in ("floor", "ceiling"):
            if key in body and body[key] not in ("", *self.layer_names()):
                raise _Rejected(422, f"{key} must be one of {self.layer_names()} or \"\" (none)")
        control = getattr(session, "control", None)
        if control is None and any(k in body for k in policy):
            raise _Rejected(409, "this session has no layer control (no ladder here, or it asked for adapt=0)")
        if "active" in body:
            session.set_active(body["active"])
        if control is not None and any(k in body for k in policy):
            control.set_policy(**{k: body[k] for k in policy if k in body})
        out = {"active": session.active}
        if control is not None:
            out.update(control.stats())
        return web.json_response(out)

    async def whip_delete(self, request: web.Request) -> web.Response:
        return await self._delete(request, self.publishers, "pub")

    async def whep_delete(self, request: web.Request) -> web.Response:
        return await self._delete(request, self.subscribers, "sub")

    async def patch(self, request: web.Request) -> web.Response:
        # Trickle ICE and ICE restart are not offered: candidates are in the offer/answer.
        raise Problem(405, "trickle ICE is not supported; send all candidates in the offer",
                      {"Allow": "DELETE"})

    async def options(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers={"Allow": "POST, DELETE, OPTIONS"})

    async def player_info(self, request: web.Request) -> web.Response:
        """For the player page: which hall and session this is, who has the floor (a viewer's media
        token required). With ?since=VERSION (the "version" of its last answer) the request waits,
        up to ?wait= seconds (default 25), until something changes: a long poll, so the page learns
        of a new speaker the moment its hall daemon does."""
        stream = request.query.get("stream", "programme")
        self._authorize(request, stream, "sub")
        since = _query_int(request, "since", -1, 0, 2**53)
        wait_s = _query_int(request, "wait", INFO_WAIT_S, 0, INFO_WAIT_MAX_S)
        if since == self.info_version and wait_s and not self._closing:
            try:
                await asyncio.wait_for(self._info_changed.wait(), wait_s)
            except asyncio.TimeoutError:
                pass  # nothing changed: the same answer, the page asks again
        return web.json_response({**self.info, "version": self.info_version})

    async def hand(self, request: web.Request) -> web.Response:
        """The projector page's "raise hand": {"up": true|false} (the hall's viewer token required)."""
        stream = request.query.get("stream", "programme")
        self._authorize(request, stream, "sub")
        if self.on_hand is None:
            raise _Rejected(404, "a hand is raised at a hall's own server, not at a relay")
        body = await _read_json(request, 1024)
        if not isinstance(body, dict) or not isinstance(body.get("up"), bool) or set(body) != {"up"}:
            raise _Rejected(422, 'body must be {"up": true|false}')
        if not await self.on_hand(body["up"]):
            raise _Rejected(503, "the hall is not connected to the control plane now; try again", retry_after="2")
        self.set_info(hand=body["up"])
        return web.json_response({"hand": body["up"]})

    async def player(self, request: web.Request) -> web.FileResponse:
        name = request.match_info.get("file") or "index.html"
        if name not in PLAYER_FILES:
            raise Problem(404, "no such player file")
        return web.FileResponse(PLAYER_DIR / name)

    def start(self) -> None:
        self._spawn(self.watch_feeds())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for table in (self.subscribers, self.publishers):
            for session in list(table.values()):
                await session.close()
            table.clear()
        for tr in self.transcoders.values():
            tr.close()
        self.transcoders.clear()
        for src in self.sources.values():
            src.close()

    async def watch_feeds(self) -> None:
        """Switch a stream to its backup feed when the active one stalls (origins)."""
        last_sweep = 0.0
        while True:
            await asyncio.sleep(self.settings.source_check_ms / 1000)
            now = asyncio.get_running_loop().time()
            if self.ladder and now - last_sweep > 1.0:
                last_sweep = now
                await self._stop_unused_layers()
            for src in list(self.sources.values()):
                reason = src.check_feeds(self.settings.source_stall_ms / 1000)
                if reason:
                    log.warning("stream %s switched to its %s feed: %s", src.name, src.active_role, reason)

    def switch_source(self, stream: str, role: str, reason: str) -> bool:
        src = self.sources.get(stream)
        if src is None or role not in src.feeds:
            return False
        if src.active_role != role:
            src.switch_to(role, reason)
            log.warning("stream %s switched to its %s feed: %s", stream, role, reason)
        return True

    def stats(self) -> dict:
        return {
            "subscribers": len(self.subscribers),
            "publishers": len(self.publishers),
            "packets_in": sum(t.packets_in for s in self.sources.values() for t in s.tracks.values()),
            "packets_out": sum(dt.output.packets for s in self.subscribers.values() for dt in s.downtracks),
            "packets_dropped": sum(dt.output.dropped for s in self.subscribers.values() for dt in s.downtracks),
            "keyframe_requests_up": sum(
                t.keyframe_requests_up for s in self.sources.values() for t in s.tracks.values()
            ),
            # each adapting subscriber's layer and the reason for the last switch, by subject
            "layers": {s.subject: [s.control.layer, s.control.reason] for s in self.subscribers.values()
                       if getattr(s, "control", None) is not None and s.active},
            "transcoding": sorted(f"{b}~{n}" for b, t in self.transcoders.items() for n in t.layers),
            "ladder": self.layer_names() if self.ladder else [],
        }


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter in [low, high], or a 400 that says what is wrong with it."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _Rejected(400, f"{name} must be an integer, not {raw[:20]!r}") from None
    if not low <= value <= high:
        raise _Rejected(400, f"{name} must be between {low} and {high}")
    return value


async def _read_json(request: web.Request, max_bytes: int):
    """A small JSON body (the WHEP layer extension, a raised hand), or a 4xx that says why."""
    if request.content_type != "application/json":
        raise _Rejected(415, "send JSON with Content-Type: application/json")
    try:
        return json.loads(await request.content.read(max_bytes))
    except ValueError:
        raise _Rejected(400, "body is not valid JSON") from None


def _Rejected(status: int, reason: str, retry_after: str | None = None) -> Problem:
    return Problem(status, reason, {"Retry-After": retry_after} if retry_after else None)


def _TokenRejected(status: int, reason: str) -> Problem:
    if status == 401:
        return Problem(401, reason, {"WWW-Authenticate": 'Bearer realm="diemcau", error="invalid_token"'})
    return Problem(status, reason)


ROUTES = [
    # (method, path, handler, what a caller must hold: a media token's direction, or "public")
    ("POST", "/whip/{stream}", "whip_post", "pub"),
    ("DELETE", "/whip/{stream}/{session}", "whip_delete", "pub"),
    ("PATCH", "/whip/{stream}/{session}", "patch", "public"),  # 405: no trickle ICE
    ("OPTIONS", "/whip/{stream}", "options", "public"),
    ("POST", "/whep/{stream}", "whep_post", "sub"),
    ("DELETE", "/whep/{stream}/{session}", "whep_delete", "sub"),
    ("PATCH", "/whep/{stream}/{session}", "patch", "public"),
    ("POST", "/whep/{stream}/{session}/layer", "whep_layer", "sub"),
    ("OPTIONS", "/whep/{stream}", "options", "public"),
    # the hall's screen (static; it plays by WHEP with a media token from its URL fragment)
    ("GET", "/player/", "player", "public"),
    ("GET", "/player-info", "player_info", "sub"),
    ("POST", "/hand", "hand", "sub"),
    ("GET", "/player/{file}", "player", "public"),
]


PLAYER_DIR = Path(__file__).parent / "player"
FLOOR_PREFIX = "floor-"  # a floor stream: a new publisher replaces the previous speaker
INFO_WAIT_S = 25  # a player page's long poll of /player-info is answered after this long at most
INFO_WAIT_MAX_S = 60
_MISSING = object()
EXPECTED_WAIT_S = 3.0  # a WHEP request for an expected stream waits this long for it to arrive
PLAYER_FILES = ("index.html", "player.js")


def add_routes(app: web.Application, core: RelayCore) -> None:
    for method, path, name, _ in ROUTES:
        app.router.add_route(method, path, getattr(core, name))
