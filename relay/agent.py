"""A relay's control-plane half: register, report load, and pull the streams it is assigned."""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit, urlunsplit

import msgspec

from diemcau import __version__
from diemcau import messages as m
from diemcau.control_client import ControlClient

from .follow import Follower
from .forward import Forwarder
from .ladder import split_stream
from .paths import DualPath
from .server import FLOOR_PREFIX, RelayCore

FLOOR_SWITCH_AFTER_S = 1.5

log = logging.getLogger(__name__)


class RelayAgent:
    def __init__(self, core: RelayCore, public_url: str) -> None:
        self.core = core
        self.s = core.settings
        self.public_url = public_url
        self.followers: dict[str, DualPath] = {}
        self.forwarders: dict[str, Forwarder] = {}  # streams published here that go up the tree
        self.layer_pulls: dict[str, tuple[Follower, asyncio.Task]] = {}  # ladder layers pulled from upstream
        self._tasks: list[asyncio.Task] = []
        self.control = ControlClient(
            self.s.orchestrator_url, self.s.credential, self._hello, self._heartbeat,
            self._on_message, self.s.heartbeat_ms,
        )

    def start(self) -> None:
        self.core.on_local_publish = self._stop_pulling
        self.core.pull_layer = self._pull_layer
        self.core.drop_layer = self._drop_layer
        self._tasks.append(asyncio.ensure_future(self.control.run()))
        self._tasks.append(asyncio.ensure_future(self._follow_layers()))

    async def _stop_pulling(self, stream: str) -> None:
        f = self.followers.pop(stream, None)
        if f is not None:
            log.info("%s: a local publisher takes over; no longer pulled from upstream", stream)
            await f.stop()
        src = self.core.sources.get(stream)
        if src is not None and src.publisher == "upstream":
            src.publisher = ""

    async def stop(self) -> None:
        self.control.stop()
        for f in self.followers.values():
            await f.stop()
        for fw in self.forwarders.values():
            await fw.stop()
        for stream in list(self.layer_pulls):
            await self._drop_layer(stream)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=3.0)
            for t in pending:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _hello(self) -> m.Hello:
        return m.Hello(
            node=self.s.id, kind="relay", version=__version__, region=self.s.region, role=self.s.role,
            province=self.s.province,
            whep_url=self.public_url, capacity=self.s.capacity, streams=sorted(self.core.sources),
        )

    def _heartbeat(self, seq: int) -> m.Heartbeat:
        st = self.core.stats()
        f = next(iter(self.followers.values()), None)
        src = next((x for x in self.core.sources.values() if x.feeds), None)
        return m.Heartbeat(seq=seq, relay=m.RelayStats(
            **st,
            feeds=sorted(src.feeds) if src else [],
            active_feed=src.active_role if src else "",
            feed_switches=[[f"{t:.3f}", a, b, r] for t, a, b, r in src.switches[-5:]] if src else [],
            upstream=f.active.upstream if f else "",
            upstream_state=f.active.state if f else "",
            upstream_backup=f.backup.upstream if f else "",
            upstream_backup_state=f.backup.state if f else "",
        ), sent_ms=int(time.time() * 1000))

    # -- ladder layers pulled on demand ----------------------------------------------------

    def _layer_assignment(self, stream: str) -> m.Assign | None:
        """Where to pull a layer from: the active upstream of its stream, with the same token."""
        base, layer = split_stream(stream)
        f = self.followers.get(base)
        a = f.active.assignment if f is not None else None
        if a is None:
            return None
        parts = urlsplit(a.whep_url)
        path = parts.path.rstrip("/")
        if not path.endswith("/" + base):
            return None
        url = urlunsplit(parts._replace(path=f"{path}~{layer}"))
        return m.Assign(stream=stream, upstream=a.upstream, whep_url=url, token=a.token, epoch=a.epoch)

    async def _pull_layer(self, stream: str) -> None:
        if stream in self.layer_pulls:
            return
        a = self._layer_assignment(stream)
        if a is None:
            return
        src = self.core.source(stream, create=True)
        src.publisher = "upstream"
        follower: Follower

        def sinks(kind, codec):
            if kind != "video":
                return (lambda packet: None), None
            up = src.track_for(kind, codec)
            up.new_upstream()

            def on_packet(packet) -> None:
                follower.mark_packet()
                up.on_packet(packet)
            return on_packet, up.on_sr

        def on_connected(sub) -> None:
            up = src.tracks.get("video")
            if up is not None:
                up.set_keyframe_requester(sub.request_keyframe)
                if up.waiting or up.switchers:
                    up.request_keyframe()

        async def on_lost(upstream: str, reason: str) -> None:
            log.info("layer %s from %s: %s", stream, upstream, reason)

        follower = Follower(sinks, on_lost, self.s.ice_servers, max(self.s.upstream_stall_s, 2.0), self.s.connect_timeout_s,
                            on_connected, name=stream, kinds=("video",))
        follower.assign(a)
        self.layer_pulls[stream] = (follower, asyncio.ensure_future(follower.run()))
        log.info("pulling layer %s from %s", stream, a.upstream)

    async def _drop_layer(self, stream: str) -> None:
        entry = self.layer_pulls.pop(stream, None)
        if entry is not None:
            follower, task = entry
            follower.stop()
            try:
                await asyncio.wait_for(task, 3.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                task.cancel()

    async def _follow_layers(self) -> None:
        """A layer follows its stream's upstream: when the stream's path switches, so does the layer."""
        while True:
            await asyncio.sleep(0.25)
            for stream, (follower, _) in list(self.layer_pulls.items()):
                a = self._layer_assignment(stream)
                if a is not None and (follower.assignment is None or follower.assignment.whep_url != a.whep_url):
                    log.info("layer %s now from %s", stream, a.upstream)
                    follower.assign(msgspec.structs.replace(a, epoch=0))

    async def _on_message(self, msg: m.Msg) -> None:
        if isinstance(msg, m.Assign):
            # a relay takes the stream as it is: layers are chosen for halls, not between relays
            msg = msgspec.structs.replace(msg, whep_url=_no_adapt(msg.whep_url),
                                          backup_whep_url=_no_adapt(msg.backup_whep_url))
            f = self.followers.get(msg.stream)
            if f is None:
                f = self.followers[msg.stream] = self._paths(msg.stream)
                f.start()
            self.core.expected.add(msg.stream)
            f.assign(msg)
        elif isinstance(msg, m.SwitchSource):
            if not self.core.switch_source(msg.stream, msg.role, msg.reason or "operator"):
                log.warning("cannot switch %s to its %s feed: no such feed here", msg.stream, msg.role)
        elif isinstance(msg, m.Forward):
            old = self.forwarders.pop(msg.stream, None)
            if old is not None:
                await old.stop()
            if msg.whip_urls:
                self.core.expected.add(msg.stream)  # the speaker's hall publishes it here
                fw = self.forwarders[msg.stream] = Forwarder(self.core, msg.stream, list(zip(msg.whip_urls, msg.tokens)),
                                                             self.s.ice_servers)
                fw.start()
        elif isinstance(msg, m.Unassign):
            f = self.followers.pop(msg.stream, None)
            if f is not None:
                await f.stop()
            self.core.expected.discard(msg.stream)

    def _paths(self, stream: str) -> DualPath:
        """Primary and warm standby upstream for one stream; the active one feeds the Source."""
        src = self.core.source(stream, create=True)
        assert src is not None
        floor = stream.startswith(FLOOR_PREFIX)

        def open_sink(kind, codec):
            # the same stream by another path continues; a stream this relay had from a local
            # publisher until now (a floor that passed to a hall elsewhere) is another source
            first = kind not in src.tracks or src.publisher != "upstream" or floor
            up = src.track_for(kind, codec)
            up.set_keyframe_requester(None)  # until the new path is up (on_active)
            if first:
                up.new_upstream()
            else:
                up.continue_upstream()  # same origin stream by another path: no keyframe wait
            return up.on_packet, up.on_sr

        def on_active(follower) -> None:
            up = src.tracks.get("video")
            if up is not None and follower.sub is not None:
                up.set_keyframe_requester(follower.sub.request_keyframe)
                if up.waiting:
                    up.request_keyframe()
            src.publisher = "upstream"

        async def on_lost(upstream: str, reason: str) -> None:
            await self.control.send(m.MediaLost(upstream=upstream, reason=reason, stream=stream))

        # A floor pauses at every handover (one speaker leaves, the next starts): not a reason to
        # switch paths; and after any change its source may be another hall, so subscribers here
        # wait for (and ask for) a keyframe rather than continue the stream.
        switch_after_s = max(self.s.switch_after_ms / 1000, FLOOR_SWITCH_AFTER_S) if floor else self.s.switch_after_ms / 1000
        return DualPath(open_sink, on_lost, self.s.ice_servers, switch_after_s,
                        max(self.s.upstream_stall_s, 2 * switch_after_s) if floor else self.s.upstream_stall_s,
                        self.s.connect_timeout_s, on_active=on_active)


def _no_adapt(url: str) -> str:
    if not url or "adapt=" in url:
        return url
    return url + ("&" if "?" in url else "?") + "adapt=0"
