"""What a hall really receives: frames, gaps, freezes and capture-to-hall latency, without decoding.

Frames are completed on the RTP marker bit with no sequence gap inside them.
Frame identity comes from the origin: VP8's picture id is set by the studio's
encoder and passes every relay untouched, so a hall counts exactly which
programme frames it missed, across path switches. Latency uses the sender
reports that relays translate but never invent: the studio maps each RTP
timestamp to its capture clock.
"""

from __future__ import annotations

import time
from collections import deque

from relay.rtp import ntp_to_unix, vp8_is_keyframe_start as _VP8_KEY, vp8_picture_id

LATENCY_BUCKETS = 10_000  # 1 ms buckets; anything above lands in the last
GAP_RECORD_MS = 100.0  # gaps between complete frames longer than this are kept (bounded)
PID_DISCONTINUITY = 300  # a picture-id jump larger than this is a new source, not a loss


class LatencyHistogram:
    """Bounded histogram of latencies in ms, for percentiles over a whole run."""

    def __init__(self) -> None:
        self.counts = [0] * LATENCY_BUCKETS
        self.n = 0

    def add(self, ms: float) -> None:
        self.counts[min(max(int(ms), 0), LATENCY_BUCKETS - 1)] += 1
        self.n += 1

    def percentile(self, q: float) -> float:
        if not self.n:
            return -1.0
        target, acc = q * self.n, 0
        for i, c in enumerate(self.counts):
            acc += c
            if acc >= target:
                return float(i)
        return float(LATENCY_BUCKETS - 1)


