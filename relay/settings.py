"""Every limit and timer of a relay process, with defaults; `DIEMCAU_RELAY_*` env overrides."""

from __future__ import annotations

import msgspec


class RelaySettings(msgspec.Struct, kw_only=True):
    id: str = "relay-1"
    role: str = "origin"  # origin | regional | provincial
    province: str = ""  # provincial: the province whose halls it serves first
    region: str = "north"
    host: str = "127.0.0.1"  # HTTP bind address
    port: int = 0
    public_url: str = ""  # how others reach our WHIP/WHEP server; default http://host:port
    ice_addresses: list[str] = []  # host candidates ICE may offer; empty: every interface
    ice_servers: list[str] = []  # STUN/TURN URLs; empty: none (never a public default)
    capacity: int = 60  # subscriber sessions accepted before 503
    max_body_bytes: int = 16 * 1024  # WHIP/WHEP POST body (SDP)
    max_sdp_lines: int = 400
    max_publishers: int = 4
    max_sessions_per_token: int = 2  # a reconnect may overlap the session it replaces; 0: no limit
    max_sessions_per_address: int = 256  # 0: no limit
    connect_timeout_s: float = 10.0  # a session whose ICE/DTLS does not finish is dropped
    keyframe_min_interval_s: float = 0.05  # at most one upstream keyframe request per this
    tls_cert: str = ""  # HTTPS (WHIP/WHEP over TLS) when a certificate and key are given
    tls_key: str = ""
    orchestrator_url: str = ""  # ws(s)://.../api/v1/control; empty: standalone
    credential: str = ""  # node credential for the control channel
    media_public_key: str = ""  # path to the PEM public key that verifies media tokens
    heartbeat_ms: int = 1000
    source_stall_ms: int = 200  # origin: active studio feed silent this long -> backup feed
    source_check_ms: int = 25
    upstream_stall_s: float = 1.0  # no packet from upstream this long (no standby): resubscribe
    # lower layers of the bitrate ladder, highest first, "NAME:WIDTHxHEIGHT:KBPS"; empty: no
    # ladder, every subscriber gets the studio's own encoding. Transcoded once where the stream
    # is published, pulled by other relays only while one of their subscribers needs the layer.
    ladder: list[str] = []
    layer_linger_s: float = 15.0  # a layer nobody has used this long stops (transcoder or pull)
    switch_after_ms: float = 150.0  # upstream silent this long: switch to the warm standby upstream
