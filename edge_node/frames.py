"""VP8 frames out of RTP packets at the hall (RFC 7741), for the decoder and the recorder.

A frame is complete when its marker arrives with no sequence gap inside it. Frames are
known by the encoder's picture id, which every relay passes through: after a path switch
the new path may replay frames already delivered (skipped), and after a missing frame
the next ones refer to it, so nothing is delivered until the next keyframe.
"""

from __future__ import annotations

from collections.abc import Callable

from relay.rtp import vp8_descriptor_length, vp8_picture_id

OnFrame = Callable[[bytes, int, bool], None]  # (VP8 frame, RTP timestamp, keyframe)


class Vp8Frames:
    def __init__(self, on_frame: OnFrame) -> None:
        self.on_frame = on_frame
        self._parts: list[bytes] = []
        self._frame_ts: int | None = None
        self._next_seq: int | None = None
        self._frame_ok = False
        self._frame_pid: int | None = None
        self._last_pid: int | None = None
        self._last_ts: int | None = None  # RTP timestamp of the last frame delivered
        self._need_key = True
        self.frames = 0
        self.skipped = 0  # incomplete, replayed, or waiting for a keyframe

    def new_segment(self) -> None:
        """A path switch: a new sequence line (frames continue by picture id)."""
        self._next_seq = None
        self._frame_ts = None
        self._parts = []

    def new_source(self) -> None:
        """Another programme: its picture ids start a new line, and decoding needs its keyframe."""
        self.new_segment()
        self._last_pid = None
        self._last_ts = None
        self._need_key = True

    def need_keyframe(self) -> None:
        self._need_key = True

    def packet(self, seq: int, ts: int, marker: int, payload: bytes) -> None:
        if self._next_seq is not None and seq != self._next_seq:
            if ((seq - self._next_seq) & 0xFFFF) >= 0x8000:
                return  # late or duplicate
            self._frame_ok = False  # a packet is missing: this frame cannot be used
        self._next_seq = (seq + 1) & 0xFFFF
        if ts != self._frame_ts:
            if self._frame_ts is not None:
                self._need_key = True  # the previous frame never saw its marker
            self._frame_ts = ts
            self._parts = []
            self._frame_ok = bool(payload) and bool(payload[0] & 0x10) and not payload[0] & 0x07
            self._frame_pid = vp8_picture_id(payload)
        pos = vp8_descriptor_length(payload)
        if pos < 0:
            self._frame_ok = False
            return
        self._parts.append(payload[pos:])
        if not marker:
            return
        data = b"".join(self._parts)
        ok = self._frame_ok
        self._parts = []
        self._frame_ts = None
        if not ok:
            self._need_key = True
            self.skipped += 1
            return
        keyframe = bool(data) and not data[0] & 0x01
        if not self._in_order(self._frame_pid, ts, keyframe):
            self.skipped += 1
            return
        if self._need_key and not keyframe:
            self.skipped += 1
            return
        self._need_key = False
        self.frames += 1
        self.on_frame(data, ts, keyframe)

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
