"""The node side of the control channel: connect, say hello, heartbeat, take commands, reconnect.

Used by relays and hall daemons alike. The channel going away never stops
media: the node keeps its last assignment and reconnects with jittered backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
import zlib
from collections.abc import Awaitable, Callable

import aiohttp
import msgspec

from . import messages as m
from .tls import http_session

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0
# WebSocket-level pings only catch half-open connections (a dead process closes its socket at
# once); a short ping deadline on a CPU-starved box tears down healthy channels and causes
# re-registration storms, so it is long. Node liveness is our own heartbeats.
WS_PING_S = 20.0


class ControlClient:
    def __init__(
        self,
        url: str,
        credential: str,
        hello: Callable[[], m.Hello],
        heartbeat: Callable[[int], m.Heartbeat],
        on_message: Callable[[m.Msg], Awaitable[None]],
        heartbeat_ms: int = 500,
    ) -> None:
        # Several orchestrator instances may be given (comma-separated): a node moves its
        # channel to the next one when the current one cannot be reached.
        self.urls = [u.strip() for u in url.split(",") if u.strip()]
        self._index = 0
        self.credential = credential
        self.hello = hello
        self.heartbeat = heartbeat
        self.on_message = on_message
        self.heartbeat_ms = heartbeat_ms
        self.connected = asyncio.Event()
        self.connects = 0
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._stop = asyncio.Event()

    @property
    def url(self) -> str:
        return self.urls[self._index] if self.urls else ""

    def stop(self) -> None:
        self._stop.set()
        ws = self._ws
        if ws is not None and not ws.closed:
            asyncio.ensure_future(ws.close())

    async def send(self, msg: m.Msg) -> bool:
        ws = self._ws
        if ws is None or ws.closed:
            return False
        try:
            await ws.send_bytes(m.encode(msg))
            return True
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            return False

    async def run(self) -> None:
        backoff = BACKOFF_MIN_S
        if len(self.urls) > 1:
            # the nodes spread over the instances (each starts at its own, by its id), so that
            # every instance carries a share of the channels; on trouble each moves to the next
            self._index = zlib.crc32(self.hello().node.encode()) % len(self.urls)
        async with http_session() as http:
            while not self._stop.is_set():
                try:
                    code = await self._session(http)
                    backoff = BACKOFF_MIN_S
                    if code == m.CLOSE_STORE_LOST and len(self.urls) > 1:
                        log.warning("%s is cut off from its store: moving the channel to the next instance", self.url)
                        self._index = (self._index + 1) % len(self.urls)
                except _Fatal as exc:
                    log.error("control channel refused: %s", exc)
                    backoff = BACKOFF_MAX_S
                except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                    log.info("control channel to %s unavailable: %s", self.url, exc)
                    if len(self.urls) > 1:
                        self._index = (self._index + 1) % len(self.urls)
                        backoff = BACKOFF_MIN_S  # another instance: try it at once
                finally:
                    self.connected.clear()
                    self._ws = None
                if self._stop.is_set():
                    break
                delay = random.uniform(backoff / 2, backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass

    async def _session(self, http: aiohttp.ClientSession) -> int | None:
        """One channel, until it closes; returns the server's close code."""
        async with http.ws_connect(
            self.url,
            headers={"Authorization": f"Bearer {self.credential}"},
            heartbeat=WS_PING_S,
            timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            max_msg_size=1 << 20,
        ) as ws:
            await ws.send_bytes(m.encode(self.hello()))
            first = await ws.receive(timeout=5.0)
            if first.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                raise aiohttp.ClientError(f"channel closed before welcome ({ws.close_code})")
            welcome = m.decode(first.data)
            if isinstance(welcome, m.ErrorMsg):
                raise _Fatal(f"{welcome.code} {welcome.reason}")
            if isinstance(welcome, m.Welcome):
                self.heartbeat_ms = welcome.heartbeat_ms
            self._ws = ws
            self.connects += 1
            self.connected.set()
            beat = asyncio.ensure_future(self._beat(ws))
            try:
                async for raw in ws:
                    if raw.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                        break
                    try:
                        msg = m.decode(raw.data)
                    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                        log.warning("bad control message ignored: %s", exc)
                        continue
                    if isinstance(msg, m.ErrorMsg):
                        log.warning("orchestrator says: %d %s", msg.code, msg.reason)
                        continue
                    try:
                        await self.on_message(msg)
                    except Exception:
                        log.exception("handling %s failed", type(msg).__name__)
            finally:
                beat.cancel()
            return ws.close_code

    async def _beat(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        seq = 0
        while not ws.closed:
            seq += 1
            try:
                await ws.send_bytes(m.encode(self.heartbeat(seq)))
            except (ConnectionError, RuntimeError, aiohttp.ClientError):
                return
            await asyncio.sleep(self.heartbeat_ms / 1000)


class _Fatal(Exception):
    pass
