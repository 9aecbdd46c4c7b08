"""Start-up check of the aiortc/aioice internals the media path depends on.

aiortc exposes no API for encoded frames or raw RTP, so the relay hooks a few
private names. If an upgrade moves them, we fail loudly at start-up naming the
version found, instead of silently decoding or dropping media.
"""

from __future__ import annotations

import aioice
import aioice.ice
import aiortc
from aiortc import rtcdtlstransport, rtcrtpreceiver, rtcrtpsender

PINNED_AIORTC = "1.16.0"
PINNED_AIOICE = "0.13.0"


class IncompatibleAiortc(RuntimeError):
    pass


_REQUIRED = [
    (rtcrtpreceiver.RTCRtpReceiver, "_handle_rtp_packet"),
    (rtcrtpreceiver.RTCRtpReceiver, "_handle_rtcp_packet"),
    (rtcrtpreceiver.RTCRtpReceiver, "_send_rtcp_pli"),
    (rtcrtpreceiver.RTCRtpReceiver, "_send_rtcp_nack"),
    (rtcrtpreceiver.RTCRtpReceiver, "_send_rtcp"),
    (rtcrtpsender.RTCRtpSender, "_handle_rtcp_packet"),
    (rtcrtpsender.RTCRtpSender, "_ssrc"),
    (rtcdtlstransport.RTCDtlsTransport, "_send_rtp"),
    (aioice.ice, "get_host_addresses"),
]

# Private instance attributes (name-mangled) read or written on live objects.
RECEIVER_PRIVATE = (
    "_RTCRtpReceiver__codecs",
    "_RTCRtpReceiver__remote_streams",
    "_RTCRtpReceiver__nack_generator",
    "_RTCRtpReceiver__rtx_ssrc",
    "_RTCRtpReceiver__rtcp_ssrc",
)
SENDER_PRIVATE = (
    "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp",
    "_RTCRtpSender__packet_count",
    "_RTCRtpSender__octet_count",
    "_RTCRtpSender__rtp_header_extensions_map",
)
DTLS_PRIVATE = ("_tx_srtp", "_rx_srtp", "_rtp_router")


def check_aiortc() -> None:
    """Raise IncompatibleAiortc unless the pinned versions and every hooked name are present."""
    found = getattr(aiortc, "__version__", "unknown")
    problems = []
    if found != PINNED_AIORTC:
        problems.append(f"aiortc {found} is installed, diemcau is pinned to {PINNED_AIORTC}")
    ice_version = getattr(aioice, "__version__", "unknown")
    if ice_version != PINNED_AIOICE:
        problems.append(f"aioice {ice_version} is installed, diemcau is pinned to {PINNED_AIOICE}")
    for owner, name in _REQUIRED:
        if not hasattr(owner, name) and name not in getattr(owner, "__annotations__", {}):
            if owner is rtcrtpsender.RTCRtpSender and name == "_ssrc":
                continue  # instance attribute, checked on live objects
            problems.append(f"{getattr(owner, '__name__', owner)}.{name} is missing")
    if problems:
        raise IncompatibleAiortc(
            "diemcau's media path cannot run on this aiortc: "
            + "; ".join(problems)
            + f" (install aiortc=={PINNED_AIORTC} aioice=={PINNED_AIOICE})"
        )


def check_live(obj: object, names: tuple[str, ...]) -> None:
    """Check the private attributes on a live aiortc object, naming the version if one is gone."""
    missing = [n for n in names if not hasattr(obj, n)]
    if missing:
        raise IncompatibleAiortc(
            f"aiortc {aiortc.__version__}: {type(obj).__name__} lacks {', '.join(missing)}; "
            f"diemcau needs aiortc=={PINNED_AIORTC}"
        )
