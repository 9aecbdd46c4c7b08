"""Byte-level RTP helpers for the forwarding path: keyframe detection, NTP time, header building."""

from __future__ import annotations

import struct
import time

NTP_EPOCH_OFFSET = 2208988800
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"

_HEADER = struct.Struct("!BBHII")


def ntp_now() -> int:
    """Current wall clock as a 64-bit NTP timestamp."""
    return int((time.time() + NTP_EPOCH_OFFSET) * 4294967296.0)


def ntp_to_unix(ntp: int) -> float:
    return ntp / 4294967296.0 - NTP_EPOCH_OFFSET


def unix_to_ntp(t: float) -> int:
    return int((t + NTP_EPOCH_OFFSET) * 4294967296.0)


def vp8_descriptor_length(payload: bytes) -> int:
    """Bytes of the VP8 RTP payload descriptor (RFC 7741) before the VP8 data; -1 if truncated."""
    n = len(payload)
    if n < 1:
        return -1
    pos = 1
    if payload[0] & 0x80:  # X: extension byte follows
        if n < 2:
            return -1
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id
            if pos >= n:
                return -1
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/KEYIDX byte
            pos += 1
    return pos if pos <= n else -1


def vp8_is_keyframe_start(payload: bytes) -> bool:
    """True if this VP8 RTP payload starts a keyframe (RFC 7741 descriptor + payload header)."""
    if len(payload) < 2:
        return False
    b0 = payload[0]
    if not (b0 & 0x10) or (b0 & 0x07):  # S bit set and partition index 0
        return False
    pos = vp8_descriptor_length(payload)
    if pos < 0 or pos >= len(payload):
        return False
    return not (payload[pos] & 0x01)  # P bit 0 means keyframe


def vp8_picture_id(payload: bytes) -> int | None:
    """The 7- or 15-bit picture id of a VP8 RTP payload descriptor, if present (RFC 7741)."""
    if len(payload) < 3 or not payload[0] & 0x80 or not payload[1] & 0x80:
        return None
    b = payload[2]
    if b & 0x80:
        return ((b & 0x7F) << 8) | payload[3] if len(payload) > 3 else None
    return b & 0x7F


def h264_is_keyframe_start(payload: bytes) -> bool:
    """True if this H.264 RTP payload (RFC 6184) starts an IDR access unit (SPS or IDR)."""
    if not payload:
        return False
    nal = payload[0] & 0x1F
    if nal in (5, 7):
        return True
    if nal == 24:  # STAP-A
        pos = 1
        while pos + 2 < len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            pos += 2
            if pos < len(payload) and (payload[pos] & 0x1F) in (5, 7):
                return True
            pos += size
        return False
    if nal == 28 and len(payload) > 1:  # FU-A: start bit + IDR
        return bool(payload[1] & 0x80) and (payload[1] & 0x1F) == 5
    return False


def keyframe_detector(mime: str):
    """The keyframe test for a codec; audio codecs are always decodable (None)."""
    mime = mime.lower()
    if mime == "video/vp8":
        return vp8_is_keyframe_start
    if mime == "video/h264":
        return h264_is_keyframe_start
    return None


def abs_send_time() -> bytes:
    """The 3-byte abs-send-time value (6.18 fixed-point seconds) for now."""
    return ((ntp_now() >> 14) & 0x00FFFFFF).to_bytes(3, "big")
