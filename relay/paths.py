"""A primary path and a warm standby path to the same stream, with a local switch on stall.

Halls and regional relays keep two WHEP subscriptions: the primary carries the
media, the standby is connected (ICE and DTLS done) with media parked at its
relay. When the primary has delivered nothing for `switch_after_s`, the standby
is woken (one HTTP call plus a keyframe request) without waiting for the
control plane, which is told afterwards and assigns a new standby.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Awaitable, Callable

from diemcau.messages import Assign

from .client import SignallingError
from .follow import Follower
from .merge import HitlessMerge

log = logging.getLogger(__name__)

# (kind, codec) -> (on_packet, on_sr) for the path that just became active
OpenSink = Callable[[str, object], tuple[Callable, Callable | None]]
OnLost = Callable[[str, str], Awaitable[None]]
OnSwitch = Callable[[str, str, float], None]  # (from upstream, to upstream, stalled seconds)

WATCH_INTERVAL_S = 0.02
MAX_TICK_LAG_S = 0.03
# After a switch of its own, a path's silence must last longer before the next one: twice the
# threshold per switch in the last SWITCH_WINDOW_S, up to MAX_HOLDOFF_FACTOR times. One relay's
# death costs the first threshold only; but when both paths go silent together (this machine
# starved of CPU, the programme itself stalled upstream) switching does not help, and each switch
# costs a keyframe request and a burst: flapping every 300 ms fed the starvation that caused it
# (70 halls on two cores, ci-local: 50-60 switches per hall in a minute).
SWITCH_WINDOW_S = 10.0
MAX_HOLDOFF_FACTOR = 16.0
STANDBY_JITTER_S = (0.5, 5.0)  # a new standby after a failure connects after a random delay in this range  # after a switch, only a longer silence (stall_s) switches again: no flapping  # a watchdog tick later than this: the process was starved, judge nothing
COLD_MOVE_TIMEOUT_S = 10.0  # a move waits this long for the target to be up warm on the standby path


class DualPath:
    def __init__(
        self,
        open_sink: OpenSink,
        on_lost: OnLost,
        ice_servers: list[str] | None = None,
        switch_after_s: float = 0.15,
        stall_s: float = 1.0,
        connect_timeout_s: float = 10.0,
        on_switch: OnSwitch | None = None,
        on_active: Callable[[Follower], None] | None = None,
        hitless: bool = False,
    ) -> None:
        self.open_sink = open_sink
        self.on_lost = on_lost
        self.on_switch = on_switch
        self.on_active = on_active
        self.switch_after_s = switch_after_s
        self.ice_servers = ice_servers or []
        self.stall_s = stall_s
        self.connect_timeout_s = connect_timeout_s
        self.active = self._follower(standby=False, name="a")
        self.backup = self._follower(standby=True, name="b")
        self.switches = 0
        self.last_switch_ms = 0.0
        self._sinks: dict[int, dict[str, tuple]] = {}  # id(follower) -> kind -> (on_packet, on_sr)
        self._codecs: dict[int, dict[str, object]] = {}
        self._tasks: list[asyncio.Task] = []
        self._switching = False
        self._own_switches: collections.deque[float] = collections.deque(maxlen=8)  # when it switched by itself
        # hitless: both paths carry the media and are merged packet by packet (relay/merge.py)
        self.hitless = hitless
        self._merges: dict[str, HitlessMerge] = {}
        # an operator's bounds on this hall's layer, told to each relay the paths connect to
        self.layer_policy: dict = {}

    # -- wiring ------------------------------------------------------------------------------

    def _follower(self, standby: bool, name: str) -> Follower:
        holder: dict = {}

        def sinks(kind, codec):
            f = holder["f"]
            self._codecs.setdefault(id(f), {})[kind] = codec
            if self.hitless:
                if kind in self._merges:
                    self._merges[kind].forget(f)  # a new subscription: its numbering is new
            elif f is self.active:
                self._sinks.setdefault(id(f), {})[kind] = self.open_sink(kind, codec)

            def on_packet(packet, _f=f, _kind=kind, _codec=codec):
                _f.mark_packet()
                if self.hitless:
                    self._merge(_kind, _codec).push(_f, packet)
                elif _f is self.active:
                    sink = self._sinks.get(id(_f), {}).get(_kind)
                    if sink is not None:
                        sink[0](packet)

            def on_sr(ntp, rtp_ts, _f=f, _kind=kind):
                _f.mark_rtcp()
                if self.hitless:
                    merge = self._merges.get(_kind)
                    if merge is not None:
                        merge.sender_report(_f, ntp, rtp_ts)
                elif _f is self.active:
                    sink = self._sinks.get(id(_f), {}).get(_kind)
                    if sink is not None and sink[1] is not None:
                        sink[1](ntp, rtp_ts)

            return on_packet, on_sr

        def on_connected(sub) -> None:
            if holder["f"] is self.active and self.on_active is not None:
                self.on_active(holder["f"])
            if self.layer_policy or self.hitless:
                asyncio.ensure_future(self._apply_layer_policy(holder["f"]))
            if self.hitless and holder["f"].standby:
                asyncio.ensure_future(holder["f"].activate())  # both paths carry the media

        async def on_lost(upstream: str, reason: str) -> None:
            f = holder["f"]
            if f is self.active and self.backup.ready and not self._switching:
                await self.switch(f"{reason}")
                return
            await self.on_lost(upstream, reason)

        f = Follower(sinks, on_lost, self.ice_servers, self.stall_s, self.connect_timeout_s,
                     on_connected, standby=standby, name=name)
        holder["f"] = f
        return f

    def _merge(self, kind: str, codec) -> HitlessMerge:
        merge = self._merges.get(kind)
        if merge is None:
            on_packet, on_sr = self.open_sink(kind, codec)
            merge = self._merges[kind] = HitlessMerge(on_packet, on_sr, codec.clockRate)
        return merge

    def set_hitless(self, on: bool) -> None:
        """Carry the media on both paths and merge them (on), or keep the standby parked (off)."""
        if on == self.hitless:
            return
        self.hitless = on
        self._merges = {}
        if on:
            if self.backup.sub is not None and self.backup.standby:
                asyncio.ensure_future(self.backup.activate())
        else:
            a = self.active
            self._sinks[id(a)] = {k: self.open_sink(k, c) for k, c in self._codecs.get(id(a), {}).items()}
            asyncio.ensure_future(self.backup.park())
        log.info("hitless mode %s", "on" if on else "off")
        for f in (self.active, self.backup):
            asyncio.ensure_future(self._apply_layer_policy(f))

    def set_layer_policy(self, policy: dict) -> None:
        """The operator's floor/ceiling/audio-only for this hall: told to both paths' relays now
        and to every relay they connect to later."""
        if policy == self.layer_policy:
            return
        self.layer_policy = dict(policy)
        for f in (self.active, self.backup):
            asyncio.ensure_future(self._apply_layer_policy(f))

    async def _apply_layer_policy(self, f: Follower) -> None:
        sub, http = f.sub, f._http
        if sub is None or http is None:
            return
        # hitless: both paths must carry the same frames, so neither relay adapts the layer
        body = {**self.layer_policy, "adapt": not self.hitless}
        try:
            await sub.set_layer(http, body)
        except SignallingError as exc:
            if exc.status != 409:  # 409: that relay has no ladder
                log.warning("layer policy to %s: %s", f.upstream, exc)

    def merge_stats(self) -> dict:
        return {kind: m.stats() for kind, m in self._merges.items()}

    def start(self) -> None:
        self._tasks = [
            asyncio.ensure_future(self.active.run()),
            asyncio.ensure_future(self.backup.run()),
            asyncio.ensure_future(self._watch()),
        ]

    async def stop(self) -> None:
        self.active.stop()
        self.backup.stop()
        if self._tasks:
            self._tasks[-1].cancel()  # the stall watch loops for ever: it has nothing to finish
            _, pending = await asyncio.wait(self._tasks, timeout=3.0)
            for t in pending:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def request_keyframe(self) -> None:
        """Ask the active path's relay for a keyframe (a local viewer joined)."""
        sub = self.active.sub
        if sub is not None:
            await sub.request_keyframe()

    # -- assignments ---------------------------------------------------------------------------

    def assign(self, msg: Assign) -> None:
        """Follow the orchestrator's plan, keeping whichever path already carries the media.

        Plans can cross a local switch in flight, so a plan naming the same two relays in the
        other order only refreshes tokens; the node switches on a plan only when it is a
        deliberate move or when it drops the relay the node is using now.
        """
        primary = Assign(stream=msg.stream, upstream=msg.upstream, whep_url=msg.whep_url, token=msg.token, epoch=msg.epoch)
        backup = None
        if msg.backup:
            backup = Assign(stream=msg.stream, upstream=msg.backup, whep_url=msg.backup_whep_url,
                            token=msg.backup_token, epoch=msg.epoch)
        a, b = self.active, self.backup
        if not msg.move and backup is not None and a.upstream == msg.backup and b.upstream == msg.upstream:
            a.assign(backup)  # crossed with our own switch: same relays, fresh tokens
            b.assign(primary)
            return
        if a.upstream == msg.upstream or not a.upstream:
            a.assign(primary)
        elif b.upstream == msg.upstream and b.ready:
            # the plan moves us onto our standby: make-before-break
            asyncio.ensure_future(self.switch("re-planned", planned=True))
            b.assign(primary)
            if backup is not None:
                asyncio.ensure_future(self._assign_after_switch(backup))
            return
        elif msg.move and a.ready:
            # a deliberate move to a relay we have no path to: bring it up warm on the standby
            # path first, then switch (make-before-break), rather than reconnect the live path
            asyncio.ensure_future(self._move_cold(primary, backup))
            return
        else:
            a.assign(primary)
        if backup is not None:
            if backup.upstream != b.upstream and b.upstream:
                # A replacement standby follows a failure, when many nodes are re-planned at once:
                # spread their handshakes (ICE + DTLS) instead of storming the relays with them.
                asyncio.ensure_future(self._assign_later(backup, random.uniform(*STANDBY_JITTER_S)))
            else:
                b.assign(backup)

    async def _assign_later(self, backup: Assign, delay: float) -> None:
        await asyncio.sleep(delay)
        self.backup.assign(backup)

    async def _move_cold(self, primary: Assign, backup: Assign | None) -> None:
        self.backup.assign(primary)
        deadline = time.monotonic() + COLD_MOVE_TIMEOUT_S
        while not (self.backup.upstream == primary.upstream and self.backup.ready):
            if time.monotonic() > deadline or self.active.upstream == primary.upstream:
                break
            await asyncio.sleep(0.02)
        if self.backup.upstream == primary.upstream and self.backup.ready:
            if not await self.switch("moved", planned=True):
                self.active.assign(primary)
        elif self.active.upstream != primary.upstream:
            log.warning("move to %s: no warm path within %.0f s; moving the live path", primary.upstream,
                        COLD_MOVE_TIMEOUT_S)
            self.active.assign(primary)
        if backup is not None:
            await self._assign_after_switch(backup)

    async def _assign_after_switch(self, backup: Assign) -> None:
        while self._switching:
            await asyncio.sleep(0.01)
        self.backup.assign(backup)

    # -- switching -------------------------------------------------------------------------------

    def _holdoff_factor(self) -> float:
        now = time.monotonic()
        recent = sum(1 for t in self._own_switches if now - t < SWITCH_WINDOW_S)
        return min(2.0 ** recent, MAX_HOLDOFF_FACTOR)

    async def _watch(self) -> None:
        """Switch when the primary has been silent past the threshold, checked by a timer that
        re-arms itself at (last packet + threshold): a few wakeups a second, not a 50 Hz poll.

        A check that runs late means this process was starved of CPU: packets may sit unread in
        its socket, so silence measured across it proves nothing; it is judged again shortly.
        """
        while True:
            a = self.active
            threshold = self.switch_after_s * self._holdoff_factor()
            due = max(a._last_packet + threshold, time.monotonic() + 0.005)
            planned = due
            await asyncio.sleep(due - time.monotonic())
            late = time.monotonic() - planned
            a = self.active
            if self._switching or a.sub is None or a.state not in ("receiving", "stalled", "connecting"):
                await asyncio.sleep(0.05)
                continue
            if a.last_packet_age <= threshold or not self.backup.ready:
                if not self.backup.ready:
                    await asyncio.sleep(0.05)
                continue
            if late > MAX_TICK_LAG_S:
                await asyncio.sleep(0.02)  # let queued packets be read, then judge again
                if a.last_packet_age <= threshold:
                    continue
            await self.switch(f"no media for {a.last_packet_age * 1000:.0f} ms")

    async def _log_first_packet(self, f: Follower, t0: float) -> None:
        activated = time.monotonic()
        while f._last_packet < activated and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.005)
        log.info("switch to %s: woken in %.0f ms, first packet after %.0f ms",
                 f.upstream, (activated - t0) * 1000, (f._last_packet - t0) * 1000)

    async def switch(self, reason: str, planned: bool = False) -> bool:
        """Make the standby the active path; the old active is dropped and reported lost."""
        if self._switching or not self.backup.ready:
            return False
        self._switching = True
        try:
            old, new = self.active, self.backup
            stalled = old.last_packet_age
            t0 = time.monotonic()
            if self.hitless:
                # both paths already carry the media into the merge: only the roles change
                self.active, self.backup = new, old
                if new.standby and not await new.activate():
                    self.active, self.backup = old, new
                    return False
                self.switches += 1
                self.last_switch_ms = 0.0
                log.warning("hitless: %s is the main path after %s went silent for %.0f ms (%s)",
                            new.upstream, old.upstream, stalled * 1000, reason)
                if self.on_switch is not None:
                    self.on_switch(old.upstream, new.upstream, stalled)
                if not planned:
                    self._own_switches.append(time.monotonic())
                await self.on_lost(old.upstream, reason)
                return True
            # Route the new path's packets from now on, then wake it at its relay.
            self.active, self.backup = new, old
            self._sinks[id(new)] = {k: self.open_sink(k, c) for k, c in self._codecs.get(id(new), {}).items()}
            if not await new.activate():
                self.active, self.backup = old, new
                return False
            if self.on_active is not None:
                self.on_active(new)
            self.switches += 1
            self.last_switch_ms = (time.monotonic() - t0) * 1000
            asyncio.ensure_future(self._log_first_packet(new, t0))
            log.warning("switched from %s to %s after %.0f ms (%s)", old.upstream, new.upstream, stalled * 1000, reason)
            if self.on_switch is not None:
                self.on_switch(old.upstream, new.upstream, stalled)
            if not planned:
                self._own_switches.append(time.monotonic())
            # The old path is parked as the standby: if its relay merely hiccuped it is a good
            # standby again; if it died, the standby watch reports its silence.
            asyncio.ensure_future(old.park())
            await self.on_lost(old.upstream, reason)
            return True
        finally:
            self._switching = False
