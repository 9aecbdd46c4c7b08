"""Which local addresses ICE may use, and peer connections that never reach outside.

aioice gathers host candidates on every interface (and never on loopback); a
relay or hall must offer only the addresses it is configured for, like
LiveKit's `rtc.ips.includes`. Peer connections get an explicit ICE server list
(empty by default) so aiortc never contacts its default public STUN server.
"""

from __future__ import annotations

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection

_allowed: list[str] | None = None
_original = aioice.ice.get_host_addresses


def _restricted(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    assert _allowed is not None
    return [a for a in _allowed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


def restrict_ice_addresses(addresses: list[str] | None) -> None:
    """Offer only `addresses` as host candidates in this process (None: aioice's default)."""
    global _allowed
    if addresses:
        _allowed = list(addresses)
        aioice.ice.get_host_addresses = _restricted
    else:
        _allowed = None
        aioice.ice.get_host_addresses = _original


def new_peer_connection(ice_servers: list[str] | None = None) -> RTCPeerConnection:
    """A peer connection with an explicit ICE server list (empty: host candidates only)."""
    servers = [RTCIceServer(urls=u) for u in (ice_servers or [])]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))
