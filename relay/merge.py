"""Hitless merge: two paths carrying the same encoded programme become one stream, packet by packet.

Every relay forwards the origin's encoded payloads byte for byte, but each gives its
subscriber its own sequence and timestamp lines (a random start, re-anchored on
upstream changes). The merge identifies a packet by its payload, which the origin
fixed, not by when or on which path it arrived:

- the first path ever heard defines the output's numbering;
- another path's offset to that numbering is learned from packets both paths carried
  (payloads seen once in the recent window; two in a row must agree on the offset);
- a packet whose translated sequence number was already sent is a duplicate and dropped,
  whichever path brought it first wins; so when one path dies the other has already been
  delivering every packet, and the output loses nothing (SMPTE 2022-7, for WebRTC relays);
- a path whose offset no longer fits (its relay re-anchored) is relearned the same way;
  until then its packets wait for the other path, or, when no other path is live, it
  continues the output line itself, as a relay does on an upstream change.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

WINDOW = 4096  # packets remembered for duplicate detection and offset learning (~10 s of programme)
SANE_SEQ_STEP = 1000  # a translated sequence number this far from the output's head means a stale offset
LIVE_S = 0.3  # a path that brought a packet within this long counts as live


def _seq_diff(a: int, b: int) -> int:
    d = (a - b) & 0xFFFF
    return d - 0x10000 if d >= 0x8000 else d


class _Path:
    __slots__ = ("dseq", "dts", "candidate", "last_at", "last_seq", "last_ts", "forwarded", "duplicates", "unplaced")

    def __init__(self) -> None:
        self.dseq: int | None = None  # output seq = path seq + dseq
        self.dts = 0
        self.candidate: tuple[int, int] | None = None  # an offset seen once, placed when seen again
        self.last_at = 0.0
        self.last_seq = 0
        self.last_ts = 0
        self.forwarded = 0  # packets this path brought first
        self.duplicates = 0  # packets the other path had already brought
        self.unplaced = 0  # packets dropped while this path's offset was unknown


class HitlessMerge:
    """Merge the packets of one kind (audio or video) arriving on several paths into one sink."""

    def __init__(self, on_packet: Callable, on_sr: Callable | None, clock_rate: int) -> None:
        self.on_packet = on_packet
        self.on_sr = on_sr
        self.clock_rate = clock_rate
        self.paths: dict[object, _Path] = {}
        self._sent: dict[int, int] = {}  # output seq -> payload hash
        self._by_hash: dict[int, tuple[int, int] | None] = {}  # payload hash -> (out seq, out ts); None: ambiguous
        self._order: deque[tuple[int, int]] = deque()  # (out seq, hash), oldest first
        self.head_seq: int | None = None
        self.head_ts = 0
        self.head_at = 0.0
        self.relearned = 0
        self.reanchored = 0

    def forget(self, path: object) -> None:
        self.paths.pop(path, None)

    def push(self, path: object, packet) -> None:
        """One packet from `path` (an aiortc RtpPacket; its seq and timestamp are rewritten in place)."""
        now = time.monotonic()
        p = self.paths.get(path)
        if p is None:
            p = self.paths[path] = _Path()
        p.last_at = now
        seq, ts = packet.sequence_number, packet.timestamp
        p.last_seq, p.last_ts = seq, ts
        h = hash(packet.payload)
        if p.dseq is not None:
            out = (seq + p.dseq) & 0xFFFF
            known = self._sent.get(out)
            if known == h:
                p.duplicates += 1
                return
            if known is None and abs(_seq_diff(out, self.head_seq)) < SANE_SEQ_STEP:
                self._emit(p, packet, out, (ts + p.dts) & 0xFFFFFFFF, h, now)
                return
            p.dseq = None  # the relay re-anchored this path: its numbering moved
            self.relearned += 1
        # offset unknown: learn it from a packet the output already carries
        match = self._by_hash.get(h)
        if match is not None:
            # two packets must agree on the offset: a payload can repeat (Opus silence) and its
            # one copy still in the window may be another instant of the programme
            cand = ((match[0] - seq) & 0xFFFF, (match[1] - ts) & 0xFFFFFFFF)
            if p.candidate == cand:
                p.dseq, p.dts = cand
                p.candidate = None
            else:
                p.candidate = cand
            p.duplicates += 1
            return
        if self.head_seq is None:
            p.dseq, p.dts = 0, 0  # the first path defines the output's numbering
            self._emit(p, packet, seq, ts, h, now)
            return
        if not any(q is not p and q.dseq is not None and now - q.last_at < LIVE_S for q in self.paths.values()):
            # nobody else is carrying the programme: continue the output line from here
            gap = max(int((now - self.head_at) * self.clock_rate), 1)
            p.dseq = (self.head_seq + 1 - seq) & 0xFFFF
            p.dts = (self.head_ts + gap - ts) & 0xFFFFFFFF
            self.reanchored += 1
            self._emit(p, packet, (seq + p.dseq) & 0xFFFF, (ts + p.dts) & 0xFFFFFFFF, h, now)
            return
        p.unplaced += 1  # the live path brings it (or already did); wait to learn this one's offset

    def _emit(self, p: _Path, packet, out_seq: int, out_ts: int, h: int, now: float) -> None:
        packet.sequence_number = out_seq
        packet.timestamp = out_ts
        self._sent[out_seq] = h
        self._by_hash[h] = None if h in self._by_hash else (out_seq, out_ts)
        self._order.append((out_seq, h))
        if len(self._order) > WINDOW:
            old_seq, old_h = self._order.popleft()
            if self._sent.get(old_seq) == old_h:
                del self._sent[old_seq]
            self._by_hash.pop(old_h, None)
        if self.head_seq is None or _seq_diff(out_seq, self.head_seq) > 0:
            self.head_seq, self.head_ts, self.head_at = out_seq, out_ts, now
        p.forwarded += 1
        self.on_packet(packet)

    def sender_report(self, path: object, ntp: int, rtp_ts: int) -> None:
        """A path's sender report, in the output's timestamp line (dropped until its offset is known)."""
        p = self.paths.get(path)
        if self.on_sr is not None and p is not None and p.dseq is not None:
            self.on_sr(ntp, (rtp_ts + p.dts) & 0xFFFFFFFF)

    def stats(self) -> dict:
        return {"relearned": self.relearned, "reanchored": self.reanchored,
                "paths": [{"forwarded": p.forwarded, "duplicates": p.duplicates, "unplaced": p.unplaced,
                           "placed": p.dseq is not None} for p in self.paths.values()]}
