"""Every limit and timer of a hall daemon, with defaults; `DIEMCAU_EDGE_*` env overrides."""

from __future__ import annotations

import msgspec


class EdgeSettings(msgspec.Struct, kw_only=True):
    hall: str = "HN-01"
    orchestrator_url: str = ""  # ws(s)://.../api/v1/control
    credential: str = ""  # node credential for this hall
    ice_addresses: list[str] = []  # host candidates ICE may offer; empty: every interface
    ice_servers: list[str] = []
    heartbeat_ms: int = 500  # the orchestrator's Welcome may change it
    stall_s: float = 1.0  # no packet this long (and no standby to switch to): resubscribe, report
    hitless: bool = False  # both paths carry the media, merged frame by frame (twice the bandwidth)
    switch_after_ms: float = 150.0  # primary silent this long: switch to the warm standby
    connect_timeout_s: float = 10.0
    viewers_host: str = "127.0.0.1"  # the hall's own WHEP server for local viewers
    viewers_port: int = 0  # 0: any free port; -1: no local viewers
    viewer_capacity: int = 50
    local_stream: str = "programme"  # the name the hall's own viewers subscribe to, whichever session it follows
    tls_cert: str = ""  # the viewer server speaks HTTPS when a certificate and key are given
    tls_key: str = ""
    media_public_key: str = ""  # PEM public key that verifies viewers' media tokens
    qoe: bool = True  # decode what arrives and raise frozen / black / silent alarms (costs decoding CPU)
    qoe_frozen_after_s: float = 1.5
    qoe_black_after_s: float = 1.0
    qoe_silent_after_s: float = 1.5
    # the hall's camera and microphone for the floor: "test" (a pattern and tone), a media file, or
    # "browser" (the projector page captures them with getUserMedia and publishes them to the daemon)
    camera: str = "test"
    record_dir: str = ""  # record the programme as received (WebM, one file per stream/session); empty: off
    freeze_ms: float = 200.0  # a gap between complete frames above this counts as a freeze
