"""Follow an upstream assignment: subscribe by WHEP, watch for stalls, resubscribe with backoff.

Used by regional relays (pulling the programme from an origin) and by hall
daemons (pulling from their relay). The current subscription is kept until a
new assignment arrives or the media stalls; losing the control plane changes
nothing here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

import aiohttp

from diemcau.messages import Assign

from .client import SignallingError, SinkFactory, WhepSubscriber
from diemcau.tls import http_session

log = logging.getLogger(__name__)

OnLost = Callable[[str, str], Awaitable[None]]  # (upstream id, reason)
WATCH_INTERVAL_S = 0.1
REPORT_MIN_INTERVAL_S = 2.0  # failed subscribe attempts are reported to the control plane at most this often  # path health checks (the fast stall switch is DualPath's timer)


class Follower:
    def __init__(
        self,
        sinks: SinkFactory,
        on_lost: OnLost,
        ice_servers: list[str] | None = None,
        stall_s: float = 2.0,
        connect_timeout_s: float = 10.0,
        on_connected: Callable[[WhepSubscriber], None] | None = None,
        standby: bool = False,
        standby_stall_s: float = 3.5,
        name: str = "",
        kinds: tuple[str, ...] = ("audio", "video"),
    ) -> None:
        self.kinds = kinds
        self.standby = standby  # a warm path: connected, media parked at the relay
        self.standby_stall_s = standby_stall_s  # no sender report this long: the standby is dead
        self.name = name
        self.sinks = sinks
        self.on_lost = on_lost
        self.ice_servers = ice_servers or []
        self.stall_s = stall_s
        self.connect_timeout_s = connect_timeout_s
        self.on_connected = on_connected
        self.assignment: Assign | None = None
        self.sub: WhepSubscriber | None = None
        self.state = "idle"  # idle | connecting | receiving | stalled
        self.connects = 0
        self.last_error = ""
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._last_packet = 0.0
        self._last_rtcp = 0.0
        self._last_report = 0.0
        self._http: aiohttp.ClientSession | None = None

    @property
    def upstream(self) -> str:
        return self.assignment.upstream if self.assignment else ""

    @property
    def ready(self) -> bool:
        """Connected (receiving, or parked as a standby) and not known to be failing."""
        return self.assignment is not None and self.sub is not None and self.state in ("receiving", "standby")

    def mark_rtcp(self) -> None:
        self._last_rtcp = time.monotonic()

    @property
    def last_packet_age(self) -> float:
        return time.monotonic() - self._last_packet

    async def activate(self) -> bool:
        """Turn this standby path into the active one; False if the relay did not answer."""
        sub, http = self.sub, self._http
        if sub is None or http is None:
            return False
        self.standby = False
        self._last_packet = time.monotonic()
        self.state = "receiving"
        await sub.wake()  # RTCP: immediate
        asyncio.ensure_future(self._confirm_active(sub, http))  # HTTP: reliable, in the background
        return True

    async def _confirm_active(self, sub: WhepSubscriber, http: aiohttp.ClientSession) -> None:
        for _ in range(3):
            try:
                await sub.set_active(http, True)
                return
            except SignallingError as exc:
                log.warning("confirming standby %s active failed: %s", self.upstream, exc)
                await asyncio.sleep(0.2)

    async def park(self) -> None:
        """Turn the active path into a standby: keep it connected, ask its relay to stop sending."""
        self.standby = True
        self._last_rtcp = time.monotonic()
        if self.state == "receiving":
            self.state = "standby"
        sub, http = self.sub, self._http
        if sub is not None and http is not None:
            try:
                await sub.set_active(http, False, timeout_s=1.0)
            except SignallingError:
                pass  # a dead relay: the standby watch notices its silence and reports it

    def assign(self, msg: Assign) -> None:
        cur = self.assignment
        if cur is not None and msg.epoch and cur.epoch and msg.epoch < cur.epoch:
            return  # stale re-plan
        # Same relay: keep the subscription (or the pending retry) and just take the fresh token.
        same = cur is not None and cur.whep_url == msg.whep_url
        self.assignment = msg
        if not same:
            self._changed.set()

    def mark_packet(self) -> None:
        self._last_packet = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()

    async def run(self) -> None:
        backoff = 0.1
        async with http_session() as http:
            self._http = http
            try:
                while not self._stop.is_set():
                    if self.assignment is None:
                        self._changed.clear()
                        await self._changed.wait()
                        continue
                    a = self.assignment
                    self._changed.clear()
                    self.state = "connecting"
                    sub = WhepSubscriber(a.whep_url, a.token, self.sinks, self.ice_servers, kinds=self.kinds, standby=self.standby)
                    try:
                        if not await self._connect_unless_changed(sub, http):
                            await sub.close()  # a new assignment came while connecting: that one now
                            continue
                    except SignallingError as exc:
                        await sub.close()
                        self.last_error = str(exc)
                        log.info("subscribe to %s failed: %s", a.upstream, exc)
                        if (exc.status in (401, 403, 404) or backoff >= 0.8) and time.monotonic() - self._last_report > REPORT_MIN_INTERVAL_S:
                            self._last_report = time.monotonic()
                            await self.on_lost(a.upstream, exc.reason)
                        await self._wait(exc.retry_after or random.uniform(backoff / 2, backoff))
                        backoff = min(backoff * 2, 3.0)
                        continue
                    self.sub = sub
                    self.connects += 1
                    self._last_packet = self._last_rtcp = time.monotonic()
                    self.state = "standby" if self.standby else "receiving"
                    if self.on_connected is not None:
                        self.on_connected(sub)
                    backoff = 0.1
                    reason = await self._watch(sub)
                    self.sub = None
                    await sub.close(http)
                    if reason:
                        self.state = "stalled"
                        log.warning("upstream %s lost: %s", a.upstream, reason)
                        await self.on_lost(a.upstream, reason)
            finally:
                if self.sub is not None:
                    await self.sub.close(http)
                self.state = "idle"

    async def _connect_unless_changed(self, sub: WhepSubscriber, http) -> bool:
        """Connect; False when the assignment changed first. A relay cut off from this node takes
        the whole connect timeout to fail: the orchestrator's new plan must not wait for it."""
        connect = asyncio.ensure_future(sub.connect(http, self.connect_timeout_s))
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({connect, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
        if connect.done():
            connect.result()  # raises what the connect raised
            return True
        connect.cancel()
        try:
            await connect
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - abandoned on purpose
            pass
        return False

    async def _watch(self, sub: WhepSubscriber) -> str:
        """Return a reason when media stalls or the connection fails; '' on a new assignment."""
        while not self._stop.is_set():
            if self._changed.is_set():
                return ""
            if sub.pc.connectionState in ("failed", "closed"):
                return f"connection {sub.pc.connectionState}"
            now = time.monotonic()
            if self.standby:
                if now - self._last_rtcp > self.standby_stall_s:
                    return f"standby path silent for {self.standby_stall_s:.1f} s"
            elif now - self._last_packet > self.stall_s:
                return f"no media for {self.stall_s:.1f} s"
            await asyncio.sleep(WATCH_INTERVAL_S)
        return ""

    async def _wait(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._changed.wait(), seconds)
        except asyncio.TimeoutError:
            pass
