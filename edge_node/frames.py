"""VP8 frames out of RTP packets at the hall (RFC 7741), for the decoder and the recorder.

A frame is complete when its marker arrives with no sequence gap inside it. Frames are
known by the encoder's picture id, which every relay passes through: after a path switch
the new path may replay frames already delivered (skipped), and after a missing frame
the next ones refer to it, so nothing is delivered until the next keyframe.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from relay.rtp import vp8_descriptor_length, vp8_picture_id

OnFrame = Callable[[bytes, int, bool], None]  # (VP8 frame, RTP timestamp, keyframe)


REORDER_WAIT_S = 0.3  # a missing packet is waited for this long (a NACK's retransmission)
REORDER_SPAN = 1024  # packets ahead of the next expected one that may be held
NEED_KEY_EVERY_S = 1.0  # while frames are skipped for want of a keyframe, ask again this often


class Vp8Frames:
    def __init__(self, on_frame: OnFrame, on_need_key: Callable[[], None] | None = None) -> None:
        self.on_frame = on_frame
        self.on_need_key = on_need_key  # asks the sender for a keyframe (a PLI), rate-limited
        self._asked_at = 0.0
        self._buf: dict[int, tuple[int, int, bytes, float]] = {}  # seq -> (ts, marker, payload, arrival)
        self._next_seq: int | None = None  # the first packet not yet assembled
        self._last_pid: int | None = None
        self._last_ts: int | None = None  # RTP timestamp of the last frame delivered
        self._need_key = True
        self.frames = 0
        self.skipped = 0  # incomplete, replayed, or waiting for a keyframe

    def new_segment(self) -> None:
        """A path switch: a new sequence line (frames continue by picture id)."""
        self._next_seq = None
        self._buf.clear()

    def new_source(self) -> None:
        """Another programme: its picture ids start a new line, and decoding needs its keyframe."""
        self.new_segment()
        self._last_pid = None
        self._last_ts = None
        self._need_key = True

    def need_keyframe(self) -> None:
        self._need_key = True

    def packet(self, seq: int, ts: int, marker: int, payload: bytes) -> None:
        """Take one RTP packet, in any order: a frame is assembled once all its packets are here.

        A missing packet is waited for up to REORDER_WAIT_S (its retransmission after a NACK),
        then the frame is given up and decoding waits for a keyframe.
        """
        now = time.monotonic()
        if self._next_seq is None:
            self._next_seq = seq
        d = (seq - self._next_seq) & 0xFFFF
        if d >= 0x8000:
            return  # older than what was assembled: late or duplicate
        if d > REORDER_SPAN:
            self._give_up()  # far ahead: a new line (a path switch the caller did not announce)
            self._next_seq = seq
        self._buf[seq] = (ts, marker, payload, now)
        self._drain(now)

    def _drain(self, now: float) -> None:
        buf = self._buf
        while buf and self._next_seq is not None:
            seq = self._next_seq
            first = buf.get(seq)
            if first is None or not self._starts_frame(first[2]):
                if first is not None or now - min(e[3] for e in buf.values()) > REORDER_WAIT_S:
                    self._skip_to_next_frame()  # not a frame's start, or its packets are lost
                    continue
                return
            parts, s, end = [], seq, None
            while True:
                e = buf.get(s)
                if e is None or e[0] != first[0]:
                    break
                parts.append(e[2])
                if e[1]:
                    end = s
                    break
                s = (s + 1) & 0xFFFF
            if end is None:
                if now - first[3] > REORDER_WAIT_S:
                    self._skip_to_next_frame()
                    continue
                return  # a packet of this frame is still on its way
            for i in range(((end - seq) & 0xFFFF) + 1):
                buf.pop((seq + i) & 0xFFFF, None)
            self._next_seq = (end + 1) & 0xFFFF
            self._assembled(parts, first[0])

    @staticmethod
    def _starts_frame(payload: bytes) -> bool:
        return bool(payload) and bool(payload[0] & 0x10) and not payload[0] & 0x07

    def _skip_to_next_frame(self) -> None:
        """Give up the frame at the head: drop up to the next packet that starts a frame."""
        self._need_key = True
        self.skipped += 1
        self._ask()
        buf = self._buf
        seq = self._next_seq
        head_ts = buf[seq][0] if seq in buf else None
        for _ in range(REORDER_SPAN + 1):
            buf.pop(seq, None)
            seq = (seq + 1) & 0xFFFF
            e = buf.get(seq)
            if e is not None and self._starts_frame(e[2]) and e[0] != head_ts:
                break
            if not buf:
                break
        else:
            buf.clear()  # nothing held starts a frame: start afresh with the next packet
            seq = None
        self._next_seq = seq

    def _give_up(self) -> None:
        if self._buf:
            self._need_key = True
        self._buf.clear()

    def _assembled(self, parts: list[bytes], ts: int) -> None:
        pid = vp8_picture_id(parts[0])
        chunks = []
        for payload in parts:
            pos = vp8_descriptor_length(payload)
            if pos < 0:
                self._need_key = True
                self.skipped += 1
                return
            chunks.append(payload[pos:])
        data = b"".join(chunks)
        keyframe = bool(data) and not data[0] & 0x01
        if not self._in_order(pid, ts, keyframe):
            self.skipped += 1
            return
        if self._need_key and not keyframe:
            self.skipped += 1
            self._ask()
            return
        self._need_key = False
        self.frames += 1
        self.on_frame(data, ts, keyframe)

    def _ask(self) -> None:
        now = time.monotonic()
        if self.on_need_key is not None and now - self._asked_at > NEED_KEY_EVERY_S:
            self._asked_at = now
            self.on_need_key()

    def _in_order(self, pid: int | None, ts: int, keyframe: bool) -> bool:
        last_ts, self._last_ts = self._last_ts, ts
        if pid is None or self._last_pid is None:
            self._last_pid = pid
            return True
        d = (pid - self._last_pid) & 0x7FFF
        if (d == 0 or d >= 0x4000) and keyframe and last_ts is not None and 0 < ((ts - last_ts) & 0xFFFFFFFF) < 0x80000000:
            # a keyframe later than the last frame, from another picture-id line: the relay moved
            # this subscriber to another layer of the ladder (each layer has its own encoder)
            self._last_pid = pid
            return True
        if d == 0 or d >= 0x4000:
            self._last_ts = last_ts
            return False  # already delivered (a replay after a path switch)
        if d > 1:
            self._need_key = True  # a frame is missing: wait for a keyframe
        self._last_pid = pid
        return True


def vp8_keyframe_size(frame: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 keyframe's header (RFC 6386 9.1), or None."""
    if len(frame) < 10 or frame[0] & 0x01 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(frame[6:8], "little") & 0x3FFF, int.from_bytes(frame[8:10], "little") & 0x3FFF
