"""Peer-connection plumbing shared by every WHIP/WHEP session, server or client side."""

from __future__ import annotations

import asyncio
import logging

from aiortc import RTCPeerConnection

log = logging.getLogger(__name__)


async def wait_connected(pc: RTCPeerConnection, timeout_s: float) -> bool:
    """Wait until the peer connection is connected; False on failure or timeout."""
    if pc.connectionState == "connected":
        return True
    done = asyncio.get_running_loop().create_future()

    def on_change() -> None:
        if pc.connectionState == "connected" and not done.done():
            done.set_result(True)
        elif pc.connectionState in ("failed", "closed") and not done.done():
            done.set_result(False)

    pc.on("connectionstatechange", on_change)
    try:
        return await asyncio.wait_for(done, timeout_s)
    except asyncio.TimeoutError:
        return False
    finally:
        pc.remove_listener("connectionstatechange", on_change)


def keep_only_codec(transceiver, mime: str | None = None) -> None:
    """Restrict a transceiver's negotiated codecs to one (first, or `mime`) plus its RTX."""
    from aiortc.codecs import is_rtx

    chosen = None
    for codec in transceiver._codecs:
        if is_rtx(codec):
            continue
        if mime is None or codec.mimeType.lower() == mime.lower():
            chosen = codec
            break
    if chosen is None:
        transceiver._codecs = []
        return
    transceiver._codecs = [chosen] + [
        c for c in transceiver._codecs if is_rtx(c) and c.parameters.get("apt") == chosen.payloadType
    ]
