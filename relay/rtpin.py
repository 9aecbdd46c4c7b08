"""Raw RTP input from an aiortc receiver, with the decoder bypassed.

aiortc's receiver depacketizes, buffers and decodes every frame. We replace its
per-instance RTP handler: keep its statistics (for receiver reports), its NACK
generator and RTX unwrapping, and hand each packet to the forwarding path as it
arrives. Nothing is decoded.
"""

from __future__ import annotations

from collections.abc import Callable

from aiortc import RTCRtpReceiver
from aiortc.codecs import is_rtx
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtcpSrPacket, RtpPacket, unwrap_rtx

from . import compat

PacketSink = Callable[[RtpPacket], None]
SrSink = Callable[[int, int], None]  # (ntp, rtp_ts)


class RtpInput:
    """Feeds packets arriving on one receiver into `sink`, without decoding."""

    def __init__(self, receiver: RTCRtpReceiver, kind: str, sink: PacketSink, on_sr: SrSink | None = None) -> None:
        compat.check_live(receiver, compat.RECEIVER_PRIVATE)
        self.kind = kind
        self.receiver = receiver
        self.sink = sink
        self.on_sr = on_sr
        self.media_ssrc: int | None = None
        self.announced_ssrc: int | None = None  # from the SDP, before any packet arrived
        self.packets = 0
        self.last_arrival_ms = 0
        d = receiver.__dict__
        self._codecs: dict = d["_RTCRtpReceiver__codecs"]
        self._streams: dict = d["_RTCRtpReceiver__remote_streams"]
        self._nack = d["_RTCRtpReceiver__nack_generator"]
        self._rtx_ssrc: dict = d["_RTCRtpReceiver__rtx_ssrc"]
        self._orig_rtcp = receiver._handle_rtcp_packet
        receiver._handle_rtp_packet = self._handle_rtp  # type: ignore[method-assign]
        receiver._handle_rtcp_packet = self._handle_rtcp  # type: ignore[method-assign]

    @property
    def codec(self):
        """The first negotiated media codec (not RTX)."""
        for codec in self._codecs.values():
            if not is_rtx(codec):
                return codec
        return None

    async def _handle_rtp(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return
        stream = self._streams.get(packet.ssrc)
        if stream is None:
            stream = self._streams[packet.ssrc] = StreamStatistics(codec.clockRate)
        stream.add(packet)
        if is_rtx(codec):
            original = self._rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original is None or len(packet.payload) < 2 or apt not in self._codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original)
        self.media_ssrc = packet.ssrc
        self.packets += 1
        self.last_arrival_ms = arrival_time_ms
        if self._nack is not None and self._nack.add(packet):
            await self.receiver._send_rtcp_nack(packet.ssrc, sorted(self._nack.missing))
        self.sink(packet)

    async def _handle_rtcp(self, packet) -> None:
        await self._orig_rtcp(packet)
        if isinstance(packet, RtcpSrPacket) and self.on_sr is not None:
            self.on_sr(packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp)

    async def request_keyframe(self) -> None:
        if self.media_ssrc is not None and self.kind == "video":
            await self.receiver._send_rtcp_pli(self.media_ssrc)
