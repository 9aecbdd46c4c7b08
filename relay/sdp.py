"""Checks on SDP offers before they reach aiortc, with reasons a caller can act on."""

from __future__ import annotations

from aiortc.sdp import SessionDescription

MAX_SDP_BYTES = 16 * 1024
MAX_SDP_LINES = 400


class SdpError(ValueError):
    pass


def check_offer(text: str, max_bytes: int = MAX_SDP_BYTES, max_lines: int = MAX_SDP_LINES) -> SessionDescription:
    """Parse an SDP offer, raising SdpError with the reason if it cannot be used."""
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise SdpError(f"SDP is larger than {max_bytes} bytes")
    lines = text.splitlines()
    if len(lines) > max_lines:
        raise SdpError(f"SDP has more than {max_lines} lines")
    if not lines or not lines[0].startswith("v=0"):
        raise SdpError("SDP must start with 'v=0'")
    try:
        parsed = SessionDescription.parse(text)
    except Exception as exc:  # aiortc raises ValueError, KeyError, IndexError... on junk
        raise SdpError(f"SDP could not be parsed: {type(exc).__name__}: {exc}") from None
    kinds = [m.kind for m in parsed.media]
    if not any(k in ("audio", "video") for k in kinds):
        raise SdpError("SDP offers no audio or video media section")
    mids: list[str] = []
    for m in parsed.media:
        if m.kind in ("audio", "video"):
            if not m.ice.usernameFragment or not m.ice.password:
                raise SdpError(f"{m.kind} section lacks ICE credentials (a=ice-ufrag/a=ice-pwd)")
            if not m.dtls or not m.dtls.fingerprints:
                raise SdpError(f"{m.kind} section lacks a DTLS fingerprint")
            if not m.rtp.muxId:
                raise SdpError(f"{m.kind} section lacks a=mid")
            if m.port == 0:
                raise SdpError(f"{m.kind} section is rejected (port 0); offer only what you want")
            mids.append(m.rtp.muxId)
    if len(set(mids)) != len(mids):
        raise SdpError("two media sections share a mid")
    for kind in ("audio", "video"):
        if sum(1 for m in parsed.media if m.kind == kind) > 1:
            raise SdpError(f"more than one {kind} section: a programme has one of each")
    for group in parsed.group:
        unknown = [x for x in group.items if x not in mids]
        if group.semantic == "BUNDLE" and unknown:
            raise SdpError(f"BUNDLE names mids with no media section: {', '.join(map(str, unknown))[:80]}")
    return parsed
