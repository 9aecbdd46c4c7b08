"""WHIP publish sessions and WHEP subscribe sessions on the relay's side."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from aiortc import RTCSessionDescription

from .downtrack import DownTrack
from .ice import new_peer_connection
from .peer import keep_only_codec, wait_connected
from .rtpin import RtpInput
from .rtpout import RtpOutput
from .source import Feed, Source

log = logging.getLogger(__name__)


class SessionError(Exception):
    """Negotiation failed for a reason the client can act on (HTTP status + reason)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class PublishSession:
    """A WHIP publisher feeding a Source (the studio, or a hall with the floor)."""

    def __init__(self, source: Source, subject: str, ice_servers: list[str], role: str = "primary") -> None:
        self.id = secrets.token_urlsafe(12)
        self.token_id = ""  # jti of the media token that opened it
        self.remote = ""  # source address of the request that opened it
        self.source = source
        self.subject = subject
        self.role = role
        self.feed = Feed(role, self.id)
        self.pc = new_peer_connection(ice_servers)
        self.inputs: list[RtpInput] = []
        self.created_at = time.time()

    async def accept(self, offer_sdp: str) -> str:
        pc = self.pc
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:
            raise SessionError(400, f"offer rejected: {exc}") from None
        for t in pc.getTransceivers():
            if t.kind not in ("audio", "video"):
                continue
            keep_only_codec(t)
            if not t._codecs:
                raise SessionError(400, f"no supported {t.kind} codec in the offer")
            t.direction = "recvonly"
            existing = self.source.tracks.get(t.kind)
            if existing is not None and self.source.feeds and existing.codec.mimeType.lower() != t._codecs[0].mimeType.lower():
                raise SessionError(409, f"the {t.kind} feed already on air is {existing.codec.mimeType}; "
                                        f"a {self.role} feed must use the same codec")
            self.source.track_for(t.kind, t._codecs[0])
            on_packet, on_sr = self.source.feed_sink(self.feed, t.kind)
            inp = RtpInput(t.receiver, t.kind, on_packet, on_sr)
            self.feed.inputs[t.kind] = inp
            self.inputs.append(inp)
        if not self.inputs:
            raise SessionError(400, "offer has no audio or video to publish")
        try:
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc fails on offers it parsed but cannot answer
            raise SessionError(400, f"offer could not be answered: {type(exc).__name__}: {exc}"[:200]) from None
        self.source.add_feed(self.feed)
        return pc.localDescription.sdp

    async def close(self) -> None:
        self.source.remove_feed(self.feed)
        await self.pc.close()


class SubscribeSession:
    """A WHEP subscriber (a regional relay, a hall, a viewer) taking a Source's tracks."""

    def __init__(self, source: Source, subject: str, ice_servers: list[str]) -> None:
        self.id = secrets.token_urlsafe(12)
        self.token_id = ""  # jti of the media token that opened it
        self.remote = ""  # source address of the request that opened it
        self.source = source
        self.subject = subject
        self.pc = new_peer_connection(ice_servers)
        self.downtracks: list[DownTrack] = []
        self.control = None  # its LayerControl, when the relay has a ladder and the subscriber adapts
        self.created_at = time.time()

    async def accept(self, offer_sdp: str, offered_kinds: list[str], standby: bool = False) -> str:
        pc = self.pc
        wanted = [k for k in ("audio", "video") if k in offered_kinds and k in self.source.tracks]
        if not wanted:
            raise SessionError(
                400, "offer asks for no kind this stream carries "
                f"(stream has {', '.join(sorted(self.source.tracks)) or 'nothing yet'})"
            )
        # Sendonly transceivers created first are matched to the offer's m-lines by kind.
        pre = {k: pc.addTransceiver(k, direction="sendonly") for k in wanted}
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:
            raise SessionError(400, f"offer rejected: {exc}") from None
        for kind, t in pre.items():
            up = self.source.tracks[kind]
            keep_only_codec(t, up.codec.mimeType)
            t._codecs = [c for c in t._codecs if c.mimeType.lower() == up.codec.mimeType.lower()]
            if not t._codecs:
                raise SessionError(400, f"offer does not accept {up.codec.mimeType}, the stream's {kind} codec")
        try:
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc fails on offers it parsed but cannot answer
            raise SessionError(400, f"offer could not be answered: {type(exc).__name__}: {exc}"[:200]) from None
        for kind, t in pre.items():
            up = self.source.tracks[kind]
            dt = DownTrack(up, RtpOutput(t, kind))
            dt.paused = standby
            up.attach(dt)
            self.downtracks.append(dt)
        asyncio.ensure_future(self._request_keyframe_when_connected())
        return pc.localDescription.sdp

    @property
    def active(self) -> bool:
        return not any(dt.paused for dt in self.downtracks)

    def set_active(self, active: bool) -> None:
        for dt in self.downtracks:
            if active:
                dt.resume()
            else:
                dt.pause()

    async def _request_keyframe_when_connected(self) -> None:
        if await wait_connected(self.pc, 30.0):
            for dt in self.downtracks:
                if not dt.paused:
                    dt.up.request_keyframe()

    async def close(self) -> None:
        if self.control is not None:
            self.control.stop()
            self.control = None
        for dt in self.downtracks:
            dt.close()
        self.downtracks.clear()
        await self.pc.close()
