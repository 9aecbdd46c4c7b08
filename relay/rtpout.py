"""Raw RTP output through an aiortc sender: header rewrite, SRTP protect, one UDP send.

aiortc's sender encodes frames from a track; we give it a track that never
yields, and instead push already-encoded RTP through its DTLS transport's SRTP
context and the ICE pair's socket, synchronously. aiortc keeps sending RTCP
sender reports from counters we update, and we intercept the RTCP the
subscriber sends back (PLI/FIR, NACK, REMB, receiver reports).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiortc import RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import State
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from . import compat
from .rtp import _HEADER, ABS_SEND_TIME_URI, abs_send_time


class IdleTrack(MediaStreamTrack):
    """A track that never produces a frame: keeps aiortc's sender loop parked."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._stopped = asyncio.Event()

    async def recv(self):  # type: ignore[override]
        await self._stopped.wait()
        raise MediaStreamError

    def stop(self) -> None:
        self._stopped.set()
        super().stop()


class RtpFeedback:
    """What a subscriber tells us over RTCP; a DownTrack implements it."""

    def on_keyframe_request(self) -> None: ...
    def on_nack(self, seqs: list[int]) -> None: ...
    def on_receiver_report(self, fraction_lost: int, jitter: int, packets_lost: int) -> None: ...
    def on_remb(self, bitrate: int) -> None: ...


# Sender write buffer above which video packets are dropped instead of queued (bytes).
MAX_SOCKET_BACKLOG = 256 * 1024


class RtpOutput:
    """Sends raw RTP on one negotiated sendonly transceiver."""

    def __init__(self, transceiver: RTCRtpTransceiver, kind: str) -> None:
        sender = transceiver.sender
        codecs = transceiver._codecs
        if not codecs:
            raise ValueError(f"{kind} transceiver has no negotiated codec")
        self.kind = kind
        self.codec = codecs[0]
        self.pt = codecs[0].payloadType
        self.ssrc = sender._ssrc
        self.sender = sender
        self.last_rtcp_at = time.monotonic()  # the receiver's reports: silence means it is gone
        self._dtls = sender.transport
        compat.check_live(sender, compat.SENDER_PRIVATE)
        self._sender_dict = sender.__dict__
        self._ext_prefix = b""
        for ext in transceiver._headerExtensions:
            if ext.uri == ABS_SEND_TIME_URI:
                self._ext_prefix = b"\xbe\xde\x00\x01" + bytes(((ext.id << 4) | 2,))
        self._udp = None  # the ICE pair's socket transport and peer address, resolved once
        self._addr = None
        self.packets = 0
        self.octets = 0
        self.dropped = 0
        self.feedback: RtpFeedback | None = None
        self._orig_rtcp = sender._handle_rtcp_packet
        sender._handle_rtcp_packet = self._handle_rtcp  # type: ignore[method-assign]
        sender.replaceTrack(IdleTrack(kind))

    @property
    def ready(self) -> bool:
        return self._dtls.state == "connected" and self._dtls._tx_srtp is not None

    def set_sr_mapping(self, ntp: int, rtp_ts: int) -> None:
        """The (wall clock, RTP timestamp) pair our sender reports will carry."""
        d = self._sender_dict
        d["_RTCRtpSender__ntp_timestamp"] = ntp
        d["_RTCRtpSender__rtp_timestamp"] = rtp_ts
        self._sync_counts()

    def _sync_counts(self) -> None:
        # aiortc's RTCP loop reads these about once a second; not worth a write per packet
        d = self._sender_dict
        d["_RTCRtpSender__packet_count"] = self.packets
        d["_RTCRtpSender__octet_count"] = self.octets

    def _resolve(self) -> bool:
        pair = self._dtls.transport._connection._nominated.get(1)
        if pair is None:
            return False
        self._udp = pair.protocol.transport
        self._addr = pair.remote_addr
        return True

    def send(self, seq: int, ts: int, marker: int, payload: bytes, send_time: bytes | None = None) -> bool:
        """Send one packet now; False if not connected or dropped for backlog.

        `send_time` is the 3-byte abs-send-time, computed once per packet by the caller for
        all its subscribers (computed here if not given).
        """
        dtls = self._dtls
        if dtls._state is not State.CONNECTED:
            return False
        udp = self._udp
        if udp is None or udp.is_closing():
            if not self._resolve():
                return False
            udp = self._udp
        if self.kind == "video" and udp.get_write_buffer_size() > MAX_SOCKET_BACKLOG:
            self.dropped += 1
            return False
        if self._ext_prefix:
            ext = self._ext_prefix + (send_time or abs_send_time())
            data = _HEADER.pack(0x90, (marker << 7) | self.pt, seq & 0xFFFF, ts & 0xFFFFFFFF, self.ssrc) + ext + payload
        else:
            data = _HEADER.pack(0x80, (marker << 7) | self.pt, seq & 0xFFFF, ts & 0xFFFFFFFF, self.ssrc) + payload
        udp.sendto(dtls._tx_srtp.protect(data), self._addr)
        self.packets += 1
        self.octets += len(payload)
        if not self.packets & 63:
            self._sync_counts()
        return True

    async def _handle_rtcp(self, packet) -> None:
        self.last_rtcp_at = time.monotonic()
        fb = self.feedback
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            await self._orig_rtcp(packet)  # keeps aiortc's RTT and remote-inbound stats
            if fb is not None:
                for report in packet.reports:
                    if report.ssrc == self.ssrc:
                        fb.on_receiver_report(
                            report.fraction_lost, report.jitter, report.packets_lost
                        )
        elif fb is None:
            return
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            fb.on_keyframe_request()
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            fb.on_nack(list(packet.lost))
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                return
            if self.ssrc in ssrcs:
                fb.on_remb(bitrate)


OnPacket = Callable[[int, int, int, bytes], None]