class TrackVerifier:
    """Counts one track's packets, losses and (for video) complete frames and freezes."""

    def __init__(self, kind: str, clock_rate: int, freeze_ms: float = 200.0) -> None:
        self.kind = kind
        self.clock_rate = clock_rate
        self.freeze_ms = freeze_ms
        self.packets = 0
        self.bytes = 0
        self.lost = 0
        self.frames = 0
        self.frames_incomplete = 0
        self.frames_missing = 0  # origin frames never completed here (picture-id gaps)
        self.duplicates = 0  # frames received twice (catch-up replay after a path switch)
        self.first_frame_at = 0.0
        self.last_packet_at = 0.0
        self.latency = LatencyHistogram()
        self.recent_latency: deque[float] = deque(maxlen=64)
        self.freezes: deque[float] = deque(maxlen=1000)
        self.gaps: deque[tuple[float, float]] = deque(maxlen=20)
        self.max_gap_ms = 0.0
        self.frame_times: deque[float] = deque(maxlen=120)
        self.byte_times: deque[tuple[float, int]] = deque(maxlen=400)
        # frames expected: picture-id span when the codec has one, else RTP timestamp span
        self._pid_first: int | None = None
        self._pid_ext = 0
        self._pid_last: int | None = None
        self._pid_expected_done = 0
        self._ts_first: int | None = None
        self._ts_last: int | None = None
        self._ts_ext = 0
        self._ts_expected_done = 0
        self._frames_at_segment = 0
        self.frame_deltas: deque[int] = deque(maxlen=64)
        # per packet state
        self._last_seq: int | None = None
        self._late_run = 0
        self._frame_ts: int | None = None
        self._frame_ok = True
        self._frame_done = True
        self._frame_pid: int | None = None
        self._frame_key = False
        self._last_complete_at = 0.0
        self._sr: tuple[float, int] | None = None  # (capture unix time, rtp ts)

    def new_segment(self) -> None:
        """A new path: new sequence and timestamp spaces; picture ids continue (same origin)."""
        self._ts_expected_done += self._ts_segment_expected()
        self._frames_at_segment = self.frames
        self._ts_first = self._ts_last = None
        self._last_seq = None
        self._frame_ts = None
        self._frame_done = True
        self._frame_ok = True
        self._sr = None
        self._late_run = 0

    def after_absence(self) -> None:
        """The receiver left and came back (a participant reloading its page): a new source, and
        the time it was away is neither a freeze nor missing frames."""
        self.new_source()
        self._last_complete_at = 0.0

    def new_source(self) -> None:
        """Another programme (the hall's session changed): a new path and a new picture-id line."""
        self.new_segment()
        if self._pid_first is not None:
            self._pid_expected_done += self._pid_ext - self._pid_first + 1
        self._pid_first = self._pid_last = None

    def on_sr(self, ntp: int, rtp_ts: int) -> None:
        if ntp:
            self._sr = (ntp_to_unix(ntp), rtp_ts)

    def on_packet(self, seq: int, ts: int, marker: int, payload: bytes) -> None:
        now = time.time()
        self.packets += 1
        self.bytes += len(payload)
        self.last_packet_at = now
        self.byte_times.append((now, len(payload)))
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
            self._complete(ts, now, True, None)
            return
        if ts != self._frame_ts:
            if self._frame_ts is not None and not self._frame_done:
                self.frames_incomplete += 1  # the previous frame never saw its marker
            self._frame_ts = ts
            self._frame_done = False
            self._frame_ok = not gapped
            self._frame_pid = vp8_picture_id(payload) if payload[:1] and payload[0] & 0x10 else None
            self._frame_key = self._frame_pid is not None and _VP8_KEY(payload)
            if self._frame_pid is None:
                self._frame_ok = False if gapped else self._frame_ok
        elif gapped:
            self._frame_ok = False
        if marker:
            self._frame_done = True
            self._complete(ts, now, self._frame_ok, self._frame_pid)

    def _complete(self, ts: int, now: float, ok: bool, pid: int | None) -> None:
        if not ok:
            self.frames_incomplete += 1
            return
        new_line = False
        if self.kind == "video" and pid is not None and self._pid_last is not None:
            step = (pid - self._pid_last) & 0x7FFF
            later = self._ts_last is not None and 0 < ((ts - self._ts_last) & 0xFFFFFFFF) < 0x80000000
            if (step == 0 or 0x4000 <= step) and self._frame_key and later:
                new_line = True  # a later keyframe of another encoder: the relay moved us to another layer
            elif step == 0 or 0x4000 <= step:
                self.duplicates += 1  # a frame we already have, replayed by a woken standby
                return
        if self.kind == "video":
            self.frames += 1
            self.frame_times.append(now)
            if not self.first_frame_at:
                self.first_frame_at = now
            if self._last_complete_at:
                gap_ms = (now - self._last_complete_at) * 1000
                if gap_ms > self.freeze_ms:
                    self.freezes.append(now)
                if gap_ms > GAP_RECORD_MS:
                    self.gaps.append((now, round(gap_ms, 1)))
                self.max_gap_ms = max(self.max_gap_ms, gap_ms)
            self._last_complete_at = now
            if pid is not None:
                self._count_pid(pid, new_line)
        if self._ts_first is None:
            self._ts_first = self._ts_ext = ts
        else:
            delta = (ts - (self._ts_last if self._ts_last is not None else ts)) & 0xFFFFFFFF
            if delta < 0x80000000:
                self._ts_ext += delta
                if delta and self.kind == "video":
                    self.frame_deltas.append(delta)
        self._ts_last = ts
        if self._sr is not None:
            capture_unix, sr_ts = self._sr
            diff = (ts - sr_ts) & 0xFFFFFFFF
            if diff >= 0x80000000:
                diff -= 1 << 32
            latency_ms = (now - (capture_unix + diff / self.clock_rate)) * 1000
            if -50 < latency_ms < 60_000:
                self.latency.add(max(latency_ms, 0.0))
                self.recent_latency.append(latency_ms)

    def _count_pid(self, pid: int, new_line: bool = False) -> None:
        if self._pid_last is None:
            self._pid_first = self._pid_ext = pid
        else:
            step = (pid - self._pid_last) & 0x7FFF
            if (step == 0 or step >= 0x4000) and not new_line:
                return  # repeated or older frame
            if step > PID_DISCONTINUITY or new_line:  # another encoder (source or layer switch): new span
                self._pid_expected_done += self._pid_ext - self._pid_first + 1
                self._pid_first = self._pid_ext = pid
            else:
                self.frames_missing += step - 1
                self._pid_ext += step
        self._pid_last = pid

    def frames_expected(self) -> int:
        """Programme frames sent while we were receiving (picture ids, else timestamps)."""
        if self._pid_first is not None:
            return self._pid_expected_done + self._pid_ext - self._pid_first + 1
        return self._ts_expected_done + self._ts_segment_expected()

    def _ts_segment_expected(self) -> int:
        seg_frames = self.frames - self._frames_at_segment
        if self._ts_first is None or not self.frame_deltas:
            return seg_frames
        step = sorted(self.frame_deltas)[len(self.frame_deltas) // 2]
        if step <= 0:
            return seg_frames
        return int(round((self._ts_ext - self._ts_first) / step)) + 1

    def fps(self, window: float = 1.0) -> float:
        now = time.time()
        return float(sum(1 for t in self.frame_times if now - t <= window)) / window

    def bitrate_kbps(self, window: float = 1.0) -> float:
        now = time.time()
        return sum(s for t, s in self.byte_times if now - t <= window) * 8 / 1000 / window

    def freezes_last_minute(self) -> int:
        now = time.time()
        return sum(1 for t in self.freezes if now - t <= 60)
