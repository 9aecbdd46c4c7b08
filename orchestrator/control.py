"""The WebSocket control channel: nodes register, send heartbeats, receive assignments.

Each node authenticates with its credential before the upgrade. Messages are
validated (type, size, rate); a node that sends junk gets an error message and,
if it persists, is disconnected. Commands for a node held by another
orchestrator instance travel over Redis pub/sub.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import time

import msgspec
from aiohttp import WSMsgType, web
from redis import exceptions as redis_errors

from diemcau import messages as m
from diemcau.http import Problem, unauthorized
from diemcau.tokens import TokenError, bearer, credential_generation, verify_node_credential
from diemcau.topology import NODE_ID

from .settings import OrchestratorSettings
from .store import Store

log = logging.getLogger(__name__)

MAX_BAD_MESSAGES = 5
CLOSE_STORE_LOST = m.CLOSE_STORE_LOST  # this instance lost Redis: the node goes to another one
RESUBSCRIBE_S = 0.5  # pause before the command subscription is made again after it broke
# A dead process closes its socket at once; what is left are half-open channels (the node's host
# or link went away silently). aiohttp's own WebSocket pings would find those, but they cost a
# timer reset on every message received (a fifth of the orchestrator's CPU at 20 000 heartbeats/s,
# measured): instead a channel silent for `ws_idle_close_s` is closed by a sweep. Node liveness
# is our own heartbeats, and the nodes ping us (their side of a half-open channel).


LAG_BUCKETS_MS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 1000, 2000, 5000)


class LagHistogram:
    """How late heartbeats are read (from the sender's `sent_ms`), in Prometheus buckets."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LAG_BUCKETS_MS) + 1)
        self.total = 0
        self.sum_ms = 0.0

    def observe(self, lag_ms: float) -> None:
        i = bisect.bisect_left(LAG_BUCKETS_MS, lag_ms)
        self.counts[i] += 1
        self.total += 1
        self.sum_ms += lag_ms

    def prometheus(self, name: str) -> list[str]:
        lines, running = [f"# TYPE {name} histogram"], 0
        for le, n in zip(LAG_BUCKETS_MS, self.counts):
            running += n
            lines.append(f'{name}_bucket{{le="{le}"}} {running}')
        lines += [f'{name}_bucket{{le="+Inf"}} {self.total}', f"{name}_sum {self.sum_ms:.1f}",
                  f"{name}_count {self.total}"]
        return lines


class ControlHub:
    def __init__(self, settings: OrchestratorSettings, store: Store, node_key: bytes, halls: set[str], redis) -> None:
        self.s = settings
        self.store = store
        self.node_key = node_key
        self.halls = halls
        self.redis = redis
        self.channels: dict[str, web.WebSocketResponse] = {}
        self.channel_generation: dict[str, int] = {}  # the credential generation each channel opened with
        self._cutting: set[int] = set()  # channels being closed for a revoked or replaced credential
        self._replans: set[asyncio.Task] = set()  # re-plans after nodes' MediaLost reports, running
        self.planner = None  # set by the app once built
        self.on_disconnect = None  # called with the node id when its channel closes
        self.heartbeats = 0
        self.heard: dict[str, float] = {}  # node -> when its channel last brought a message (monotonic)
        self.idle_closed = 0
        self.lag = LagHistogram()  # heartbeats that carry their send time
        self._qoe: dict[str, list[str]] = {}  # node -> QoE alarms it last reported (an event when they change)
        self.rejected_messages = 0
        self._listener: asyncio.Task | None = None
        self._feed_switch_seen: dict[str, float] = {}
        self._layers: dict[str, dict[str, str]] = {}  # relay -> hall -> the layer it last reported
        self.store_lost = False  # Redis has not answered for a while: channels closed and refused
        self.store_lost_count = 0
        self._store_ok = time.monotonic()
        self.peers: list[str] = []  # other instances seen serving lately
        self._alone_said = False

    # -- delivery ----------------------------------------------------------------------------

    async def deliver(self, node: str, msg: m.Msg) -> bool:
        ws = self.channels.get(node)
        if ws is not None and not ws.closed:
            try:
                await ws.send_bytes(m.encode(msg))
                return True
            except (ConnectionError, RuntimeError):
                return False
        holder = await self.store.holder(node)
        if holder and holder != self.s.instance:
            payload = json.dumps({"node": node, "msg": m.encode(msg).decode()})
            await self.redis.publish(f"{self.s.key_prefix}cmd:{holder}", payload)
            return True
        return False

    async def enforce_revocations(self) -> None:
        """Close the channels of nodes whose credential an operator revoked (on any instance)."""
        revoked, generations = await self.store.revoked(), await self.store.node_generations()
        for node in list(self.channels):
            if node in revoked:
                await self._cut(node, "credential revoked")
            elif generations.get(node, 0) != self.channel_generation.get(node, 0):
                await self._cut(node, "credential re-issued")

    async def close_idle(self) -> None:
        """Close channels that brought nothing for a while (half-open: the node is gone)."""
        limit = time.monotonic() - self.s.ws_idle_close_s
        idle = [(node, ws) for node, ws in self.channels.items() if self.heard.get(node, limit) < limit and not ws.closed]

        async def close(node: str, ws: web.WebSocketResponse) -> None:
            log.warning("closing %s's control channel: nothing from it for %.0f s", node, self.s.ws_idle_close_s)
            try:  # a half-open peer never answers the close: do not wait for it long
                await asyncio.wait_for(ws.close(code=4408, message=b"idle"), 5)
            except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                pass  # aiohttp has dropped the transport

        self.idle_closed += len(idle)
        # all at once: a region's halls cut together must not be closed one 5 s wait after another
        await asyncio.gather(*(close(node, ws) for node, ws in idle))

    async def watch_store(self) -> None:
        """Ping Redis; when it has not answered for store_lost_after_ms, this instance is cut off
        (a partition, not a crash: its process and channels live on). The nodes whose channels it
        holds are then invisible to the rest of the control plane (their heartbeats reach nobody),
        and the leader would judge them dead and re-plan them: so close their channels, and refuse
        new ones, until Redis answers again. Each node moves to the next instance in its list."""
        limit = self.s.store_lost_after_ms / 1000
        try:
            # who else serves (our mark, and theirs): a keyed round trip, so that on a Redis
            # Cluster it asks the master that holds our keys, not every node
            self.peers = await asyncio.wait_for(self.store.instances_alive(self.s.instance), min(limit / 2, 0.5))
            if self.store_lost:
                log.warning("%s reaches Redis again: accepting control channels", self.s.instance)
            self.store_lost = False
            self._store_ok = time.monotonic()
            return
        except (asyncio.TimeoutError, OSError, ConnectionError, redis_errors.RedisError):
            pass
        if self.store_lost or time.monotonic() - self._store_ok < limit:
            return
        if not self.peers:
            # nobody else to move to (one instance, or all cut at once): the channels stay, the
            # nodes keep their last plan, and this instance takes up again when Redis answers
            if not self._alone_said:
                log.warning("%s has not reached Redis for %.1f s, and no other instance was seen: keeping "
                            "its channels", self.s.instance, time.monotonic() - self._store_ok)
                self._alone_said = True
            return
        self._alone_said = False
        self.store_lost = True
        self.store_lost_count += 1
        channels = [(node, ws) for node, ws in self.channels.items() if not ws.closed]
        log.warning("%s has not reached Redis for %.1f s: closing its %d control channels (nodes move to "
                    "another instance) and refusing new ones until it does", self.s.instance,
                    time.monotonic() - self._store_ok, len(channels))

        async def close(ws: web.WebSocketResponse) -> None:
            try:
                await asyncio.wait_for(ws.close(code=CLOSE_STORE_LOST, message=b"orchestrator cut from its store"), 2)
            except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                pass

        await asyncio.gather(*(close(ws) for _, ws in channels))

    async def _cut(self, node: str, why: str) -> None:
        """Close a node's channel once (the API's call and the periodic check may meet here)."""
        ws = self.channels.get(node)
        if ws is None or ws.closed or id(ws) in self._cutting:
            return
        self._cutting.add(id(ws))
        try:
            log.warning("closing %s's control channel: %s", node, why)
            await ws.close(code=4403, message=why.encode())
        finally:
            self._cutting.discard(id(ws))

    async def listen(self) -> None:
        """Forward commands other instances publish for nodes connected here. A subscription that
        breaks (Redis restarted past the client's retries, a cluster master replaced by its
        replica) is made again: messages published meanwhile are lost, as pub/sub's always are."""
        channel = f"{self.s.key_prefix}cmd:{self.s.instance}"
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(channel)
                async for item in pubsub.listen():
                    if item.get("type") != "message":
                        continue
                    try:
                        data = json.loads(item["data"])
                        msg = m.decode(data["msg"])
                    except (ValueError, KeyError, msgspec.DecodeError, msgspec.ValidationError):
                        continue
                    ws = self.channels.get(data["node"])
                    if ws is not None and not ws.closed:
                        try:
                            await ws.send_bytes(m.encode(msg))
                        except (ConnectionError, RuntimeError):
                            pass  # the node's channel closed meanwhile: it re-registers elsewhere
            except (OSError, redis_errors.RedisError) as exc:
                log.warning("command subscription lost (%s); subscribing again", exc or type(exc).__name__)
            finally:
                try:
                    await asyncio.wait_for(pubsub.aclose(), 2)
                except (asyncio.TimeoutError, OSError, redis_errors.RedisError):
                    pass
            await asyncio.sleep(RESUBSCRIBE_S)

    # -- the channel -------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        if self.store_lost:
            raise Problem(503, "this orchestrator instance cannot reach Redis: use another", {"Retry-After": "1"})
        token = bearer(request.headers.get("Authorization"))
        if token is None:
            raise unauthorized("node credential required (Authorization: Bearer dcn1....)")
        try:
            node = verify_node_credential(self.node_key, token)
        except TokenError as exc:
            raise unauthorized(str(exc)) from None
        if not (node in self.halls or NODE_ID.fullmatch(node)):
            raise Problem(403, f"unknown node {node}")
        if await self.store.is_revoked(node):
            raise Problem(403, f"the credential of node {node} has been revoked")
        generation, current = credential_generation(token), await self.store.node_generation(node)
        if generation != current:
            raise Problem(403, f"this credential of node {node} (generation {generation}) was replaced by "
                               f"generation {current}")
        ws = web.WebSocketResponse(max_msg_size=self.s.ws_max_msg_bytes, heartbeat=None)
        await ws.prepare(request)
        try:
            hello = await self._expect_hello(ws, node)
        except asyncio.TimeoutError:
            await ws.close(code=4408, message=b"no hello")
            return ws
        if hello is None:
            return ws
        old = self.channels.get(node)
        if old is not None and not old.closed:
            await old.close(code=4409, message=b"replaced by a newer connection")
        self.channels[node] = ws
        self.heard[node] = time.monotonic()
        self.channel_generation[node] = generation
        info = {
            "kind": hello.kind, "region": hello.region, "role": hello.role, "url": hello.whep_url,
            "capacity": hello.capacity, "version": hello.version, "instance": self.s.instance,
            **({"province": hello.province} if hello.province else {}),
            "registered_at": time.time(),
        }
        if hello.kind == "hall":
            info["name"] = node
        await self.store.register(node, info, self.s.instance)
        await self.store.event("register", node, f"{hello.kind} {hello.role}".strip())
        hb_ms = self.s.hall_heartbeat_ms if hello.kind == "hall" else self.s.relay_heartbeat_ms
        await ws.send_bytes(m.encode(m.Welcome(node=node, heartbeat_ms=hb_ms)))
        if self.planner is not None:
            await self.planner.on_register(node, hello.kind)
        try:
            await self._serve(ws, node)
        finally:
            log.info("%s's control channel closed (code %s)", node, ws.close_code)
            if self.channels.get(node) is ws:
                del self.channels[node]
                self.heard.pop(node, None)
                try:
                    await self.store.disconnected(node, self.s.instance)
                    if self.on_disconnect is not None:
                        self.on_disconnect(node)
                    await self.store.event("disconnect", node)
                except (redis_errors.RedisError, OSError) as exc:
                    log.warning("cannot record %s's disconnect (Redis: %s)", node, exc)
        return ws

    async def _expect_hello(self, ws: web.WebSocketResponse, node: str) -> m.Hello | None:
        msg = await ws.receive(timeout=5.0)
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            await ws.close()
            return None
        try:
            hello = m.decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await self._reject(ws, 400, f"bad hello: {exc}", close=True)
            return None
        if not isinstance(hello, m.Hello):
            await self._reject(ws, 400, "the first message must be hello", close=True)
            return None
        if hello.node != node:
            await self._reject(ws, 403, f"credential is for {node}, hello says {hello.node}", close=True)
            return None
        if hello.kind == "hall" and node not in self.halls:
            await self._reject(ws, 404, f"hall {node} is not in the topology", close=True)
            return None
        if hello.kind == "relay" and hello.role not in ("origin", "regional", "provincial"):
            await self._reject(ws, 400, "a relay's role is 'origin', 'regional' or 'provincial'", close=True)
            return None
        if hello.kind not in ("hall", "relay"):
            await self._reject(ws, 400, "kind must be 'hall' or 'relay'", close=True)
            return None
        return hello

    async def _log_qoe(self, node: str, before: list[str], now: list[str]) -> None:
        raised = [a for a in now if a not in before]
        cleared = [a for a in before if a not in now]
        if raised:
            await self.store.event("qoe_alarm", node, f"programme {', '.join(raised)} on the hall's screen")
        if cleared:
            await self.store.event("qoe_clear", node, f"{', '.join(cleared)} cleared")

    async def _media_lost(self, node: str, msg: m.MediaLost) -> None:
        try:
            await self.planner.on_media_lost(node, msg.upstream, msg.reason)
        except (redis_errors.RedisError, OSError) as exc:
            # Redis away: the node has already switched by itself; the leader's sweep
            # re-plans from the nodes' reports when Redis is back.
            log.warning("cannot re-plan %s now (Redis: %s)", node, exc)
        except Exception:
            log.exception("re-planning %s after its report failed", node)

    async def _log_layers(self, node: str, layers: dict[str, list[str]]) -> None:
        """A hall's layer changed at this relay: one event with the reason (from, to, why)."""
        seen = self._layers.setdefault(node, {})
        for hall, (layer, reason, *_) in layers.items():
            before = seen.get(hall)
            seen[hall] = layer
            if ":" in hall or before == layer:
                continue  # a console or player page; or no change
            if before is not None or layer != "top":
                await self.store.event("layer", hall, f"{before or 'top'} -> {layer} at {node}: {reason}")

    async def _log_feed_switches(self, node: str, switches: list[list[str]]) -> None:
        last = self._feed_switch_seen.get(node, 0.0)
        for t, frm, to, reason in switches:
            if float(t) > last:
                await self.store.event("source_switch", node, f"{frm} -> {to}: {reason}")
                last = float(t)
        self._feed_switch_seen[node] = last

    async def _reject(self, ws: web.WebSocketResponse, code: int, reason: str, close: bool = False) -> None:
        self.rejected_messages += 1
        try:
            await ws.send_bytes(m.encode(m.ErrorMsg(code=code, reason=reason)))
            if close:
                await ws.close(code=4000 + code % 1000, message=reason[:120].encode())
        except (ConnectionError, RuntimeError):
            pass

    async def _serve(self, ws: web.WebSocketResponse, node: str) -> None:
        bad = 0
        window_start = time.monotonic()
        count = 0
        async for raw in ws:
            if raw.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            now = time.monotonic()
            self.heard[node] = now
            if now - window_start >= 1.0:
                window_start, count = now, 0
            count += 1
            if count > self.s.ws_msgs_per_s:
                await self._reject(ws, 429, f"more than {self.s.ws_msgs_per_s} messages per second")
                continue
            try:
                msg = m.decode(raw.data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                bad += 1
                await self._reject(ws, 400, f"bad message: {exc}", close=bad >= MAX_BAD_MESSAGES)
                continue
            if isinstance(msg, m.Heartbeat):
                self.heartbeats += 1
                if msg.sent_ms:
                    self.lag.observe(time.time() * 1000 - msg.sent_ms)
                stats = msg.hall if msg.hall is not None else msg.relay
                if msg.relay is not None and (msg.relay.layers or node in self._layers):
                    try:
                        await self._log_layers(node, msg.relay.layers)
                    except (redis_errors.RedisError, OSError) as exc:
                        log.warning("cannot log layer changes at %s (Redis: %s)", node, exc)
                if msg.relay is not None and msg.relay.feed_switches:
                    try:
                        await self._log_feed_switches(node, msg.relay.feed_switches)
                    except (redis_errors.RedisError, OSError) as exc:
                        log.warning("cannot log feed switches of %s (Redis: %s)", node, exc)
                self.store.heartbeat(node, msgspec.json.encode(stats).decode() if stats else "{}")
                if msg.hall is not None and msg.hall.qoe_alarms != self._qoe.get(node, []):
                    before, self._qoe[node] = self._qoe.get(node, []), list(msg.hall.qoe_alarms)
                    try:
                        await self._log_qoe(node, before, msg.hall.qoe_alarms)
                    except (redis_errors.RedisError, OSError) as exc:
                        log.warning("cannot log QoE of %s (Redis: %s)", node, exc)
            elif isinstance(msg, m.RaiseHand):
                if node not in self.halls:
                    await self._reject(ws, 403, "only a hall raises its hand")
                    continue
                try:
                    if await self.store.queue_floor(node, msg.up, node):
                        await self.store.event("floor_requested" if msg.up else "floor_request_withdrawn", node,
                                               "asks to speak (from the hall)" if msg.up else "withdrawn by the hall",
                                               actor=node)
                except (redis_errors.RedisError, OSError) as exc:
                    log.warning("cannot queue %s's raised hand (Redis: %s)", node, exc)
            elif isinstance(msg, m.MediaLost):
                if self.planner is not None:
                    if msg.stream and msg.stream != self.s.stream:
                        # a session's or the floor's stream not there yet: its path retries by
                        # itself; the node's assignment (all its streams' relays) stays
                        log.info("%s: %s from %s: %s", node, msg.stream, msg.upstream, msg.reason)
                    else:
                        # re-planned beside this channel, never in its way: the planner may wait for
                        # its lock (a sweep moving many halls), and the heartbeats that follow on this
                        # channel must not wait with it (a relay whose heartbeats sat unread behind its
                        # own report was judged dead, and its halls moved away from a healthy relay)
                        task = asyncio.ensure_future(self._media_lost(node, msg))
                        self._replans.add(task)
                        task.add_done_callback(self._replans.discard)
            else:
                bad += 1
                await self._reject(ws, 400, f"unexpected message {type(msg).__name__}", close=bad >= MAX_BAD_MESSAGES)
