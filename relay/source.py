"""A stream carried by a relay: its UpTracks by kind and who feeds them."""

from __future__ import annotations

import time

from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from .uptrack import UpTrack


FEED_ROLES = ("primary", "backup")


class Feed:
    """One publisher of a stream at an origin: the studio's main or backup encoder."""

    def __init__(self, role: str, session_id: str) -> None:
        self.role = role
        self.session_id = session_id
        self.inputs: dict = {}  # kind -> RtpInput
        self.last_packet_at = 0.0

    def alive(self, within_s: float) -> bool:
        return time.monotonic() - self.last_packet_at < within_s


class Source:
    """One named stream (e.g. "programme") with at most one track per kind.

    At an origin it may have two feeds (primary and backup studio encoders); only the
    active feed reaches the tracks, and a switch re-anchors every subscriber at the new
    feed's next keyframe, with its sequence numbers and timestamps continuing.
    """

    def __init__(self, name: str, keyframe_min_interval_s: float = 0.05) -> None:
        self.name = name
        self.keyframe_min_interval_s = keyframe_min_interval_s
        self.tracks: dict[str, UpTrack] = {}
        self.publisher: str = ""  # session id of the active WHIP publisher, or "upstream"
        self.created_at = time.time()
        self.feeds: dict[str, Feed] = {}
        self.active_role = ""
        # False while the feed on air was taken only because it arrived first: the primary then
        # takes over as soon as it is live. A failover or an operator's choice settles it.
        self.settled = False
        self.switches: list[tuple[float, str, str, str]] = []  # (time, from, to, reason)

    # -- feeds (origin only) ---------------------------------------------------------------

    def add_feed(self, feed: Feed) -> None:
        self.feeds[feed.role] = feed
        if not self.active_role or self.active_role not in self.feeds:
            self.switch_to(feed.role, "first feed", settle=False)

    def remove_feed(self, feed: Feed) -> None:
        if self.feeds.get(feed.role) is feed:
            del self.feeds[feed.role]
            if self.publisher == "upstream":
                # the stream is pulled from upstream now (a floor that passed to a hall behind
                # another relay): the publisher that just left feeds nothing here any more
                self.active_role = ""
                return
            if self.active_role == feed.role:
                other = next(iter(self.feeds), "")
                if other:
                    self.switch_to(other, f"{feed.role} feed ended")
                else:
                    self.active_role = ""
                    self.publisher = ""
                    for up in self.tracks.values():
                        up.set_keyframe_requester(None)

    def feed_sink(self, feed: Feed, kind: str):
        def on_packet(packet) -> None:
            feed.last_packet_at = time.monotonic()
            if feed.role == self.active_role:
                up = self.tracks.get(kind)
                if up is not None:
                    up.on_packet(packet)

        def on_sr(ntp: int, rtp_ts: int) -> None:
            if feed.role == self.active_role:
                up = self.tracks.get(kind)
                if up is not None:
                    up.on_sr(ntp, rtp_ts)

        return on_packet, on_sr

    def switch_to(self, role: str, reason: str, settle: bool = True) -> bool:
        feed = self.feeds.get(role)
        if feed is None:
            return False
        previous = self.active_role
        self.active_role = role
        self.publisher = feed.session_id
        for kind, up in self.tracks.items():
            inp = feed.inputs.get(kind)
            up.set_keyframe_requester(inp.request_keyframe if inp is not None else None)
            up.new_upstream()  # re-anchors subscribers and asks the new feed for a keyframe
        if settle:
            self.settled = True
        if previous and previous != role:
            self.switches.append((time.time(), previous, role, reason))
            del self.switches[:-50]
        return True

    def check_feeds(self, stall_s: float) -> str | None:
        """Switch away from a silent active feed to a live one; returns the reason if it did."""
        active = self.feeds.get(self.active_role)
        primary = self.feeds.get("primary")
        if (not self.settled and active is not None and self.active_role != "primary" and primary is not None
                and primary.alive(stall_s)):
            self.switch_to("primary", "primary feed is live", settle=False)
            return "primary feed is live"
        if active is None or len(self.feeds) < 2 or active.alive(stall_s):
            return None
        for role, feed in self.feeds.items():
            if role != self.active_role and feed.alive(stall_s):
                if active.last_packet_at == 0:
                    # it never sent anything: not a failover, just the live feed first
                    reason = f"{self.active_role} feed not live yet"
                    self.switch_to(role, reason, settle=False)
                    return reason
                reason = f"{self.active_role} feed silent for {(time.monotonic() - active.last_packet_at) * 1000:.0f} ms"
                self.switch_to(role, reason)
                return reason
        return None

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
