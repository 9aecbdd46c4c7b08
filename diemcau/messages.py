"""Control-channel messages: the one definition shared by orchestrator, relays and halls.

Messages are msgspec structs tagged by `t`, encoded as JSON over the WebSocket
control channel. Decoding validates types at the boundary; inside, code trusts them.
"""

from __future__ import annotations

from typing import Union

import msgspec

# WebSocket close code: the orchestrator instance closing the channel cannot reach Redis (it is cut
# off from the rest of the control plane); the node connects to the next instance in its list
CLOSE_STORE_LOST = 4503


class Msg(msgspec.Struct, tag_field="t", forbid_unknown_fields=False, omit_defaults=True):
    """Base of every control message."""


# -- node -> orchestrator -------------------------------------------------------------


class Hello(Msg, tag="hello"):
    """First message on a control channel: who the node is and what it can do."""

    node: str
    kind: str  # "hall" | "relay"
    version: str
    region: str = ""
    role: str = ""  # relay role: "origin" | "regional" | "provincial"
    province: str = ""  # provincial relay: the province it serves
    whep_url: str = ""  # relay: base URL of its WHIP/WHEP server
    capacity: int = 0  # relay: subscribers it accepts
    streams: list[str] = []  # relay: streams it currently carries
    relay: str = ""  # hall: relay it is receiving from now (re-registration)


class HallStats(msgspec.Struct, omit_defaults=True):
    """What a hall saw since it started receiving (cumulative counters + recent gauges)."""

    state: str = "idle"  # idle | connecting | receiving | stalled
    relay: str = ""
    backup: str = ""  # relay of the warm standby path
    backup_state: str = ""  # standby | connecting | idle ...
    switches: int = 0  # local switches to the standby path
    frames_missing: int = 0  # origin frames never received (VP8 picture-id gaps)
    max_freeze_ms: float = 0.0  # longest gap between complete frames since the first
    gaps: list[list[float]] = []  # recent long gaps: [end unix time, gap ms]
    frames_received: int = 0
    frames_expected: int = 0
    frames_incomplete: int = 0
    packets_received: int = 0
    packets_lost: int = 0
    audio_packets: int = 0
    first_frame_ms: float = -1.0  # since the daemon started
    first_frame_at: float = 0.0  # unix time of the first frame
    latency_ms_p50: float = -1.0
    latency_ms_p95: float = -1.0
    bitrate_kbps: float = 0.0
    fps: float = 0.0
    loss_pct: float = 0.0
    freezes: int = 0
    last_media_ms_ago: float = -1.0
    reconnects: int = 0
    viewers: int = 0  # local WHEP viewers at the hall
    hitless: bool = False  # both paths carry the media, merged packet by packet
    merged_duplicates: int = 0  # hitless: packets the second path brought that the first already had
    qoe_alarms: list[str] = []  # what the hall's decoder sees now: frozen | black | silent
    qoe_raised_at: dict[str, float] = {}  # alarm -> unix time it was raised
    qoe_frames_decoded: int = 0
    av_drift_ms: float = 0.0  # newest audio's capture time minus newest video's (positive: picture lags)
    audio_level_dbfs: float = -120.0
    session: str = ""  # the live session the hall follows ("": the default programme)
    stream: str = ""
    floor: str = ""  # the floor stream it receives (or "speaking" when it holds the floor)
    floor_speaker: str = ""
    floor_frames: int = 0
    floor_first_keyframe_at: float = 0.0  # unix time its first complete keyframe arrived
    floor_reach_ms: float = -1.0  # operator's call -> that keyframe
    floor_history: list[list] = []  # recent floors seen here: [speaker, given at (unix), reach ms]
    recording: str = ""  # the file the hall is recording the programme to
    recorded_s: float = 0.0


class RelayStats(msgspec.Struct, omit_defaults=True):
    subscribers: int = 0
    publishers: int = 0
    packets_in: int = 0
    packets_out: int = 0
    packets_dropped: int = 0
    keyframe_requests_up: int = 0
    upstream: str = ""
    upstream_state: str = ""
    upstream_backup: str = ""
    upstream_backup_state: str = ""
    feeds: list[str] = []  # origin: studio feeds present (primary, backup)
    active_feed: str = ""  # origin: which feed is on air
    feed_switches: list[list[str]] = []  # origin: recent switches [unix time, from, to, reason]
    cpu_pct: float = 0.0
    layers: dict[str, list[str]] = {}  # adapting subscriber (hall) -> [layer, reason of the last switch]
    transcoding: list[str] = []  # ladder layers this relay encodes (where the studio publishes)
    ladder: list[str] = []  # the layers this relay offers, highest first ("top" is the studio's own)


