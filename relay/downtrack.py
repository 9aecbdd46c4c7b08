"""One subscriber's copy of an UpTrack: keyframe gating, seq/timestamp rewrite, NACK, SR."""

from __future__ import annotations

import random
import time

from .rtpout import RtpFeedback, RtpOutput
from .uptrack import UpTrack

KEYFRAME_RETRY_S = 1.0  # while waiting for a keyframe, re-ask upstream this often
NACK_MIN_INTERVAL_S = 0.1  # a packet is retransmitted again only after this long
NACK_MAX_TRIES = 3
RTX_SHARE = 0.25  # retransmissions per second at most this share of the packets sent in the last one
RTX_MIN_PER_S = 10
CATCH_UP_S = 0.6  # a woken standby replays this much recent video instead of waiting for a keyframe


class DownTrack(RtpFeedback):
    """Forwards an UpTrack's packets to one RtpOutput, continuous across upstream changes."""

    def __init__(self, up: UpTrack, output: RtpOutput) -> None:
        self.up = up
        self.output = output
        self.started = False
        self.paused = False  # a warm standby path: connected, forwarding nothing until resumed
        self.continuing = False  # re-anchoring after an upstream change: our decoder has the stream
        self.seq_offset = 0
        self.ts_offset = 0
        self.last_seq = random.randrange(0, 32768)  # out seq of the last packet sent
        self.last_ts = random.randrange(0, 1 << 32)
        self.sent_any = False
        self._previous_arrival = 0.0
        self._paused_at = 0.0
        self.retransmits = 0
        self.nacks_ignored = 0  # repeated requests for a packet just retransmitted (or tried enough)
        self._first_out_seq = 0  # the first packet sent since the last anchor
        self._rtx_window_at = 0.0
        self._rtx_window_packets = 0
        self._rtx_budget = RTX_MIN_PER_S
        self._nacked: dict[int, tuple[float, int]] = {}  # out seq -> (last retransmission, tries)
        self.caught_up = 0  # packets replayed when a standby was woken
        self.keyframe_requests = 0
        self.fraction_lost = 0
        self.jitter = 0
        self.remb_bps = 0
        self._waiting_since = time.monotonic()
        self.reports = 0  # receiver reports seen (a new one is a fresh loss figure)
        self.pending = None  # the UpTrack (another layer) this moves to at its next keyframe
        self.suspended = False  # audio-only: this video track sends nothing until switched again
        output.feedback = self

    def write(self, seq: int, ts: int, marker: int, payload: bytes, keyframe: bool, send_time: bytes | None = None) -> None:
        if self.paused:
            return
        if not self.started:
            if not keyframe or not self.output.ready:
                now = time.monotonic()
                if now - self._waiting_since > KEYFRAME_RETRY_S:
                    self._waiting_since = now
                    self.up.request_keyframe()
                return
            self._anchor(seq, ts)
        out_seq = (seq + self.seq_offset) & 0xFFFF
        out_ts = (ts + self.ts_offset) & 0xFFFFFFFF
        if self.output.send(out_seq, out_ts, marker, payload, send_time):
            self.last_seq = out_seq
            self.last_ts = out_ts
            self.sent_any = True

    def _anchor(self, seq: int, ts: int) -> None:
        """Start (or restart) here: continue our own seq and timestamp lines without a jump back."""
        # The wall time since the last packet we sent went out is about the time since the
        # upstream's previous packet (our sends follow its arrivals), measured once per packet.
        now = time.monotonic()
        last = self._previous_arrival
        gap = int((now - last) * self.up.clock_rate) if (self.sent_any and last) else 0
        self.seq_offset = (self.last_seq + 1 - seq) & 0xFFFF
        self._first_out_seq = (self.last_seq + 1) & 0xFFFF
        self.ts_offset = (self.last_ts + max(gap, 1) - ts) & 0xFFFFFFFF
        self.started = True
        self.continuing = False
        self.up.waiting -= 1
        if self.up.sr is not None:
            self.on_upstream_sr(*self.up.sr)

    def reanchor(self) -> None:
        """The upstream changed: wait for its next keyframe and keep our lines continuous."""
        self._previous_arrival = self.up.last_packet_at
        if self.started:
            self.started = False
            self.continuing = True
            self.up.waiting += 1
            self._waiting_since = time.monotonic()

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self._paused_at = time.monotonic()

    def resume(self, catch_up_s: float = CATCH_UP_S) -> None:
        """Start forwarding (a standby path becomes active).

        Video catches up instead of waiting for a keyframe: every relay carries the origin's
        identical encoded frames, so the subscriber's decoder, fed until a moment ago by its
        other path, continues from the frames it missed. We replay the last `catch_up_s` of
        them (the subscriber drops those it already has, by the encoder's picture id) and go
        on live. Without enough history we fall back to the next keyframe. Sequence numbers
        continue from the last packet sent before any pause.
        """
        if not self.paused:
            return
        self.paused = False
        if self.started:
            self.started = False
            self.up.waiting += 1
            self._previous_arrival = self._paused_at
        self._waiting_since = time.monotonic()
        if self.up.kind != "video":
            return  # audio starts on the next packet
        replay = self.up.recent(time.monotonic() - catch_up_s) if catch_up_s > 0 else []
        if not replay or not self.output.ready:
            self.up.request_keyframe()
            return
        self._anchor(replay[0][0], replay[0][1])
        for seq, ts, marker, payload, _ in replay:
            out_seq = (seq + self.seq_offset) & 0xFFFF
            out_ts = (ts + self.ts_offset) & 0xFFFFFFFF
            if self.output.send(out_seq, out_ts, marker, payload):
                self.last_seq, self.last_ts = out_seq, out_ts
                self.sent_any = True
        self.caught_up += len(replay)

    # -- layers ----------------------------------------------------------------------------

    def switch_to(self, up: UpTrack) -> None:
        """Move to another UpTrack (another layer of the stream) at its next keyframe.

        Until that keyframe passes, the current layer keeps flowing; then sequence numbers and
        timestamps continue from the last packet sent, so the subscriber sees one stream.
        """
        if up is self.up and not self.suspended:
            self.cancel_switch()
            return
        if self.pending is up:
            return
        self.cancel_switch()
        self.pending = up
        up.switchers.append(self)
        up.request_keyframe()

    def cancel_switch(self) -> None:
        if self.pending is not None:
            if self in self.pending.switchers:
                self.pending.switchers.remove(self)
            self.pending = None

    def land(self, up: UpTrack) -> None:
        """Called by `up` on the first packet of its keyframe: leave the old layer, wait there."""
        old = self.up
        self.pending = None
        old.detach(self)
        if not self.suspended:
            self._previous_arrival = old.last_packet_at
        self.suspended = False
        self.up = up
        self.started = False
        self.continuing = False
        up.downtracks.append(self)
        up.waiting += 1  # the anchor on this keyframe takes it back

    def suspend(self) -> None:
        """Audio-only: stop sending video (the subscriber's audio track is untouched)."""
        self.cancel_switch()
        if self.suspended:
            return
        self._previous_arrival = self.up.last_packet_at
        self.up.detach(self)
        self.started = False
        self.suspended = True

    def on_upstream_sr(self, ntp: int, rtp_ts: int) -> None:
        if self.started:
            self.output.set_sr_mapping(ntp, (rtp_ts + self.ts_offset) & 0xFFFFFFFF)

    # -- feedback from the subscriber ----------------------------------------------------

    def on_keyframe_request(self) -> None:
        if self.paused:
            # A standby's subscriber wakes it with a PLI: one packet on a path already up,
            # faster than any HTTP call when its primary relay has just died.
            self.resume()
            return
        self.keyframe_requests += 1
        self.up.request_keyframe()

    def on_nack(self, seqs: list[int]) -> None:
        """Retransmit what the subscriber lost; each packet at most NACK_MAX_TRIES times and not
        again within NACK_MIN_INTERVAL_S (receivers repeat their whole missing list on every
        NACK: answering each one would multiply the traffic on a link already losing packets)."""
        if not self.started:
            return
        now = time.monotonic()
        sent = self._nacked
        if len(sent) > 4096:
            sent.clear()
        if now - self._rtx_window_at >= 1.0:
            # retransmissions may add at most RTX_SHARE of what was sent in the last second: on a
            # congested link they would otherwise add to the congestion that lost the packets
            self._rtx_budget = max(RTX_MIN_PER_S, int(RTX_SHARE * (self.output.packets - self._rtx_window_packets)))
            self._rtx_window_at, self._rtx_window_packets = now, self.output.packets
        first = self._first_out_seq
        for out_seq in seqs:
            if (out_seq - first) & 0xFFFF >= 0x8000:
                continue  # sent before the last re-anchor (another layer or upstream): not in our history
            last = sent.get(out_seq)
            if last is not None and (last[1] >= NACK_MAX_TRIES or now - last[0] < NACK_MIN_INTERVAL_S):
                self.nacks_ignored += 1
                continue
            if self._rtx_budget <= 0:
                self.nacks_ignored += 1
                continue
            entry = self.up.lookup((out_seq - self.seq_offset) & 0xFFFF)
            if entry is not None:
                self._rtx_budget -= 1
                _, ts, marker, payload, _ = entry
                if self.output.send(out_seq, (ts + self.ts_offset) & 0xFFFFFFFF, marker, payload):
                    self.retransmits += 1
                    sent[out_seq] = (now, last[1] + 1 if last else 1)

    def on_receiver_report(self, fraction_lost: int, jitter: int, packets_lost: int) -> None:
        self.reports += 1
        self.fraction_lost = fraction_lost
        self.jitter = jitter

    def on_remb(self, bitrate: int) -> None:
        self.remb_bps = bitrate

    def close(self) -> None:
        self.cancel_switch()
        self.up.detach(self)
