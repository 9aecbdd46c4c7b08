"""What a hall really receives: frames, gaps, freezes and capture-to-hall latency, without decoding.

Frames are completed on the RTP marker bit with no sequence gap inside them.
Latency uses the sender reports that every relay passes through unchanged: the
studio maps each RTP timestamp to its capture clock, so a hall knows when each
frame was captured.
"""

from __future__ import annotations

import time
from collections import deque

from relay.rtp import ntp_to_unix

LATENCY_BUCKETS = 10_000  # 1 ms buckets; anything above lands in the last


class LatencyHistogram:
    """Bounded histogram of latencies in ms, for percentiles over a whole run."""

    def __init__(self) -> None:
        self.counts = [0] * LATENCY_BUCKETS
        self.n = 0

    def add(self, ms: float) -> None:
        i = min(max(int(ms), 0), LATENCY_BUCKETS - 1)
        self.counts[i] += 1
        self.n += 1

    def percentile(self, q: float) -> float:
        if not self.n:
            return -1.0
        target = q * self.n
        acc = 0
        for i, c in enumerate(self.counts):
            acc += c
            if acc >= target:
                return float(i)
        return float(LATENCY_BUCKETS - 1)


class TrackVerifier:
    """Counts one track's packets, losses and (for video) complete frames."""

    def __init__(self, kind: str, clock_rate: int, freeze_ms: float = 200.0) -> None:
        self.kind = kind
        self.clock_rate = clock_rate
        self.freeze_ms = freeze_ms
        self.packets = 0
        self.bytes = 0
        self.lost = 0
        self.frames = 0
        self.frames_incomplete = 0
        self.first_frame_at = 0.0
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.frame_deltas: deque[int] = deque(maxlen=64)
        self.latency = LatencyHistogram()
        self.recent_latency: deque[float] = deque(maxlen=64)
        self.freezes: deque[float] = deque(maxlen=1000)  # times of freezes
        self.frame_times: deque[float] = deque(maxlen=120)
        self.byte_times: deque[tuple[float, int]] = deque(maxlen=400)
        self.last_packet_at = 0.0
        self._ext_ts = 0  # unwrapped timestamp of the last frame
        self._last_seq: int | None = None
        self._frame_ts: int | None = None
        self._frame_ok = True
        self._last_complete_at = 0.0
        self._sr: tuple[float, int] | None = None  # (capture unix time, rtp ts)
        self._expected_done = 0  # frames expected in finished segments
        self._frames_at_segment = 0
        self._late_run = 0

    def new_segment(self) -> None:
        """A new subscription starts: new sequence and timestamp spaces, same cumulative counts."""
        self._expected_done += self._segment_expected()
        self._frames_at_segment = self.frames
        self.first_ts = None
        self.last_ts = None
        self._last_seq = None
        self._frame_ts = None
        self._frame_done = True
        self._frame_ok = True
        self._sr = None
        self._late_run = 0

    def on_sr(self, ntp: int, rtp_ts: int) -> None:
        if ntp:
            self._sr = (ntp_to_unix(ntp), rtp_ts)

    def on_packet(self, seq: int, ts: int, marker: int, size: int) -> None:
        now = time.time()
        self.packets += 1
        self.bytes += size
        self.last_packet_at = now
        self.byte_times.append((now, size))
        gapped = False
        if self._last_seq is not None:
            gap = (seq - self._last_seq) & 0xFFFF
            if gap == 0 or gap >= 0x8000:
                # duplicate or late retransmission; a long run of them means the sender jumped
                self._late_run += 1
                if self._late_run < 50:
                    return
                gap = 1
            self._late_run = 0
            if gap > 1:
                self.lost += gap - 1
                gapped = True
        self._last_seq = seq
        if self.kind != "video":
            self._complete(ts, now, True)
            return
        if ts != self._frame_ts:
            if self._frame_ts is not None and not self._frame_done:
                self.frames_incomplete += 1  # the previous frame never saw its marker
            self._frame_ts = ts
            self._frame_done = False
            self._frame_ok = not gapped
        elif gapped:
            self._frame_ok = False
        if marker:
            self._frame_done = True
            self._complete(ts, now, self._frame_ok)

    _frame_done = True

    def _complete(self, ts: int, now: float, ok: bool) -> None:
        if not ok:
            self.frames_incomplete += 1
            return
        if self.kind == "video":
            self.frames += 1
            self.frame_times.append(now)
            if not self.first_frame_at:
                self.first_frame_at = now
            if self._last_complete_at and (now - self._last_complete_at) * 1000 > self.freeze_ms:
                self.freezes.append(now)
            self._last_complete_at = now
        if self.first_ts is None:
            self.first_ts = ts
            self._ext_ts = ts
        else:
            delta = (ts - (self.last_ts or ts)) & 0xFFFFFFFF
            if delta < 0x80000000:
                self._ext_ts += delta
                if delta and self.kind == "video":
                    self.frame_deltas.append(delta)
        self.last_ts = ts
        if self._sr is not None:
            capture_unix, sr_ts = self._sr
            diff = (ts - sr_ts) & 0xFFFFFFFF
            if diff >= 0x80000000:
                diff -= 1 << 32
            latency_ms = (now - (capture_unix + diff / self.clock_rate)) * 1000
            if -50 < latency_ms < 60_000:
                self.latency.add(max(latency_ms, 0.0))
                self.recent_latency.append(latency_ms)

    def frames_expected(self) -> int:
        """Frames the studio sent while we were subscribed (from each subscription's ts span)."""
        return self._expected_done + self._segment_expected()

    def _segment_expected(self) -> int:
        seg_frames = self.frames - self._frames_at_segment
        if self.first_ts is None or not self.frame_deltas:
            return seg_frames
        step = sorted(self.frame_deltas)[len(self.frame_deltas) // 2]
        if step <= 0:
            return seg_frames
        return int(round((self._ext_ts - self.first_ts) / step)) + 1

    def fps(self, window: float = 1.0) -> float:
        now = time.time()
        return float(sum(1 for t in self.frame_times if now - t <= window)) / window

    def bitrate_kbps(self, window: float = 1.0) -> float:
        now = time.time()
        return sum(s for t, s in self.byte_times if now - t <= window) * 8 / 1000 / window

    def freezes_last_minute(self) -> int:
        now = time.time()
        return sum(1 for t in self.freezes if now - t <= 60)
