"""Decisions: place halls on relays, give regional relays an upstream, re-plan when relays die.

Runs on the leader only. It reads the registry from Redis each sweep (so any
instance can take over) and sends assignments through the control hub.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from diemcau.messages import Assign, Floor, FloorPublish, Forward, LayerPolicy, Msg, Unassign
from diemcau.programme import resolve_halls
from diemcau.tokens import MediaTokenSigner
from diemcau.topology import Hall, Profile

from .placement import RelayView, choose_hall_relay, choose_upstream
from .settings import OrchestratorSettings
from .store import StaleLeader, Store, now_ms

log = logging.getLogger(__name__)

Deliver = Callable[[str, Msg], Awaitable[bool]]
MEDIA_LOST_MOVE_AFTER = 3  # a hall reporting loss this many times in a window is moved
MEDIA_LOST_WINDOW_S = 10.0
ASSIGN_RELOAD_S = 5.0  # the leader re-reads every assignment from Redis this often (its copy is current)
HOME_MOVES_PER_PASS = 20  # halls moved to their province's relay (once it is up) per full pass, at most
RECONCILE_EVERY_S = 2.0  # the sweep compares every hall's report with its record this often
RECONCILE_AFTER_MS = 3000  # a hall has had this long to act on an assignment before its reports overrule it
# a hall whose standby path has not come up this long (its report says connecting or failed, the
# relay itself alive: a link cut between the two, say) gets a standby elsewhere
STANDBY_UNREADY_S = 10.0  # (a relay that does not carry the stream yet answers 404 until it pulls it)
UNREACHABLE_KEPT_S = 60.0  # ... and that relay is not its standby again for this long


def serving_counts(stats: dict[str, dict], seen: dict[str, int], now: int, halls, hall_fresh_ms: int,
                   relay_fresh_ms: int) -> dict[str, int]:
    """relay id -> how many nodes report, in a fresh heartbeat, that media flows from it now."""
    out: dict[str, int] = {}
    for node, st in stats.items():
        if node in halls:
            src, ok, fresh = st.get("relay"), st.get("state") == "receiving", hall_fresh_ms
        else:
            src, ok, fresh = st.get("upstream"), st.get("upstream_state") == "receiving", relay_fresh_ms
        if src and ok and now - seen.get(node, 0) < fresh:
            out[src] = out.get(src, 0) + 1
    return out


UNHEARD_CHECK_S = 3.0
UNHEARD_AFTER_MS = 8000  # a hall with an assignment this old and still no relay did not hear it


class LoopWatch:
    """How long this process's own event loop stood still lately (CPU starvation, a collector
    pause). Heartbeats that arrived meanwhile wait unread, so every node looks silent for as long:
    judging relays dead across such a stall would re-plan a healthy deployment, and the re-plan
    would add load to a box already starved (the cascade the 70-hall runs showed)."""

    TICK_S = 0.1
    STALL_S = 0.25  # a tick this late is a stall

    def __init__(self) -> None:
        self.stalls: list[tuple[float, float]] = []  # (monotonic end, length s)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.TICK_S)
            now = loop.time()
            late = now - last - self.TICK_S
            last = now
            if late > self.STALL_S:
                self.stalls.append((time.monotonic(), late))
                del self.stalls[:-50]

    def stalled_within(self, window_s: float) -> float:
        """Seconds the loop stood still during the last `window_s`."""
        since = time.monotonic() - window_s
        return sum(length for end, length in self.stalls if end >= since)


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
        self.session_of: dict[str, tuple[str, str, str]] = {}  # hall -> (live session, its stream, title)
        self.live_streams: set[str] = set()  # live sessions' streams other than the default programme
        self.floor_state: tuple[str, str, str, int] | None = None  # (speaker, floor stream, its relay, given at ms)
        self.hitless: dict[str, bool] = {}  # operators' hitless setting per hall (Redis "hitless"), sent in Assign
        self.layers: dict[str, LayerPolicy] = {}  # operators' layer bounds per hall (Redis "layers"), sent in Assign
        self.dead: set[str] = set()
        self.loop_watch = LoopWatch()  # started with the orchestrator (app); idle in unit use
        self.deaths_deferred = 0  # relays that looked dead right after our own loop stalled
        self.resent_unheard = 0  # assignments sent again to halls that never acted on them
        self._unheard_checked = 0.0
        self._lost: dict[str, list[float]] = {}
        self._lock = asyncio.Lock()
        self.replans = 0
        self.sweep_s_last = self.sweep_s_max = 0.0  # how long a sweep takes (wall time, awaits included)
        self._reconciled = 0.0  # when the sweep last compared every hall's report with its record
        self._standby_unready: dict[str, tuple[str, float]] = {}  # hall -> (its standby, since when not up)
        self._unreachable: dict[str, dict[str, float]] = {}  # hall -> relays it could not reach lately -> until
        self._assign: dict[str, dict] | None = None  # the leader's copy of every assignment
        self._assign_fence, self._assign_loaded = -1, 0.0
        self._inbox: list[tuple[str, tuple, asyncio.Future]] = []  # registrations and reports, batched
        self._worker: asyncio.Task | None = None

    # -- views -----------------------------------------------------------------------------

    async def relay_views(self, cached: bool = False) -> tuple[list[RelayView], dict[str, dict]]:
        """Every relay as placement sees it, and every node's assignment: as the leader's planning
        keeps it (`cached`, the planner's own calls) or as Redis has it now (the API, any instance)."""
        # relays only (a few dozen), never a scan of every hall's entries: this runs for each batch
        # of registrations and reports and four times a second in the sweep
        nodes, assign, drained = await asyncio.gather(
            self.store.relay_nodes(), self._assignments() if cached else self.store.assignments(),
            self.store.drained())
        conn, seen = await self.store.liveness(sorted(nodes))
        serving: dict[str, int] | None = None  # relay -> halls that report receiving from it just now
        now = now_ms()
        # the time our own loop stood still lately counts for nobody's silence
        hb_limit = 5 * self.s.relay_heartbeat_ms  # connected but silent this long: hung
        stalled_ms = int(self.loop_watch.stalled_within(hb_limit / 1000 + 1.0) * 1000)
        load: dict[str, int] = {}
        standby: dict[str, int] = {}
        for a in assign.values():
            load[a["upstream"]] = load.get(a["upstream"], 0) + 1
            if a.get("backup"):
                standby[a["backup"]] = standby.get(a["backup"], 0) + 1
        views = []
        for node, info in nodes.items():
            if info.get("kind") != "relay":
                continue
            age = now - seen.get(node, 0)
            alive = (node in conn and age < hb_limit) or (node not in conn and age < self.s.relay_dead_after_ms)
            if not alive and stalled_ms and ((node in conn and age - stalled_ms < hb_limit)
                                              or (node not in conn and age - stalled_ms < self.s.relay_dead_after_ms)):
                alive = True  # silent only while we stood still ourselves
                self.deaths_deferred += 1
            cut = False
            if not alive:
                # silent to us: dead, or only cut from the control plane? Its halls know: if they
                # still report receiving from it, it serves; keep them where they are
                if serving is None:
                    serving = await self._serving(await self.store.last_seen(), now)
                if serving.get(node, 0) > 0:
                    alive, cut = True, True
            inv = self.inventory.get(node)
            views.append(
                RelayView(
                    id=node,
                    role=info.get("role", "regional"),
                    region=info.get("region", "north"),
                    url=info.get("url", ""),
                    capacity=int(info.get("capacity") or (inv.capacity if inv else 60)),
                    load=load.get(node, 0),
                    standby=standby.get(node, 0),
                    lat=inv.lat if inv else 0.0,
                    lon=inv.lon if inv else 0.0,
                    alive=alive,
                    drained=node in drained,
                    cut=cut,
                    connected=node in conn,
                    province=inv.province if inv else info.get("province", ""),
                )
            )
        return views, assign

    async def _assignments(self) -> dict[str, dict]:
        """Every node's assignment. Only the leader writes them (fenced) and plan() keeps this copy
        current, so it is read from Redis only every few seconds, or when our fence changed (we
        lead anew: another leader may have planned meanwhile). 10 000 of them are ~1.5 MB to parse."""
        now = time.monotonic()
        if (self._assign is None or self._assign_fence != self.store.fence
                or now - self._assign_loaded >= ASSIGN_RELOAD_S):
            self._assign = await self.store.assignments()
            self._assign_fence, self._assign_loaded = self.store.fence, now
        return self._assign

    # -- assignments -----------------------------------------------------------------------

    def _msg(self, node: str, primary: RelayView, backup: RelayView | None, epoch: int, move: bool = False,
             stream: str | None = None) -> Assign:
        session, hall_stream, title = self.session_of.get(node, ("", self.s.stream, ""))
        stream = stream or hall_stream
        ttl = self.s.media_token_ttl_s
        return Assign(
            session=session,
            session_title=title,
            stream=stream,
            upstream=primary.id,
            whep_url=f"{primary.url.rstrip('/')}/whep/{stream}",
            token=self.signer.mint(node, stream, "sub", ttl, aud=primary.id),
            epoch=epoch,
            backup=backup.id if backup else "",
            backup_whep_url=f"{backup.url.rstrip('/')}/whep/{stream}" if backup else "",
            backup_token=self.signer.mint(node, stream, "sub", ttl, aud=backup.id) if backup else "",
            move=move,
            hitless=self.hitless.get(node),
            layer=self.layers.get(node),
        )

    def _choose(self, node: str, views: list[RelayView], exclude: set[str], assign: dict | None = None,
                avoid_upstream: str = "") -> RelayView | None:
        if node in self.halls:
            hall = self.halls[node]
            assign = assign or {}
            upstream_of = {v.id: assign[v.id].get("upstream", "") for v in views if v.id in assign}
            return choose_hall_relay(hall.region, hall.lat, hall.lon, views, exclude, upstream_of, avoid_upstream,
                                     province=hall.province)
        me = next((v for v in views if v.id == node), None)
        if me is None:
            return None
        # the regional relays of one region pull from different origins where they can: a hall's
        # primary and standby relays are then not behind the same origin (one failure, not two)
        # (a provincial relay's siblings: the other relays of its province, behind other regional relays)
        siblings: dict[str, int] = {}
        for v in views:
            a = (assign or {}).get(v.id)
            if a and v.id != node and v.role == me.role and v.region == me.region and v.province == me.province:
                siblings[a.get("upstream", "")] = siblings.get(a.get("upstream", ""), 0) + 1
        return choose_upstream(me, views, exclude, siblings)

    async def plan(
        self, node: str, views: list[RelayView], assign: dict, reason: str,
        exclude: set[str] = frozenset(), primary_id: str | None = None, backup_id: str | None = None,
        move: bool = False,
    ) -> bool:
        """Give `node` a primary and a warm backup on another relay, and tell it."""
        if node not in self.halls:
            me = next((v for v in views if v.id == node), None)
            if me is None or me.role == "origin":
                return False
        by_id = {v.id: v for v in views}
        current = assign.get(node)
        if current and current.get("upstream") in by_id:
            by_id[current["upstream"]].load -= 1
        if current and current.get("backup") in by_id:
            by_id[current["backup"]].standby -= 1
        exclude = set(exclude)
        primary = by_id.get(primary_id) if primary_id else None
        if primary is not None and (not primary.alive or primary.id in exclude):
            primary = None
        if primary is None:
            primary = self._choose(node, views, exclude, assign)
        if primary is None:
            primary = self._choose(node, views, set())  # nothing else: retry what is there
        if primary is None:
            return False
        backup = by_id.get(backup_id) if backup_id else None
        if backup is not None and (not backup.alive or backup.id in exclude or backup.id == primary.id):
            backup = None
        if backup is None:
            # a standby behind another origin than the primary's, where there is one
            backup = self._choose(node, views, exclude | {primary.id}, assign,
                                  avoid_upstream=(assign.get(primary.id) or {}).get("upstream", ""))
        epoch = await self.store.set_assignment(node, self.s.stream, primary.id, backup.id if backup else "")
        primary.load += 1
        if backup is not None:
            backup.standby += 1
        assign[node] = {"stream": self.s.stream, "upstream": primary.id, "backup": backup.id if backup else "",
                        "epoch": epoch, "at": now_ms()}
        await self._deliver(node, primary, backup, epoch, move)
        log.info("plan %s: %s, standby %s (%s)", node, primary.id, backup.id if backup else "none", reason)
        await self.store.event("assign", node, f"{primary.id} (backup {backup.id if backup else 'none'}; {reason})")
        return True

    async def resend(self, node: str, assignment: dict, views: list[RelayView]) -> bool:
        """Re-send a node its current assignment with fresh tokens (it reconnected)."""
        by_id = {v.id: v for v in views if v.alive}
        primary = by_id.get(assignment["upstream"])
        if primary is None:
            return False
        backup = by_id.get(assignment.get("backup", ""))
        if backup is None and assignment.get("backup"):
            return False  # the backup died: re-plan instead
        return await self._deliver(node, primary, backup, int(assignment.get("epoch", 0)))

    async def _deliver(self, node: str, primary: RelayView, backup: RelayView | None, epoch: int,
                       move: bool = False) -> bool:
        """A node's assignment; a regional relay also gets one per other live session's stream, from the
        same two relays (its paths for every stream fail over together)."""
        ok = await self.deliver(node, self._msg(node, primary, backup, epoch, move))
        if node not in self.halls:
            for stream in sorted(self._relay_streams(node)):
                await self.deliver(node, self._msg(node, primary, backup, epoch, move, stream=stream))
        elif self.floor_state is not None and self._hears_floor(node):
            await self.deliver(node, self._floor_msg(node, primary))
        return ok

    def _relay_streams(self, node: str) -> set[str]:
        """What a regional relay pulls besides the default programme: live sessions' streams, and
        the floor (unless the floor is published at this very relay by its speaker's hall)."""
        streams = set(self.live_streams)
        if self.floor_state is not None and self.floor_state[2] != node:
            streams.add(self.floor_state[1])
        return streams

    # -- the floor -------------------------------------------------------------------------------

    def _hears_floor(self, hall: str) -> bool:
        speaker = self.floor_state[0] if self.floor_state else ""
        return bool(speaker) and hall != speaker and \
            self.session_of.get(hall, ("",))[0] == self.session_of.get(speaker, ("",))[0]

    def _floor_msg(self, hall: str, relay: RelayView) -> Floor:
        speaker, stream, _, at = self.floor_state
        return Floor(stream=stream, speaker=speaker, whep_url=f"{relay.url.rstrip('/')}/whep/{stream}",
                     token=self.signer.mint(hall, stream, "sub", self.s.media_token_ttl_s, aud=relay.id),
                     given_at=at / 1000)

    def _forward_up(self, relay_id: str, stream: str, views) -> Forward:
        """To the speaker's relay: publish the floor to every other live origin."""
        origins = [v for v in views if v.role == "origin" and v.alive and v.id != relay_id]
        ttl = self.s.media_token_ttl_s
        return Forward(stream=stream, whip_urls=[f"{o.url.rstrip('/')}/whip/{stream}" for o in origins],
                       tokens=[self.signer.mint(relay_id, stream, "pub", ttl, aud=o.id) for o in origins])

    def _speak(self, speaker: str, stream: str, relay: RelayView) -> FloorPublish:
        """To the hall given the floor: publish its camera to its own relay."""
        return FloorPublish(stream=stream, whip_url=f"{relay.url.rstrip('/')}/whip/{stream}",
                            token=self.signer.mint(speaker, stream, "pub", self.s.media_token_ttl_s, aud=relay.id))

    async def _hand_floor_over(self, old: tuple, want: tuple, by_id: dict, assign: dict) -> None:
        """The floor passes within a session: the stream stays, every path that carries it stays up;
        only the speaker (and, if it differs, the relay it publishes to) changes."""
        (old_speaker, stream, old_relay, _), (speaker, _, relay_id, _) = old, want
        self.floor_state = want
        await self.deliver(old_speaker, FloorPublish(stream=""))
        if relay_id != old_relay:
            await self.deliver(old_relay, Forward(stream=stream))
            await self.deliver(relay_id, Unassign(stream=stream))  # it stops pulling: the speaker publishes there
            await self.deliver(relay_id, self._forward_up(relay_id, stream, by_id.values()))
            a = assign.get(old_relay)
            if a is not None and a["upstream"] in by_id:  # a regional again: it pulls the floor like the rest
                await self.deliver(old_relay, self._msg(old_relay, by_id[a["upstream"]], by_id.get(a.get("backup", "")),
                                                        int(a.get("epoch", 0)), stream=stream))
        # the audience first: each hall re-anchors (waits for the new speaker's keyframe) before
        # that keyframe can reach it, rather than just after it and then wait for the next one
        for node, a in sorted(assign.items()):
            if node == speaker:
                await self.deliver(node, Floor(stream=""))  # it speaks now; it stops watching
            elif node in self.halls and self._hears_floor(node) and a["upstream"] in by_id:
                await self.deliver(node, self._floor_msg(node, by_id[a["upstream"]]))
        await self.deliver(speaker, self._speak(speaker, stream, by_id[relay_id]))
        log.info("floor: passed from %s to %s on %s (through %s)", old_speaker, speaker, stream, relay_id)

    async def _follow_floor(self, views: list[RelayView], assign: dict) -> None:
        """The floor travels: speaker's hall -> its relay -> the origins -> every regional relay ->
        the other halls of the speaker's session."""
        rec = await self.store.floor()
        want = None
        if rec and rec.get("hall") in assign:
            speaker = rec["hall"]
            session = self.session_of.get(speaker, ("",))[0]
            stream = "floor-" + (session.lower() if session else self.s.stream)
            want = (speaker, stream, assign[speaker]["upstream"], int(rec.get("at", 0)))
        if want == self.floor_state:
            return
        by_id = {v.id: v for v in views}
        old = self.floor_state
        if old is not None and want is not None and old[1] == want[1] and want[2] in by_id:
            await self._hand_floor_over(old, want, by_id, assign)
            return
        self.floor_state = None
        if old is not None:
            speaker, stream, relay_id, _ = old
            await self.deliver(speaker, FloorPublish(stream=""))
            await self.deliver(relay_id, Forward(stream=stream))
            for node in sorted(assign):
                if node in self.halls:
                    await self.deliver(node, Floor(stream=""))
                elif node != relay_id:
                    await self.deliver(node, Unassign(stream=stream))
            log.info("floor: %s no longer speaks", speaker)
        relay = by_id.get(want[2]) if want else None
        if want is None or relay is None:
            return
        self.floor_state = want
        speaker, stream, relay_id, _ = want
        # up the tree first, then down: each hop waits (briefly) for the one before
        await self.deliver(relay_id, self._forward_up(relay_id, stream, views))
        await self.deliver(speaker, self._speak(speaker, stream, relay))
        for node, a in sorted(assign.items()):
            if node in self.halls or node == relay_id:
                continue
            primary, backup = by_id.get(a["upstream"]), by_id.get(a.get("backup", ""))
            if primary is not None:
                await self.deliver(node, self._msg(node, primary, backup, int(a.get("epoch", 0)), stream=stream))
        for node, a in sorted(assign.items()):
            if node in self.halls and self._hears_floor(node) and a["upstream"] in by_id:
                await self.deliver(node, self._floor_msg(node, by_id[a["upstream"]]))
        log.info("floor: %s speaks on %s through %s", speaker, stream, relay_id)

    async def _follow_sessions(self, views: list[RelayView], assign: dict) -> None:
        """Halls follow their live session's stream; regional relays carry every live stream."""
        sessions = await self.store.sessions()
        live = sorted((s for s in sessions.values() if s.state == "live"), key=lambda s: s.started_at)
        session_of: dict[str, tuple[str, str, str]] = {}
        for s in live:
            try:
                ids = resolve_halls(s.halls, self.halls.values())
            except ValueError as exc:
                log.warning("session %s: %s", s.id, exc)
                continue
            for h in ids:
                session_of.setdefault(h, (s.id, s.stream, s.title))
        streams = {s.stream for s in live} - {self.s.stream}
        changed = {h for h in set(session_of) | set(self.session_of) if session_of.get(h) != self.session_of.get(h)}
        added, removed = streams - self.live_streams, self.live_streams - streams
        self.session_of, self.live_streams = session_of, streams
        if not (changed or added or removed):
            return
        log.info("sessions: %d halls change programme; streams added %s, removed %s", len(changed),
                 sorted(added), sorted(removed))
        # relays first: a hall's new stream must be at its relay when the hall asks for it
        for node, a in sorted(assign.items()):
            if node in self.halls:
                continue
            if added:
                await self.resend(node, a, views)
            for stream in sorted(removed):
                await self.deliver(node, Unassign(stream=stream))
        for node in sorted(changed):
            if node in assign:
                await self.resend(node, assign[node], views)

    # -- events from nodes -------------------------------------------------------------------

    # -- registrations and reports, batched ------------------------------------------------
    # Each needs the relays' view; 10 000 halls registering at once (or a relay's halls all
    # reporting its loss) would each read it under the planner's lock, one after another. They
    # queue instead, and one worker serves everything queued with one view, as the sweep does.

    async def on_register(self, node: str, kind: str) -> None:
        await self._queue(node, ("register", kind))

    async def on_media_lost(self, node: str, upstream: str, reason: str) -> None:
        now = time.monotonic()
        hist = [t for t in self._lost.get(node, []) if now - t < MEDIA_LOST_WINDOW_S] + [now]
        self._lost[node] = hist
        await self.store.event("media_lost", node, f"from {upstream}: {reason}")
        await self._queue(node, ("lost", upstream, reason))

    async def _queue(self, node: str, item: tuple) -> None:
        """Returns once the batch holding this item is planned (its errors raise here)."""
        done = asyncio.get_running_loop().create_future()
        self._inbox.append((node, item, done))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._drain())
        await asyncio.shield(done)

    async def _drain(self) -> None:
        while self._inbox:
            batch, self._inbox = self._inbox, []
            try:
                async with self._lock:
                    views, assign = await self.relay_views(cached=True)
                    for node, item, done in batch:
                        try:
                            if item[0] == "register":
                                await self._registered(node, item[1], views, assign)
                            else:
                                await self._lost_media(node, item[1], item[2], views, assign)
                        except StaleLeader:
                            raise
                        except Exception as exc:  # this node's plan failed; the rest go on
                            if not done.done():
                                done.set_exception(exc)
                        else:
                            if not done.done():
                                done.set_result(None)
                    if any(item[0] == "register" for _, item, _ in batch):
                        await self._resend_unheard(views, assign)
            except Exception as exc:  # the view could not be read, or we are no longer the leader
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            for _, _, done in batch:  # a caller that went away (its channel closed) reads no error:
                if done.done() and not done.cancelled():  # mark it read, so asyncio does not warn
                    done.exception()

    async def _registered(self, node: str, kind: str, views: list[RelayView], assign: dict) -> None:
        current = assign.get(node)
        if current and await self.resend(node, current, views):
            return
        if kind == "hall" and node in self.halls:
            await self.plan(node, views, assign, "registered",
                            primary_id=current.get("upstream") if current else None)
        elif kind == "relay":
            self.dead.discard(node)
            await self.plan(node, views, assign, "registered")
            await self._place_waiting(views, assign)

    async def _serving(self, seen: dict[str, int], now: int) -> dict[str, int]:
        """Nodes that report, in a fresh heartbeat, receiving from each relay (halls from their
        relay, relays from their upstream)."""
        return serving_counts(await self.store.stats(), seen, now, self.halls,
                              3 * self.s.hall_heartbeat_ms, 3 * self.s.relay_heartbeat_ms)

    async def _resend_unheard(self, views: list[RelayView], assign: dict) -> None:
        """A connected hall that has an assignment but reports no relay for a while never got it
        (it went to a channel that was being replaced, say): send it again. Idempotent at the hall;
        checked every few seconds."""
        now = time.monotonic()
        if now - self._unheard_checked < UNHEARD_CHECK_S:
            return
        self._unheard_checked = now
        stats, conn = await asyncio.gather(self.store.stats(), self.store.connected())
        at_ms = now_ms()
        for node, a in assign.items():
            st = stats.get(node)
            if (node in self.halls and node in conn and st is not None and not st.get("relay")
                    and st.get("state", "idle") in ("idle", "connecting")
                    and at_ms - int(a.get("at", at_ms)) > UNHEARD_AFTER_MS):
                if await self.resend(node, a, views):
                    self.resent_unheard += 1
                    log.warning("%s has had no relay for %.0f s since its assignment: sent it again",
                                node, (at_ms - int(a.get("at", at_ms))) / 1000)

    async def _lost_media(self, node: str, upstream: str, reason: str, views: list[RelayView], assign: dict) -> None:
        a = assign.get(node) or {}
        if upstream == a.get("upstream"):
            # The node has switched to its standby by itself (or has none): that is the primary now.
            # If the old primary's relay is still alive (a hiccup, a partition), the node keeps it
            # parked as its standby; otherwise a new standby elsewhere. A relay whose control channel
            # has closed too is most likely dead (its verdict waits for its silence to last): no
            # standby there, or its halls are planned twice, now and at the verdict.
            alive = any(v.id == upstream and v.alive and v.connected for v in views)
            if a.get("backup") and alive:
                await self.plan(node, views, assign, f"switched from {upstream}",
                                primary_id=a["backup"], backup_id=upstream)
            else:
                await self.plan(node, views, assign, f"lost {upstream}", exclude={upstream},
                                primary_id=a.get("backup") or None)
        elif upstream and upstream == a.get("backup"):
            await self.plan(node, views, assign, f"standby {upstream} lost", exclude={upstream},
                            primary_id=a.get("upstream"))
        else:
            await self.plan(node, views, assign, f"lost {upstream or 'path'}",
                            primary_id=a.get("upstream") or None)

    # -- the sweep ---------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Find dead relays and move everything that depended on them; place waiting nodes."""
        async with self._lock:
            started = time.perf_counter()
            try:
                await self._sweep()
            finally:
                took = time.perf_counter() - started
                self.sweep_s_last, self.sweep_s_max = took, max(self.sweep_s_max, took)

    async def _sweep(self) -> None:
        views, assign = await self.relay_views(cached=True)
        now_dead = {v.id for v in views if not v.alive}
        newly = now_dead - self.dead

        self.dead = now_dead
        if newly:
            conn, seen = await self.store.liveness(sorted(newly))
        for relay_id in sorted(newly):
            why = (f"control channel {'open' if relay_id in conn else 'closed'}, last heartbeat "
                   f"{now_ms() - seen.get(relay_id, 0)} ms ago, our loop stalled "
                   f"{self.loop_watch.stalled_within(10) * 1000:.0f} ms in 10 s")
            log.warning("relay %s is dead (%s): re-planning its dependants", relay_id, why)
            await self.store.event("relay_dead", relay_id, why)
        if newly:
            self.replans += 1
            for node, a in list(assign.items()):
                if a["upstream"] in newly:
                    # its standby is (or becomes) the primary; a new standby elsewhere
                    backup = a.get("backup") if a.get("backup") not in newly else None
                    await self.plan(node, views, assign, f"{a['upstream']} died", newly, primary_id=backup)
                elif a.get("backup") in newly:
                    await self.plan(node, views, assign, f"standby {a['backup']} died", newly,
                                    primary_id=a["upstream"])
        for node, upstream, reason in await self.store.take_lost():  # reports another instance kept for us
            await self._lost_media(node, upstream, reason, views, assign)
        await self._place_waiting(views, assign)

    async def _operator_intents(self, views: list[RelayView], assign: dict) -> None:
        """Carry out what operators asked for (through any orchestrator instance): moves, drains."""
        by_id = {v.id: v for v in views}
        await self._follow_sessions(views, assign)
        await self._follow_floor(views, assign)
        modes = {h: bool(v.get("on")) for h, v in (await self.store.hitless()).items() if h in self.halls}
        changed = [h for h, on in modes.items() if self.hitless.get(h) != on]
        self.hitless = modes
        for node in changed:
            if node in assign and await self.resend(node, assign[node], views):
                await self.store.event("hitless", node, "on" if modes[node] else "off")
        layers = {h: LayerPolicy(v.get("floor", ""), v.get("ceiling", ""), bool(v.get("audio_only")))
                  for h, v in (await self.store.layer_policies()).items() if h in self.halls}
        changed = [h for h, lp in layers.items() if self.layers.get(h) != lp]
        self.layers = layers
        for node in changed:
            if node in assign:
                await self.resend(node, assign[node], views)
        for node, mv in sorted((await self.store.moves()).items()):
            await self.store.move_done(node)
            target = by_id.get(mv["relay"])
            if target is None or not target.placeable:
                await self.store.event("move_failed", node, f"to {mv['relay']}: relay is not available", actor=mv["by"])
                continue
            if (assign.get(node) or {}).get("upstream") == target.id:
                continue
            if await self.plan(node, views, assign, f"moved by {mv['by']}", primary_id=target.id, move=True):
                await self.store.event("moved", node, f"to {target.id}", actor=mv["by"])
        drained = {v.id for v in views if v.drained}
        if not drained:
            return
        role = {v.id: v.role for v in views}
        for node, a in list(assign.items()):
            if a["upstream"] in drained:
                # make-before-break: the node's standby becomes its primary, unless it is drained
                # too or is an origin a hall would only leave again; then the best relay, which
                # the hall brings up warm on its standby path before it switches
                backup = a.get("backup") if a.get("backup") not in drained else None
                if node in self.halls and role.get(backup) == "origin":
                    backup = None
                await self.plan(node, views, assign, f"{a['upstream']} drained", drained, primary_id=backup, move=True)
            elif a.get("backup") in drained:
                await self.plan(node, views, assign, f"standby {a['backup']} drained", drained,
                                primary_id=a["upstream"])

    async def _spread_origins(self, views: list[RelayView], assign: dict) -> None:
        """Two regional relays of one region behind one origin fail together when it dies, and so
        do both paths of their halls: while another origin is free in that region, move one of them
        onto it (its warm standby there: make-before-break). One move per sweep."""
        origins = {v.id for v in views if v.role == "origin" and v.placeable}
        if len(origins) < 2:
            return
        regionals = [v for v in views if v.role == "regional" and v.alive and v.id in assign]
        for region in sorted({v.region for v in regionals}):
            used: dict[str, list[str]] = {}
            for v in sorted(regionals, key=lambda v: v.id):
                if v.region == region:
                    used.setdefault(assign[v.id]["upstream"], []).append(v.id)
            free = origins - set(used)
            for origin_id, rids in sorted(used.items()):
                if len(rids) < 2 or not free:
                    continue
                rid = rids[-1]
                a = assign[rid]
                if a.get("backup") not in free or now_ms() - int(a.get("at", 0)) < RECONCILE_AFTER_MS:
                    continue
                await self.plan(rid, views, assign, f"spread over origins ({origin_id} carried {', '.join(rids)})",
                                primary_id=a["backup"], backup_id=origin_id, move=True)
                return

    def _standby_stuck(self, node: str, a: dict, st: dict, now: float) -> bool:
        """True once the hall has reported its assigned standby not up for STANDBY_UNREADY_S."""
        backup = a.get("backup")
        if not backup or st.get("backup") != backup or st.get("backup_state") in ("standby", "receiving", None, ""):
            self._standby_unready.pop(node, None)
            return False
        seen = self._standby_unready.get(node)
        if seen is None or seen[0] != backup:
            self._standby_unready[node] = (backup, now)
            return False
        return now - seen[1] >= STANDBY_UNREADY_S and now_ms() - int(a.get("at", 0)) > STANDBY_UNREADY_S * 1000

    async def _place_waiting(self, views: list[RelayView], assign: dict) -> None:
        """Connected nodes without a live primary, or without a live standby that could have one."""
        await self._operator_intents(views, assign)
        await self._spread_origins(views, assign)
        alive = {v.id for v in views if v.alive}
        role = {v.id: v.role for v in views}
        # Every connected node is looked at every few seconds; in between, the nodes registered
        # since the last sweep (on any instance) and the relays (a few dozen): at 10 000 halls a
        # full pass each sweep is most of the leader's CPU. What halls report matters only where
        # their record may lag what they do (they switched to their standby by themselves; they
        # sit on an origin): only those reports are read.
        now = time.monotonic()
        # (up to a national deployment's size the full pass is cheap: every sweep, as before)
        reconcile = len(self.halls) <= 1000 or now - self._reconciled >= RECONCILE_EVERY_S
        fresh = await self.store.take_registered()
        if reconcile:
            self._reconciled = now
            conn = await self.store.connected()
        else:
            held, _ = await self.store.liveness(sorted(set(fresh) | {v.id for v in views}))
            conn = held
        wanted = [n for n in conn if (a := assign.get(n)) and a.get("backup")
                  and ((n in self.halls and (reconcile or role.get(a["upstream"]) == "origin"))
                       or (role.get(n) == "provincial" and role.get(a["upstream"]) == "origin"))]
        stats = await self.store.paths_of(wanted)
        provincial = {v.province for v in views if v.role == "provincial" and v.placeable and v.load < v.capacity}
        home_moves = 0
        for node in sorted(conn):
            if not (node in self.halls or role.get(node) in ("regional", "provincial")):
                continue
            a = assign.get(node)
            st = stats.get(node, {})
            if not a or a["upstream"] not in alive:
                await self.plan(node, views, assign, "waiting")
            elif (node in self.halls and a.get("backup") and st.get("relay") == a["backup"]
                  and st.get("state") == "receiving" and a["backup"] in alive
                  and now_ms() - int(a.get("at", 0)) > RECONCILE_AFTER_MS):
                # the hall switched to its standby by itself and its report of it was lost or
                # came first: make the record match what it does (the old primary stays its standby)
                await self.plan(node, views, assign, "runs on its standby", primary_id=a["backup"],
                                backup_id=a["upstream"])
            elif a.get("backup") and a["backup"] not in alive:
                await self.plan(node, views, assign, "standby missing", primary_id=a["upstream"])
            elif not a.get("backup") and self._choose(node, views, {a["upstream"]}) is not None:
                await self.plan(node, views, assign, "adding a standby", primary_id=a["upstream"])
            elif (node in self.halls and role.get(a["upstream"]) == "origin" and role.get(a.get("backup")) == "regional"
                  and st.get("backup") == a["backup"] and st.get("backup_state") == "standby"):
                # placed on an origin while no regional relay was up: move over, make-before-break
                await self.plan(node, views, assign, "to a regional relay", primary_id=a["backup"],
                                backup_id=a["upstream"], move=True)
            elif (role.get(node) == "provincial" and role.get(a["upstream"]) == "origin"
                  and (best := self._choose(node, views, set(), assign)) is not None and best.role == "regional"
                  and now_ms() - int(a.get("at", 0)) > RECONCILE_AFTER_MS):
                # a provincial relay that came up before its region's relays pulls from an origin:
                # over to a regional relay, lossless as for halls: as its standby first, then moved
                if a.get("backup") != best.id:
                    await self.plan(node, views, assign, "a regional relay as its standby first",
                                    primary_id=a["upstream"], backup_id=best.id)
                elif st.get("upstream_backup") == best.id and st.get("upstream_backup_state") == "standby":
                    await self.plan(node, views, assign, "to a regional relay", primary_id=best.id,
                                    backup_id=a["upstream"], move=True)
            elif reconcile and node in self.halls and self._standby_stuck(node, a, st, now):
                # its standby relay is alive but the hall cannot reach it (a cut link between them):
                # a standby it can reach, elsewhere; the primary stays
                self._standby_unready.pop(node, None)
                mine = self._unreachable.setdefault(node, {})
                mine[a["backup"]] = now + UNREACHABLE_KEPT_S
                for relay, until in list(mine.items()):
                    if until < now:
                        del mine[relay]
                await self.plan(node, views, assign, f"standby {a['backup']} unreachable from the hall",
                                set(mine), primary_id=a["upstream"])
            elif (reconcile and node in self.halls and a.get("backup")
                  and a["backup"] == (assign.get(a["upstream"]) or {}).get("upstream")
                  and (alt := self._choose(node, views, {a["upstream"]}, assign, avoid_upstream=a["backup"]))
                  is not None and alt.id != a["backup"]):
                # its standby is its primary's own upstream (that relay moved behind it since): one
                # failure would take both paths; a standby elsewhere
                await self.plan(node, views, assign, "standby out of its primary's path", primary_id=a["upstream"],
                                backup_id=alt.id)
            elif (reconcile and home_moves < HOME_MOVES_PER_PASS and node in self.halls
                  and role.get(a["upstream"]) != "provincial" and self.halls[node].province in provincial
                  and now_ms() - int(a.get("at", 0)) > RECONCILE_AFTER_MS):
                # placed elsewhere while its province's relay was not up (yet): home, a few halls per
                # pass, in two steps so that no frame is lost: the province's relay becomes its standby,
                # and once the hall reports that path warm, the plan moves it over (make-before-break);
                # its new standby stays out of the new primary's path
                home = self._choose(node, views, set(), assign)
                if home is not None and home.role == "provincial" and home.province == self.halls[node].province:
                    home_moves += 1
                    if a.get("backup") != home.id:
                        await self.plan(node, views, assign, f"{home.province}'s relay as its standby first",
                                        primary_id=a["upstream"], backup_id=home.id)
                    elif st.get("backup") == home.id and st.get("backup_state") == "standby":
                        keep = a["upstream"] if (assign.get(home.id) or {}).get("upstream") != a["upstream"] else None
                        await self.plan(node, views, assign, f"to {home.province}'s relay", primary_id=home.id,
                                        backup_id=keep, move=True)
