"""Every limit and timer of the orchestrator, with defaults; `DIEMCAU_ORCH_*` env overrides."""

from __future__ import annotations

import msgspec


class OrchestratorSettings(msgspec.Struct, kw_only=True):
    instance: str = "orch-1"
    host: str = "127.0.0.1"
    port: int = 8700
    redis_url: str = ""  # empty: REDIS_URL from the environment
    key_prefix: str = "dc:"
    stream: str = "programme"
    topology: str = ""  # path; empty: configs/topology.toml
    programme: str = ""  # sessions and schedule; empty: configs/programme.toml (seeds Redis once)
    profile: str = "local"
    node_key_file: str = ""  # hex HMAC key for node credentials
    media_key_file: str = ""  # Ed25519 private key (PEM) that signs media tokens
    operator_password: str = ""  # bootstrap password of the "admin" operator
    tls_cert: str = ""  # HTTPS/WSS when a certificate and key are given
    tls_key: str = ""
    production: bool = False  # refuse to start with missing or default secrets
    hall_heartbeat_ms: int = 500
    relay_heartbeat_ms: int = 1000
    hall_dark_after_ms: int = 1500  # no heartbeat this long: hall is dark
    relay_dead_after_ms: int = 1500  # control channel down and no heartbeat this long: relay dead
    sweep_interval_ms: int = 250
    # Redis has not answered this long: this instance is cut off; its nodes' channels go elsewhere
    store_lost_after_ms: int = 1000
    flush_interval_ms: int = 100  # heartbeats are written to Redis in one pipeline per tick
    board_interval_ms: int = 500  # SSE board refresh
    media_token_ttl_s: int = 900
    session_ttl_s: int = 8 * 3600
    leader_lease_ms: int = 1500  # a dead leader is replaced within this plus one renew tick
    max_body_bytes: int = 64 * 1024
    ws_max_msg_bytes: int = 64 * 1024
    ws_msgs_per_s: int = 50  # per control connection, averaged over a second
    gc_freeze_s: float = 10.0  # long-lived objects leave the collector's full passes this often (0: never)
    gc_thaw_every: int = 30  # ... and are handed back to it every this many freezes (cyclic garbage among them)
    ws_idle_close_s: float = 30.0  # a control channel that brings nothing this long is closed (half-open)
    sse_clients_max: int = 200
    previews_max: int = 8  # programme previews open in consoles at once
    events_maxlen: int = 100_000
    login_attempts_per_min: int = 10
