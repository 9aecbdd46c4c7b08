"""WHIP and WHEP clients: publish to or subscribe from a relay, with raw RTP in or out."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from urllib.parse import urljoin

import aiohttp
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.codecs import is_rtx
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from .ice import new_peer_connection
from .peer import wait_connected
from .rtpin import PacketSink, RtpInput, SrSink
from .rtpout import RtpOutput

log = logging.getLogger(__name__)

SinkFactory = Callable[[str, RTCRtpCodecParameters], tuple[PacketSink, SrSink | None]]


class SignallingError(Exception):
    """The relay refused the offer or could not be reached; `retry_after` when it said so."""

    def __init__(self, status: int, reason: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


async def _exchange(
    http: aiohttp.ClientSession, url: str, token: str, offer_sdp: str, timeout_s: float
) -> tuple[str, str]:
    """POST an SDP offer; return (answer SDP, absolute resource URL)."""
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
    try:
        async with http.post(
            url, data=offer_sdp.encode(), headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            body = await resp.text()
            if resp.status != 201:
                try:
                    reason = json.loads(body).get("error", body)
                except ValueError:
                    reason = body[:200]
                retry = resp.headers.get("Retry-After")
                raise SignallingError(resp.status, reason, float(retry) if retry else None)
            location = resp.headers.get("Location")
            if not location:
                raise SignallingError(502, "relay answered 201 without a Location header")
            return body, urljoin(url, location)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise SignallingError(0, f"cannot reach {url}: {type(exc).__name__}: {exc}") from None


async def _delete(http: aiohttp.ClientSession, resource: str | None, token: str) -> None:
    if not resource:
        return
    try:
        async with http.delete(
            resource, headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=2),
        ):
            pass
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        pass


class WhepSubscriber:
    """Receives a stream by WHEP; each track's packets go to the sink made by `sinks`."""

    def __init__(
        self,
        url: str,
        token: str,
        sinks: SinkFactory,
        ice_servers: list[str] | None = None,
        kinds: tuple[str, ...] = ("audio", "video"),
        standby: bool = False,
    ) -> None:
        self.url = url
        self.token = token
        self.sinks = sinks
        self.kinds = kinds
        self.standby = standby
        self.pc = new_peer_connection(ice_servers)
        self.inputs: dict[str, RtpInput] = {}
        self.resource: str | None = None

    async def connect(self, http: aiohttp.ClientSession, timeout_s: float = 10.0) -> None:
        pc = self.pc
        for kind in self.kinds:
            pc.addTransceiver(kind, direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        url = self.url + ("&" if "?" in self.url else "?") + "standby=1" if self.standby else self.url
        answer, self.resource = await _exchange(http, url, self.token, pc.localDescription.sdp, timeout_s)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        except Exception as exc:
            raise SignallingError(502, f"relay's answer rejected: {exc}") from None
        remote = pc.remoteDescription
        for t in pc.getTransceivers():
            codec = next((c for c in t._codecs if not is_rtx(c)), None)
            if codec is None or t.kind not in self.kinds:
                continue
            sink, on_sr = self.sinks(t.kind, codec)
            inp = self.inputs[t.kind] = RtpInput(t.receiver, t.kind, sink, on_sr)
            inp.announced_ssrc = _announced_ssrc(remote.sdp, t.mid) if remote else None
        if not await wait_connected(pc, timeout_s):
            raise SignallingError(0, f"ICE/DTLS to {self.url} did not complete in {timeout_s:.0f} s")

    async def set_active(self, http: aiohttp.ClientSession, active: bool, timeout_s: float = 2.0) -> None:
        """Wake (or park) a standby path through the WHEP layer extension."""
        await self.set_layer(http, {"active": active}, timeout_s)
        self.standby = not active

    async def set_layer(self, http: aiohttp.ClientSession, body: dict, timeout_s: float = 2.0) -> dict:
        """The WHEP layer extension: wake/park the path, or bound its layer of the ladder."""
        if not self.resource:
            raise SignallingError(0, "not connected")
        try:
            async with http.post(
                self.resource + "/layer", json=body,
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as resp:
                if resp.status != 200:
                    raise SignallingError(resp.status, (await resp.text())[:200])
                return await resp.json()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            raise SignallingError(0, f"cannot reach {self.resource}: {exc}") from None

    async def request_keyframe(self) -> None:
        inp = self.inputs.get("video")
        if inp is not None:
            await inp.request_keyframe()

    async def wake(self) -> None:
        """Wake a standby path at its relay with a PLI per track (RTCP on the path itself)."""
        for inp in self.inputs.values():
            ssrc = inp.media_ssrc or inp.announced_ssrc
            if ssrc is not None:
                await inp.receiver._send_rtcp_pli(ssrc)

    async def close(self, http: aiohttp.ClientSession | None = None) -> None:
        if http is not None:
            await _delete(http, self.resource, self.token)
        await self.pc.close()


def _announced_ssrc(sdp_text: str, mid: str | None) -> int | None:
    """The SSRC the relay announced for one m-line (a=ssrc), to address RTCP before any RTP."""
    from aiortc.sdp import SessionDescription

    try:
        desc = SessionDescription.parse(sdp_text)
    except Exception:
        return None
    for media in desc.media:
        if media.rtp.muxId == mid and media.ssrc:
            return media.ssrc[0].ssrc
    return None


class WhipPublisher:
    """Publishes raw RTP by WHIP: after connect(), `outputs[kind].send(...)` sends packets."""

    def __init__(
        self,
        url: str,
        token: str,
        ice_servers: list[str] | None = None,
        kinds: tuple[str, ...] = ("audio", "video"),
        video_mime: str = "video/VP8",
    ) -> None:
        self.url = url
        self.token = token
        self.kinds = kinds
        self.video_mime = video_mime
        self.pc = new_peer_connection(ice_servers)
        self.outputs: dict[str, RtpOutput] = {}
        self.resource: str | None = None

    async def connect(self, http: aiohttp.ClientSession, timeout_s: float = 10.0) -> None:
        pc = self.pc
        transceivers = {}
        for kind in self.kinds:
            t = pc.addTransceiver(kind, direction="sendonly")
            caps = RTCRtpSender.getCapabilities(kind).codecs
            mime = self.video_mime if kind == "video" else "audio/opus"
            prefs = [c for c in caps if c.mimeType.lower() == mime.lower()][:1]
            t.setCodecPreferences(prefs)
            transceivers[kind] = t
        await pc.setLocalDescription(await pc.createOffer())
        answer, self.resource = await _exchange(http, self.url, self.token, pc.localDescription.sdp, timeout_s)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        except Exception as exc:
            raise SignallingError(502, f"relay's answer rejected: {exc}") from None
        for kind, t in transceivers.items():
            self.outputs[kind] = RtpOutput(t, kind)
        if not await wait_connected(pc, timeout_s):
            raise SignallingError(0, f"ICE/DTLS to {self.url} did not complete in {timeout_s:.0f} s")

    async def close(self, http: aiohttp.ClientSession | None = None) -> None:
        if http is not None:
            await _delete(http, self.resource, self.token)
        await self.pc.close()


async def recvonly_offer() -> str:
    """A real aiortc offer receiving video and audio (for checks and fuzzing that need one)."""
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp
