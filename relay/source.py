"""A stream carried by a relay: its UpTracks by kind and who feeds them."""

from __future__ import annotations

import time

from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from .uptrack import UpTrack


class Source:
    """One named stream (e.g. "programme") with at most one track per kind."""

    def __init__(self, name: str, keyframe_min_interval_s: float = 0.05) -> None:
        self.name = name
        self.keyframe_min_interval_s = keyframe_min_interval_s
        self.tracks: dict[str, UpTrack] = {}
        self.publisher: str = ""  # session id of the WHIP publisher, or "upstream:<relay>"
        self.created_at = time.time()

    def track_for(self, kind: str, codec: RTCRtpCodecParameters) -> UpTrack:
        """The UpTrack for `kind`, created on first use; a codec change replaces it."""
        up = self.tracks.get(kind)
        if up is not None and up.codec.mimeType.lower() != codec.mimeType.lower():
            for dt in list(up.downtracks):
                dt.close()
            up.close()
            up = None
        if up is None:
            up = self.tracks[kind] = UpTrack(kind, codec, self.keyframe_min_interval_s)
        return up

    @property
    def live(self) -> bool:
        """True when some track received a packet in the last two seconds."""
        now = time.monotonic()
        return any(now - t.last_packet_at < 2.0 for t in self.tracks.values())

    def subscribers(self) -> int:
        return max((len(t.downtracks) for t in self.tracks.values()), default=0)

    def close(self) -> None:
        for up in self.tracks.values():
            for dt in list(up.downtracks):
                dt.close()
            up.close()
        self.tracks.clear()