class Heartbeat(Msg, tag="hb"):
    seq: int
    hall: HallStats | None = None
    relay: RelayStats | None = None
    # the sender's clock when it sent this (unix ms): the orchestrator's lag histogram; meaningful
    # only where clocks agree (one machine, or NTP-disciplined hosts)
    sent_ms: float = 0.0


class MediaLost(Msg, tag="media_lost"):
    """A hall or relay reports it cannot receive from its assigned upstream."""

    upstream: str
    reason: str
    stream: str = ""  # which stream ("": the node's main assignment)


# -- orchestrator -> node -------------------------------------------------------------


class Welcome(Msg, tag="welcome"):
    node: str
    heartbeat_ms: int


class LayerPolicy(msgspec.Struct, forbid_unknown_fields=True):
    """An operator's bounds on a hall's layer of the bitrate ladder ("" : no bound)."""

    floor: str = ""  # the lowest layer the hall may get (below it: still this layer, never audio only)
    ceiling: str = ""  # the highest layer
    audio_only: bool = False


class Assign(Msg, tag="assign"):
    """Tells a hall or relay where to subscribe from (WHEP) and with which token."""

    stream: str
    upstream: str  # node id of the relay to pull from
    whep_url: str  # full WHEP endpoint URL
    token: str
    epoch: int = 0  # increases with each re-plan; stale assignments are ignored
    backup: str = ""  # node id of the warm standby relay, if any
    backup_whep_url: str = ""
    backup_token: str = ""
    move: bool = False  # a deliberate move (rebalance, operator, drain): switch to it even if warm
    hitless: bool | None = None  # halls: both paths carry the media and are merged; None: keep the hall's setting
    session: str = ""  # halls: the live session they take part in ("" : the default programme)
    session_title: str = ""
    layer: LayerPolicy | None = None  # halls: the operator's layer bounds; None: keep what it has


class SwitchSource(Msg, tag="switch_source"):
    """Operator: put a stream's primary or backup studio feed on air at the origins."""

    stream: str
    role: str  # primary | backup
    reason: str = ""


class Unassign(Msg, tag="unassign"):
    stream: str


class FloorPublish(Msg, tag="floor_publish"):
    """To the hall given the floor: publish its camera and microphone by WHIP here ("" stream: stop)."""

    stream: str
    whip_url: str = ""
    token: str = ""


class Forward(Msg, tag="forward"):
    """To the speaker's relay: republish `stream` (the floor it receives by WHIP) to these relays
    (the origins) by WHIP, so it travels up the tree; no targets: stop."""

    stream: str
    whip_urls: list[str] = []
    tokens: list[str] = []


class Floor(Msg, tag="floor"):
    """To the halls of the speaker's session: subscribe to the floor, the programme's second track
    ("" stream: the floor was taken back)."""

    stream: str
    speaker: str = ""
    whep_url: str = ""
    token: str = ""
    given_at: float = 0.0  # unix time the operator gave the floor (halls measure its reach)


class RaiseHand(Msg, tag="raise_hand"):
    """A hall asks to speak (its projector page's button), or withdraws: the floor queue."""

    up: bool = True


class ErrorMsg(Msg, tag="error"):
    code: int
    reason: str


AnyMsg = Union[Hello, Heartbeat, MediaLost, Welcome, Assign, SwitchSource, Unassign, FloorPublish, Forward, Floor,
               RaiseHand, ErrorMsg]

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyMsg)


def encode(msg: Msg) -> bytes:
    return _encoder.encode(msg)


def decode(data: bytes | str) -> AnyMsg:
    """Decode one control message; raises msgspec.ValidationError/DecodeError on bad input."""
    try:
        return _decoder.decode(data)
    except UnicodeDecodeError as exc:  # a text frame that is not UTF-8 is just bad input
        raise msgspec.DecodeError(f"not UTF-8 (byte {exc.start})") from None
