"""Up the tree: a relay republishes a stream it receives by WHIP (a hall's floor) to other relays.

The hall given the floor publishes to its own relay; that relay republishes the same
encoded packets (no transcoding) by WHIP to the origins, from where every regional relay
pulls it like any other stream. Each target is kept published on its own: a dropped
connection (or one whose receiver stopped sending RTCP) is published again with back-off.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from diemcau.tls import http_session

from .client import SignallingError, WhipPublisher
from .downtrack import DownTrack
from .server import RelayCore

log = logging.getLogger(__name__)

PEER_SILENT_S = 4.0  # no RTCP from the target this long: it is gone
SOURCE_WAIT_S = 0.02


class Forwarder:
    def __init__(self, core: RelayCore, stream: str, targets: list[tuple[str, str]], ice_servers: list[str]) -> None:
        self.core = core
        self.stream = stream
        self.targets = targets
        self.ice_servers = ice_servers
        self.published: dict[str, float] = {}  # target url -> when it was (last) published
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._keep(url, token)) for url, token in self.targets]

    async def stop(self) -> None:
        """End every publication with its DELETE (the next speaker's relay may publish at once)."""
        self._stop.set()
        _, pending = await asyncio.wait(self._tasks, timeout=3.0) if self._tasks else (None, [])
        for t in pending:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _keep(self, url: str, token: str) -> None:
        backoff = 0.2
        async with http_session() as http:
            while not self._stop.is_set():
                src = self.core.sources.get(self.stream)
                if src is None or "video" not in src.tracks or src.publisher in ("", "upstream"):
                    # the speaker's hall has not published here yet (what this relay may still pull
                    # from upstream is the last speaker's: never send that back up)
                    await self._sleep(SOURCE_WAIT_S)
                    continue
                kinds = tuple(k for k in ("audio", "video") if k in src.tracks)
                pub = WhipPublisher(url, token, self.ice_servers, kinds=kinds)
                downtracks: list[DownTrack] = []
                try:
                    await pub.connect(http)
                except SignallingError as exc:
                    log.warning("forwarding %s to %s failed: %s", self.stream, url, exc)
                    await pub.close()
                    await self._sleep(exc.retry_after or random.uniform(backoff / 2, backoff))
                    backoff = min(backoff * 2, 3.0)
                    continue
                backoff = 0.2
                self.published[url] = time.time()
                log.info("forwarding %s up to %s", self.stream, url)
                for kind, out in pub.outputs.items():
                    up = src.tracks[kind]
                    dt = DownTrack(up, out)
                    up.attach(dt)
                    downtracks.append(dt)
                try:
                    while not self._stop.is_set() and pub.pc.connectionState == "connected":
                        await self._sleep(0.1)
                        if self.core.sources.get(self.stream) is not src or src.publisher in ("", "upstream"):
                            break  # the speaker left, or published again: wait for what comes next
                        if time.monotonic() - max(o.last_rtcp_at for o in pub.outputs.values()) > PEER_SILENT_S:
                            log.warning("forwarding %s: %s went silent; publishing again", self.stream, url)
                            break
                finally:
                    for dt in downtracks:
                        dt.close()
                    self.published.pop(url, None)
                    await pub.close(http)
