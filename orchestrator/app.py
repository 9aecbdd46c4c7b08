"""The orchestrator process: an aiohttp application with Redis state and its decision loops."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from aiohttp import web

from diemcau.http import Problem, on_prepare_security_headers, problem_middleware
from diemcau.redisconn import key_prefix_for, redacted
from diemcau.redisconn import connect as connect_redis
from diemcau.tokens import MediaTokenSigner
from diemcau.programme import Programme, load_programme
from diemcau.topology import ConfigError, Profile, Topology, load_profile, load_topology

from .api import Api, add_routes
from .auth import Accounts
from .control import ControlHub
from .gcwatch import GcWatch, freeze_long_lived
from .leader import Leadership
from .planner import Planner
from .settings import OrchestratorSettings
from .store import StaleLeader, Store

log = logging.getLogger(__name__)


class StartupError(SystemExit):
    pass


@dataclass
class State:
    settings: OrchestratorSettings
    redis: aioredis.Redis
    store: Store
    accounts: Accounts
    signer: MediaTokenSigner
    topology: Topology
    profile: Profile
    hub: ControlHub
    planner: Planner
    leadership: Leadership
    halls_by_id: dict = field(default_factory=dict)
    programme: Programme | None = None
    tasks: list = field(default_factory=list)
    auth_failures: dict = field(default_factory=dict)  # (address, minute) -> count
    gc_watch: GcWatch = field(default_factory=GcWatch)


STATE_KEY = web.AppKey("state", State)


def load_secrets(settings: OrchestratorSettings) -> tuple[bytes, MediaTokenSigner]:
    if not settings.node_key_file or not settings.media_key_file:
        raise StartupError(
            "orchestrator: node_key_file and media_key_file are required "
            "(DIEMCAU_ORCH_NODE_KEY_FILE, DIEMCAU_ORCH_MEDIA_KEY_FILE); `diemcau demo` generates its own"
        )
    try:
        node_key = bytes.fromhex(Path(settings.node_key_file).read_text().strip())
        signer = MediaTokenSigner.from_pem(Path(settings.media_key_file).read_bytes())
    except (OSError, ValueError) as exc:
        raise StartupError(f"orchestrator: cannot read secrets: {exc}") from None
    if len(node_key) < 16:
        raise StartupError("orchestrator: the node key must be at least 16 bytes")
    if settings.production and settings.operator_password and len(settings.operator_password) < 12:
        raise StartupError("orchestrator: production mode needs an operator password of 12+ characters")
    return node_key, signer


def make_app(settings: OrchestratorSettings) -> web.Application:
    """Build the orchestrator application; Redis is connected when the app starts."""
    node_key, signer = load_secrets(settings)
    topology = load_topology(settings.topology or None)
    profile = load_profile(settings.profile)
    try:
        programme = load_programme(topology, settings.programme or None)
    except ConfigError as exc:
        raise StartupError(f"orchestrator: {exc}") from None
    unknown = sorted({r.province for r in profile.relays if r.role == "provincial"} - topology.provinces())
    if unknown:
        raise StartupError(f"orchestrator: profile {settings.profile}: provincial relays name provinces the "
                           f"topology does not have: {', '.join(unknown)}")
    app = web.Application(middlewares=[_audit_middleware, problem_middleware, _redis_middleware],
                          client_max_size=settings.max_body_bytes)
    app.on_response_prepare.append(on_prepare_security_headers)

    async def on_startup(app: web.Application) -> None:
        url = settings.redis_url or os.environ.get("REDIS_URL", "")
        if not url:
            raise StartupError("orchestrator: no Redis: set REDIS_URL (or use `diemcau demo`)")
        try:
            redis = connect_redis(url)
            # in a cluster every key of this deployment is in one slot (see cluster_prefix); all
            # that reads the prefix (store, accounts, lease, pub/sub channels) reads it from here
            tagged = key_prefix_for(redis, settings.key_prefix)
            if tagged != settings.key_prefix:
                log.info("Redis Cluster: key prefix %r is used as %r (one hash slot per deployment)",
                         settings.key_prefix, tagged)
                settings.key_prefix = tagged
        except ValueError as exc:
            raise StartupError(f"orchestrator: {exc}") from None
        try:
            await redis.ping()
        except Exception as exc:
            raise StartupError(f"orchestrator: cannot reach Redis at {redacted(url)}: {exc}") from None
        store = Store(redis, settings.key_prefix, settings.events_maxlen)
        accounts = Accounts(redis, settings.key_prefix, settings.session_ttl_s, settings.login_attempts_per_min)
        if settings.operator_password:
            await accounts.set_user("admin", settings.operator_password, "admin")
        halls = {h.id: h for h in topology.halls}
        hub = ControlHub(settings, store, node_key, set(halls), redis)
        leadership = Leadership(redis, settings.key_prefix, settings.instance, settings.leader_lease_ms, store)
        planner = Planner(settings, store, signer, halls, profile, hub.deliver)
        hub.planner = _LeaderGate(planner, leadership)
        state = State(settings, redis, store, accounts, signer, topology, profile, hub, planner, leadership, halls,
                      programme=programme)
        if await store.seed_sessions(programme.sessions):
            log.info("programme: %d sessions seeded from the config", len(programme.sessions))
        app[STATE_KEY] = state
        state.gc_watch.install()
        api = Api(state)
        app["api"] = api
        # a closed control channel shows on the board as soon as the hall's next heartbeat is late:
        # one extra refresh then, however many channels close at once
        hub.on_disconnect = lambda node: api.refresh_board_soon((settings.hall_heartbeat_ms + 60) / 1000)
        state.tasks = [
            asyncio.create_task(_every(settings.flush_interval_ms, store.flush, "flush"), name="flush"),
            asyncio.create_task(_every(250, hub.watch_store, "store-watch"), name="store-watch"),
            asyncio.create_task(_leader_loop(state), name="leader"),
            asyncio.create_task(planner.loop_watch.run(), name="loop-watch"),
            asyncio.create_task(_every(settings.board_interval_ms, api.refresh_board_if_wanted, "board"), name="board"),
            asyncio.create_task(hub.listen(), name="command-listener"),
            asyncio.create_task(_every(1000, hub.enforce_revocations, "revocations"), name="revocations"),
            asyncio.create_task(_every(int(min(5.0, settings.ws_idle_close_s / 2) * 1000), hub.close_idle, "idle-channels"), name="idle-channels"),
            *([asyncio.create_task(freeze_long_lived(settings.gc_freeze_s, settings.gc_thaw_every), name="gc-freeze")]
              if settings.gc_freeze_s > 0 else []),
        ]

    async def on_shutdown(app: web.Application) -> None:
        state = app.get(STATE_KEY)
        if state is None:
            return
        app["api"].close_streams()
        await asyncio.gather(*(ws.close(code=1001, message=b"orchestrator shutting down")
                               for ws in list(state.hub.channels.values())), return_exceptions=True)

    async def on_cleanup(app: web.Application) -> None:
        state = app.get(STATE_KEY)
        if state is None:
            return
        state.gc_watch.uninstall()
        gc.unfreeze()  # what our freezes kept from the collector is its again
        for t in state.tasks:
            t.cancel()
        _, stuck = await asyncio.wait(state.tasks, timeout=5)
        for t in stuck:  # never hold up a shutdown; say which loop did not end
            log.error("task %s did not end within 5 s of cancellation: %s", t.get_name(), t.get_stack(limit=3))
        try:  # the last heartbeats, and the lease for the next instance at once: if Redis answers
            await asyncio.wait_for(state.store.flush(), 2)
            await state.leadership.release()
        except (asyncio.TimeoutError, OSError, RedisError) as exc:
            log.warning("shutting down without Redis (%s): the last heartbeats are not written, the lease "
                        "runs out by itself", exc or type(exc).__name__)
        await state.redis.aclose()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)

    # Routes need the Api object, created at startup: dispatch through a thin proxy.
    add_routes(app, _ApiProxy(app))
    app.router.add_get("/api/v1/control", lambda request: app[STATE_KEY].hub.handle(request))
    return app


class _ApiProxy:
    def __init__(self, app: web.Application) -> None:
        self._app = app

    def __getattr__(self, name: str):
        async def handler(request: web.Request):
            return await getattr(self._app["api"], name)(request)

        return handler


class _LeaderGate:
    """Planner calls from the control channel act only on the leader; others wait for its sweep."""

    def __init__(self, planner: Planner, leadership: Leadership) -> None:
        self.planner = planner
        self.leadership = leadership

    async def on_register(self, node: str, kind: str) -> None:
        if self.leadership.is_leader:
            try:
                await self.planner.on_register(node, kind)
            except StaleLeader as exc:
                self.leadership.demote(str(exc))

    async def on_media_lost(self, node: str, upstream: str, reason: str) -> None:
        if self.leadership.is_leader:
            try:
                await self.planner.on_media_lost(node, upstream, reason)
            except StaleLeader as exc:
                self.leadership.demote(str(exc))
        else:
            # the leader's next sweep acts on it (nodes spread over the instances: half of the
            # reports arrive at one that does not lead, and a report is the fastest news there is)
            await self.planner.store.report_lost(node, upstream, reason)
            await self.planner.store.event("media_lost", node, f"from {upstream}: {reason}")


@web.middleware
async def _redis_middleware(request: web.Request, handler):
    """Redis down: the API says so (503, retry shortly) instead of failing; media is unaffected."""
    try:
        return await handler(request)
    except (RedisError, ConnectionError) as exc:
        log.warning("%s %s: Redis unavailable: %s", request.method, request.path, exc)
        raise Problem(503, "the control plane's store (Redis) is unavailable; media is unaffected; retry shortly",
                      {"Retry-After": "2"}) from None


AUDITED_PER_MIN = 20  # authentication failures recorded per source address and minute; then one summary


@web.middleware
async def _audit_middleware(request: web.Request, handler):
    """Every refused credential (401/403) goes to the durable audit log: who, what, from where."""
    resp = await handler(request)
    if resp.status in (401, 403) and STATE_KEY in request.app:
        state = request.app[STATE_KEY]
        addr = request.remote or "?"
        minute = int(time.time() // 60)
        key = (addr, minute)
        n = state.auth_failures.get(key, 0) + 1
        if len(state.auth_failures) > 10_000:
            state.auth_failures.clear()
        state.auth_failures[key] = n
        if n <= AUDITED_PER_MIN or n == AUDITED_PER_MIN + 1:
            reason = getattr(resp, "text", "") or ""
            try:
                reason = json.loads(reason).get("error", "")
            except ValueError:
                pass
            detail = (f"{resp.status} {request.method} {request.path}: {reason}" if n <= AUDITED_PER_MIN
                      else f"more than {AUDITED_PER_MIN} failures this minute; the rest are not recorded")
            try:
                await state.store.event("auth_failure", addr, detail[:300], actor=_claimed_user(request))
            except Exception:  # Redis down: the refusal stands, the audit line is logged instead
                log.warning("auth failure from %s not recorded: %s", addr, detail)
    return resp


def _claimed_user(request: web.Request) -> str:
    if request.get("claimed_user"):
        return str(request["claimed_user"])[:40]
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer dcn1."):
        return auth[12:].split(".")[0][:40]  # the node id a node credential claims
    return "anonymous"


async def _every(interval_ms: int, fn, name: str) -> None:
    while True:
        try:
            await fn()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s loop failed; retrying", name)
        await asyncio.sleep(interval_ms / 1000)


async def _leader_loop(state: State) -> None:
    """Renew the lease on its own timer: a slow sweep must never cost the lease."""
    s = state.settings
    renew = asyncio.ensure_future(_every(max(s.leader_lease_ms // 3, 100), state.leadership.tick, "lease"))
    try:
        while True:
            try:
                if state.leadership.is_leader:
                    await state.planner.sweep()
            except StaleLeader as exc:
                state.leadership.demote(str(exc))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("leader loop failed; retrying")
            await asyncio.sleep(s.sweep_interval_ms / 1000)
    finally:
        renew.cancel()
