"""Decisions: place halls on relays, give regional relays an upstream, re-plan when relays die.

Runs on the leader only. It reads the registry from Redis each sweep (so any
instance can take over) and sends assignments through the control hub.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from diemcau.messages import Assign, Msg
from diemcau.tokens import MediaTokenSigner
from diemcau.topology import Hall, Profile

from .placement import RelayView, choose_hall_relay, choose_upstream
from .settings import OrchestratorSettings
from .store import Store, now_ms

log = logging.getLogger(__name__)

Deliver = Callable[[str, Msg], Awaitable[bool]]
MEDIA_LOST_MOVE_AFTER = 3  # a hall reporting loss this many times in a window is moved
MEDIA_LOST_WINDOW_S = 10.0


class Planner:
    def __init__(
        self,
        settings: OrchestratorSettings,
        store: Store,
        signer: MediaTokenSigner,
        halls: dict[str, Hall],
        profile: Profile,
        deliver: Deliver,
    ) -> None:
        self.s = settings
        self.store = store
        self.signer = signer
        self.halls = halls
        self.inventory = {r.id: r for r in profile.relays}
        self.deliver = deliver
        self.dead: set[str] = set()
        self._lost: dict[str, list[float]] = {}
        self._lock = asyncio.Lock()
        self.replans = 0

    # -- views -----------------------------------------------------------------------------

    async def relay_views(self) -> tuple[list[RelayView], dict[str, dict]]:
        nodes, conn, seen, assign = await asyncio.gather(
            self.store.nodes(), self.store.connected(), self.store.last_seen(), self.store.assignments()
        )
        now = now_ms()
        load: dict[str, int] = {}
        for a in assign.values():
            load[a["upstream"]] = load.get(a["upstream"], 0) + 1
        views = []
        for node, info in nodes.items():
            if info.get("kind") != "relay":
                continue
            age = now - seen.get(node, 0)
            hb_limit = 3 * self.s.relay_heartbeat_ms
            alive = (node in conn and age < hb_limit) or (node not in conn and age < self.s.relay_dead_after_ms)
            inv = self.inventory.get(node)
            views.append(
                RelayView(
                    id=node,
                    role=info.get("role", "regional"),
                    region=info.get("region", "north"),
                    url=info.get("url", ""),
                    capacity=int(info.get("capacity") or (inv.capacity if inv else 60)),
                    load=load.get(node, 0),
                    lat=inv.lat if inv else 0.0,
                    lon=inv.lon if inv else 0.0,
                    alive=alive,
                )
            )
        return views, assign

    # -- assignments -----------------------------------------------------------------------

    async def _assign(self, node: str, relay: RelayView, reason: str) -> None:
        epoch = await self.store.set_assignment(node, self.s.stream, relay.id)
        token = self.signer.mint(node, self.s.stream, "sub", self.s.media_token_ttl_s, aud=relay.id)
        msg = Assign(
            stream=self.s.stream,
            upstream=relay.id,
            whep_url=f"{relay.url.rstrip('/')}/whep/{self.s.stream}",
            token=token,
            epoch=epoch,
        )
        relay.load += 1
        await self.deliver(node, msg)
        await self.store.event("assign", node, f"{relay.id} ({reason})")

    async def place_hall(self, hall_id: str, views: list[RelayView], assign: dict, exclude: set[str] = frozenset(), reason: str = "placement") -> bool:
        hall = self.halls[hall_id]
        current = assign.get(hall_id)
        if current:
            for v in views:
                if v.id == current["upstream"]:
                    v.load -= 1
        relay = choose_hall_relay(hall.region, hall.lat, hall.lon, views, set(exclude))
        if relay is None:
            return False
        await self._assign(hall_id, relay, reason)
        assign[hall_id] = {"upstream": relay.id}
        return True

    async def place_relay(self, relay_id: str, views: list[RelayView], assign: dict, exclude: set[str] = frozenset(), reason: str = "placement") -> bool:
        me = next((v for v in views if v.id == relay_id), None)
        if me is None or me.role == "origin":
            return False
        current = assign.get(relay_id)
        if current:
            for v in views:
                if v.id == current["upstream"]:
                    v.load -= 1
        up = choose_upstream(me, views, set(exclude))
        if up is None:
            return False
        await self._assign(relay_id, up, reason)
        assign[relay_id] = {"upstream": up.id}
        return True

    async def resend(self, node: str, assignment: dict, views: list[RelayView]) -> bool:
        """Re-send a node its current assignment with a fresh token (it reconnected)."""
        relay = next((v for v in views if v.id == assignment["upstream"] and v.alive), None)
        if relay is None:
            return False
        token = self.signer.mint(node, assignment["stream"], "sub", self.s.media_token_ttl_s, aud=relay.id)
        return await self.deliver(
            node,
            Assign(
                stream=assignment["stream"],
                upstream=relay.id,
                whep_url=f"{relay.url.rstrip('/')}/whep/{assignment['stream']}",
                token=token,
                epoch=int(assignment.get("epoch", 0)),
            ),
        )

    # -- events from nodes -------------------------------------------------------------------

    async def on_register(self, node: str, kind: str) -> None:
        async with self._lock:
            views, assign = await self.relay_views()
            current = assign.get(node)
            if current and await self.resend(node, current, views):
                return
            if kind == "hall" and node in self.halls:
                await self.place_hall(node, views, assign)
            elif kind == "relay":
                self.dead.discard(node)
                await self.place_relay(node, views, assign)
                await self._place_waiting(views, assign)

    async def on_media_lost(self, node: str, upstream: str, reason: str) -> None:
        now = time.monotonic()
        hist = [t for t in self._lost.get(node, []) if now - t < MEDIA_LOST_WINDOW_S] + [now]
        self._lost[node] = hist
        await self.store.event("media_lost", node, f"from {upstream}: {reason}")
        async with self._lock:
            views, assign = await self.relay_views()
            current = assign.get(node)
            move = len(hist) >= MEDIA_LOST_MOVE_AFTER or not any(v.id == upstream and v.alive for v in views)
            if current and not move and await self.resend(node, current, views):
                return
            self._lost[node] = []
            exclude = {upstream} if move else set()
            if node in self.halls:
                if not await self.place_hall(node, views, assign, exclude, reason="media lost"):
                    await self.place_hall(node, views, assign, reason="media lost")
            else:
                await self.place_relay(node, views, assign, exclude, reason="media lost")

    # -- the sweep ---------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Find dead relays and move everything that depended on them; place waiting nodes."""
        async with self._lock:
            views, assign = await self.relay_views()
            now_dead = {v.id for v in views if not v.alive}
            newly = now_dead - self.dead
            self.dead = now_dead
            for relay_id in sorted(newly):
                log.warning("relay %s is dead: re-planning its dependants", relay_id)
                await self.store.event("relay_dead", relay_id, "control channel lost and heartbeats missed")
            if newly:
                self.replans += 1
                for node, a in list(assign.items()):
                    if a["upstream"] in newly:
                        if node in self.halls:
                            await self.place_hall(node, views, assign, newly, reason=f"{a['upstream']} died")
                        else:
                            await self.place_relay(node, views, assign, newly, reason=f"{a['upstream']} died")
            await self._place_waiting(views, assign)

    async def _place_waiting(self, views: list[RelayView], assign: dict) -> None:
        """Connected nodes with no live assignment (e.g. halls that came before any relay)."""
        conn = await self.store.connected()
        nodes = await self.store.nodes()
        alive = {v.id for v in views if v.alive}
        for node in sorted(conn):
            a = assign.get(node)
            if a and a["upstream"] in alive:
                continue
            kind = nodes.get(node, {}).get("kind")
            if kind == "hall" and node in self.halls:
                await self.place_hall(node, views, assign, reason="waiting")
            elif kind == "relay" and nodes[node].get("role") == "regional":
                await self.place_relay(node, views, assign, reason="waiting")
