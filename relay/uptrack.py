"""One incoming encoded track (audio or video) of a stream, fanned out to its DownTracks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from .rtp import abs_send_time, keyframe_detector, vp8_picture_id

HISTORY_SIZE = 1024  # packets kept for retransmission to subscribers (a power of two)
KEYFRAME_MIN_INTERVAL_S = 0.05  # never more than one upstream keyframe request per this
KEYFRAME_PENDING_S = 0.5  # a request not answered by a keyframe within this is sent again


class UpTrack:
    """Receives packets of one kind from whoever publishes the stream and forwards them."""

    def __init__(
        self,
        kind: str,
        codec: RTCRtpCodecParameters,
        keyframe_min_interval_s: float = KEYFRAME_MIN_INTERVAL_S,
    ) -> None:
        self.kind = kind
        self.codec = codec
        self.clock_rate = codec.clockRate
        self._is_keyframe = keyframe_detector(codec.mimeType)
        # (seq, ts, marker, payload, arrival monotonic time), indexed by seq
        self.history: list[tuple[int, int, int, bytes, float] | None] = [None] * HISTORY_SIZE
        self.last_seq: int | None = None
        self.downtracks: list = []
        self.waiting = 0  # downtracks waiting for a keyframe
        self.switchers: list = []  # downtracks of another layer moving here at our next keyframe
        self.sr: tuple[int, int] | None = None  # upstream (ntp, rtp) mapping
        self.packets_in = 0
        self.last_packet_at = 0.0
        self.keyframe_requests_up = 0
        self._requester: Callable[[], Awaitable[None]] | None = None
        self._kf_min_interval = keyframe_min_interval_s
        self._kf_last = 0.0
        self._kf_timer: asyncio.TimerHandle | None = None
        self._kf_pending = False  # a request is out and its keyframe has not passed yet
        self._generation = 0  # increases when the upstream changes (new seq/ts space)
        self._pid_of = vp8_picture_id if codec.mimeType.lower() == "video/vp8" else None
        self._last_pid: int | None = None  # picture id of the last frame forwarded
        self._joining = False  # after continue_upstream(): looking for the next frame to forward
        self._dropping = False  # inside a frame already forwarded

    def set_keyframe_requester(self, requester: Callable[[], Awaitable[None]] | None) -> None:
        self._requester = requester

    def continue_upstream(self) -> None:
        """The same encoded stream now arrives by another path (another relay of the same origin).

        Frames are identified by the encoder's picture id (VP8): frames already forwarded are
        dropped, and subscribers re-anchor on the very next frame, keyframe or not, since their
        decoders hold every reference frame. If the new path skips a frame, or the codec has
        no picture id, this falls back to new_upstream() (wait for a keyframe).
        """
        if self.kind == "video" and (self._pid_of is None or self._last_pid is None):
            self.new_upstream()
            return
        self._generation += 1
        self.history = [None] * HISTORY_SIZE
        self.last_seq = None
        self.sr = None
        self._kf_pending = False
        self._kf_last = 0.0
        for dt in self.downtracks:
            dt.reanchor()
        self._joining = self.kind == "video"
        self._dropping = False

    def new_upstream(self) -> None:
        """The input now comes from another upstream: every downtrack re-anchors at a keyframe."""
        self._joining = False
        self._dropping = False
        self._generation += 1
        self.history = [None] * HISTORY_SIZE
        self.last_seq = None
        self.sr = None
        self._kf_pending = False  # a request to the old upstream will not be answered here
        self._kf_last = 0.0
        for dt in self.downtracks:
            dt.reanchor()
        if self.waiting:
            self.request_keyframe()

    def on_packet(self, packet: RtpPacket) -> None:
        seq = packet.sequence_number
        ts = packet.timestamp
        marker = packet.marker
        payload = packet.payload
        self.packets_in += 1
        now = self.last_packet_at = time.monotonic()
        self.history[seq & (HISTORY_SIZE - 1)] = (seq, ts, marker, payload, now)
        self.last_seq = seq
        if self._pid_of is not None and payload and payload[0] & 0x10 and not payload[0] & 0x07:
            pid = self._pid_of(payload)  # first packet of a frame
            if self._joining and pid is not None and self._last_pid is not None:
                step = (pid - self._last_pid) & 0x7FFF
                if step == 0 or step >= 0x4000:
                    self._dropping = True  # a frame we forwarded already (the new path's catch-up)
                    return
                self._dropping = False
                self._joining = False
                if step == 1:
                    self._last_pid = pid
                    send_time = abs_send_time()
                    is_kf = self._is_keyframe(payload) if self._is_keyframe is not None else True
                    for dt in self.downtracks:
                        # those that were receiving re-anchor right here (their decoders have
                        # frame pid-1); a subscriber that never started still needs a keyframe
                        dt.write(seq, ts, marker, payload, is_kf or dt.continuing, send_time)
                    return
                self.new_upstream()  # the new path skipped frames: only a keyframe will do
            elif self._joining:
                self.new_upstream()  # no frame identity to continue by
            if pid is not None:
                self._last_pid = pid
        elif self._dropping:
            return
        elif self._joining and self.kind == "video":
            return  # not yet at a frame boundary on the new path
        if (self.waiting or self._kf_pending or self.switchers) and self._is_keyframe is not None:
            keyframe = self._is_keyframe(payload)
            if keyframe:
                self._kf_pending = False
                if self.switchers:
                    for dt in self.switchers:
                        dt.land(self)  # joins our downtracks, anchors on this very packet below
                    self.switchers.clear()
        else:
            keyframe = True
        send_time = abs_send_time()  # once per packet, for every subscriber
        for dt in self.downtracks:
            dt.write(seq, ts, marker, payload, keyframe, send_time)

    def on_sr(self, ntp: int, rtp_ts: int) -> None:
        self.sr = (ntp, rtp_ts)
        for dt in self.downtracks:
            dt.on_upstream_sr(ntp, rtp_ts)

    def recent(self, since: float) -> list[tuple[int, int, int, bytes, float]]:
        """Packets that arrived at or after `since`, oldest first, starting on a frame boundary.

        Empty if the history does not reach back that far without a hole (then a standby
        must wait for a keyframe instead of catching up).
        """
        if self.last_seq is None:
            return []
        out = []
        seq = self.last_seq
        for _ in range(HISTORY_SIZE):
            entry = self.history[seq & (HISTORY_SIZE - 1)]
            if entry is None or entry[0] != seq:
                return []  # a hole: cannot replay contiguously
            out.append(entry)
            if entry[4] < since:
                break
            seq = (seq - 1) & 0xFFFF
        else:
            return []
        out.reverse()
        # start right after a frame's last packet (marker), so the replay begins with a whole frame
        for i, entry in enumerate(out[:-1]):
            if entry[2]:
                return out[i + 1 :]
        return []

    def lookup(self, seq: int) -> tuple[int, int, int, bytes, float] | None:
        entry = self.history[seq & (HISTORY_SIZE - 1)]
        if entry is not None and entry[0] == seq:
            return entry
        return None

    def attach(self, downtrack) -> None:
        self.downtracks.append(downtrack)
        if not downtrack.started:
            self.waiting += 1
        if not downtrack.paused:
            self.request_keyframe()

    def detach(self, downtrack) -> None:
        if downtrack in self.downtracks:
            self.downtracks.remove(downtrack)
            if not downtrack.started:
                self.waiting -= 1

    def request_keyframe(self) -> None:
        """Ask upstream for a keyframe; requests made while one is outstanding ride on it.

        Every subscriber waiting when the keyframe passes starts on it, so only one request
        is ever outstanding; it is re-sent if no keyframe came within KEYFRAME_PENDING_S.
        """
        if self.kind != "video" or self._requester is None:
            return
        now = time.monotonic()
        if self._kf_pending and now - self._kf_last < KEYFRAME_PENDING_S:
            return
        wait = self._kf_last + self._kf_min_interval - now
        if wait <= 0:
            self._fire_keyframe_request()
        elif self._kf_timer is None:
            loop = asyncio.get_running_loop()
            self._kf_timer = loop.call_later(wait, self._fire_keyframe_request)

    def _fire_keyframe_request(self) -> None:
        self._kf_timer = None
        self._kf_last = time.monotonic()
        self._kf_pending = True
        if self._requester is not None:
            self.keyframe_requests_up += 1
            asyncio.ensure_future(self._requester())

    def close(self) -> None:
        for dt in list(self.switchers):
            dt.cancel_switch()
        if self._kf_timer is not None:
            self._kf_timer.cancel()
            self._kf_timer = None
        self._requester = None
