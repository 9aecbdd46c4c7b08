"""The bitrate ladder: lower layers transcoded once where the stream is published.

The top layer is the studio's own encoding, passed through untouched. Each lower layer
is a stream of its own, named `<stream>~<layer>` (e.g. `programme~180p`), produced by one
Transcoder at the relay where the studio publishes (decode the top layer once, scale,
encode each wanted layer with libvpx) and pulled by other relays only while one of
their subscribers needs it. Layer frames carry the top layer's RTP timestamps, so at the
origin every layer shares one timeline and one sender-report mapping.

Transcoding runs in one worker thread per stream (libvpx and the scaler release the
GIL); the event loop only packetizes the results into RTP.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import re
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction

import av
from aiortc.rtp import RtpPacket

from edge_node.frames import Vp8Frames

log = logging.getLogger(__name__)

LAYER_SEP = "~"
LAYER_SPEC = re.compile(r"^([a-z0-9]{1,16}):(\d{2,4})x(\d{2,4}):(\d{2,5})$")
PACKET_MAX = 1200  # VP8 payload bytes per RTP packet
BACKLOG_MAX = 8  # decoded frames waiting to be encoded before the encoders skip frames


@dataclass(frozen=True)
class LayerSpec:
    name: str
    width: int
    height: int
    kbps: int

    @classmethod
    def parse(cls, text: str) -> LayerSpec:
        """'180p:320x180:200' -> a 320x180 layer at 200 kbps named 180p."""
        m = LAYER_SPEC.match(text.strip())
        if not m:
            raise ValueError(f"ladder layer {text!r} must look like 'NAME:WIDTHxHEIGHT:KBPS' (e.g. 180p:320x180:200)")
        name, w, h, kbps = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))
        if w % 2 or h % 2 or not 32 <= w <= 3840 or not 32 <= h <= 2160:
            raise ValueError(f"ladder layer {text!r}: width and height must be even, 32-3840 x 32-2160")
        if not 30 <= kbps <= 20000:
            raise ValueError(f"ladder layer {text!r}: bitrate must be 30-20000 kbps")
        return cls(name, w, h, kbps)


def parse_ladder(specs: list[str]) -> list[LayerSpec]:
    """Lower layers, highest first; names unique, each smaller and cheaper than the one above."""
    layers = [LayerSpec.parse(s) for s in specs]
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise ValueError(f"ladder layer names repeat: {names}")
    for a, b in zip(layers, layers[1:]):
        if b.kbps >= a.kbps:
            raise ValueError(f"ladder layer {b.name} ({b.kbps} kbps) must cost less than {a.name} ({a.kbps} kbps)")
    return layers


def layer_stream(base: str, layer: str) -> str:
    return f"{base}{LAYER_SEP}{layer}"


def split_stream(stream: str) -> tuple[str, str]:
    """('programme~180p') -> ('programme', '180p'); ('programme') -> ('programme', '')."""
    base, _, layer = stream.partition(LAYER_SEP)
    return base, layer


# -- VP8 packetization (RFC 7741) --------------------------------------------------------------

def vp8_payloads(frame: bytes, picture_id: int) -> list[bytes]:
    """Split one encoded frame into RTP payloads with a 15-bit picture id descriptor."""
    pid = bytes((0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF))
    chunk = PACKET_MAX - 4
    out = []
    for i in range(0, max(len(frame), 1), chunk):
        out.append(bytes((0x90 if i == 0 else 0x80, 0x80)) + pid + frame[i:i + chunk])
    return out


class _Encoder:
    """One layer's libvpx encoder (constant bitrate, real time); runs in the worker thread."""

    def __init__(self, spec: LayerSpec, fps: float) -> None:
        self.spec = spec
        self.codec = av.CodecContext.create("libvpx", "w")
        self.codec.width = spec.width
        self.codec.height = spec.height
        self.codec.pix_fmt = "yuv420p"
        self.codec.bit_rate = spec.kbps * 1000
        self.codec.time_base = Fraction(1, 90000)
        self.codec.framerate = Fraction(round(fps) or 25, 1)
        self.codec.gop_size = 3000  # keyframes when asked (a subscriber joins, a loss) only
        self.codec.qmin = 4
        self.codec.qmax = 56
        self.codec.thread_count = 1
        self.codec.options = {
            "bufsize": str(spec.kbps * 1000), "minrate": str(spec.kbps * 1000), "maxrate": str(spec.kbps * 1000),
            "deadline": "realtime", "cpu-used": "-8", "lag-in-frames": "0", "static-thresh": "1",
            "undershoot-pct": "100", "overshoot-pct": "15", "partitions": "0", "noise-sensitivity": "0",
        }

    def encode(self, frame: av.VideoFrame, pts: int, keyframe: bool) -> bytes:
        scaled = frame.reformat(width=self.spec.width, height=self.spec.height, format="yuv420p")
        scaled.pts = pts
        scaled.time_base = Fraction(1, 90000)
        scaled.pict_type = av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        return b"".join(bytes(p) for p in self.codec.encode(scaled))


@dataclass
class _Layer:
    spec: LayerSpec
    up: object  # the layer Source's video UpTrack
    seq: int = field(default_factory=lambda: random.randrange(0, 65536))
    picture_id: int = field(default_factory=lambda: random.randrange(0, 1 << 15))
    want_key: bool = True
    frames: int = 0
    octets: int = 0


class Transcoder:
    """Decodes a stream's top video layer once and encodes the layers someone wants.

    It taps the top layer's UpTrack like a subscriber does (`write`, `reanchor`, ...), so the
    UpTrack's keyframe gating and upstream changes apply to it unchanged.
    """

    started = True  # as a subscriber of the top layer: never waiting for an anchor
    paused = False
    continuing = False

    def __init__(self, top_up, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.top = top_up
        self.layers: dict[str, _Layer] = {}
        self.loop = loop or asyncio.get_event_loop()
        self.frames = Vp8Frames(self._on_frame, top_up.request_keyframe)
        self.decoded = 0
        self.skipped = 0  # frames not encoded because the worker fell behind
        self.last_ts = 0
        self._work: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"ladder-{id(self):x}", daemon=True)
        self._thread.start()
        self._fps = 25.0
        self._last_frame_at = 0.0
        self._raw_ts: int | None = None  # the top layer's last RTP timestamp, and its unwrapped value
        self._ext_ts = 0
        top_up.attach(self)
        top_up.request_keyframe()

    # -- the layers ------------------------------------------------------------------------

    def enable(self, spec: LayerSpec, up) -> None:
        if spec.name not in self.layers:
            self.layers[spec.name] = _Layer(spec, up)
            up.set_keyframe_requester(lambda name=spec.name: self._want_key(name))
            if self.top.sr is not None:
                up.on_sr(*self.top.sr)

    def disable(self, name: str) -> None:
        layer = self.layers.pop(name, None)
        if layer is not None:
            layer.up.set_keyframe_requester(None)
            self._work.put(("drop", name))

    async def _want_key(self, name: str) -> None:
        layer = self.layers.get(name)
        if layer is not None:
            layer.want_key = True

    # -- as a subscriber of the top layer ----------------------------------------------------

    def write(self, seq: int, ts: int, marker: int, payload: bytes, keyframe: bool, send_time=None) -> None:
        self.frames.packet(seq, ts, marker, payload)

    def reanchor(self) -> None:
        """The top layer comes from another upstream (feed switch): a new decoding line."""
        self.frames.new_source()
        self.top.request_keyframe()
        for layer in self.layers.values():
            layer.want_key = True
            layer.up.new_upstream()

    def on_upstream_sr(self, ntp: int, rtp_ts: int) -> None:
        for layer in self.layers.values():
            layer.up.on_sr(ntp, rtp_ts)  # every layer carries the top layer's timestamps

    def _on_frame(self, data: bytes, ts: int, keyframe: bool) -> None:
        now = time.monotonic()
        if self._last_frame_at and now > self._last_frame_at:
            self._fps = 0.9 * self._fps + 0.1 * min(60.0, 1.0 / (now - self._last_frame_at))
        self._last_frame_at = now
        # libvpx wants increasing timestamps: unwrap the 32-bit RTP clock (a new upstream's
        # arbitrary jump only moves it forward)
        self._ext_ts += max(1, (ts - self._raw_ts) & 0xFFFFFFFF) if self._raw_ts is not None else 0
        self._raw_ts = ts
        if not self.layers:
            return
        wanted = {}
        for name, layer in self.layers.items():
            wanted[name] = (layer.spec, layer.want_key)
            layer.want_key = False
        self._work.put(("frame", data, ts, self._ext_ts, wanted))

    # -- the worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        decoder = av.CodecContext.create("vp8", "r")
        encoders: dict[str, _Encoder] = {}
        while True:
            item = self._work.get()
            if item is None:
                return
            if item[0] == "drop":
                encoders.pop(item[1], None)
                continue
            _, data, ts, pts, wanted = item
            try:
                frames = decoder.decode(av.Packet(data))
            except av.error.FFmpegError as exc:
                log.warning("ladder: top layer frame not decodable (%s); waiting for a keyframe", exc)
                self.loop.call_soon_threadsafe(self._decode_failed)
                continue
            behind = self._work.qsize() > BACKLOG_MAX
            for frame in frames:
                self.decoded += 1
                for name, (spec, key) in wanted.items():
                    enc = encoders.get(name)
                    if enc is None:
                        enc = encoders[name] = _Encoder(spec, self._fps)
                        key = True
                    if behind and not key:
                        self.skipped += 1
                        continue
                    try:
                        out = enc.encode(frame, pts, key)
                    except av.error.FFmpegError as exc:
                        log.warning("ladder: %s encoder failed (%s); restarting it", name, exc)
                        encoders.pop(name, None)
                        continue
                    if out:
                        self.loop.call_soon_threadsafe(self._emit, name, out, ts)

    def _decode_failed(self) -> None:
        self.frames.need_keyframe()
        self.top.request_keyframe()

    def _emit(self, name: str, frame: bytes, ts: int) -> None:
        """On the loop: packetize one encoded frame and feed the layer's UpTrack."""
        layer = self.layers.get(name)
        if layer is None:
            return
        payloads = vp8_payloads(frame, layer.picture_id)
        layer.picture_id = (layer.picture_id + 1) & 0x7FFF
        last = len(payloads) - 1
        pt = layer.up.codec.payloadType
        for i, payload in enumerate(payloads):
            packet = RtpPacket(payload_type=pt, marker=int(i == last), sequence_number=layer.seq,
                               timestamp=ts & 0xFFFFFFFF, payload=payload)
            layer.seq = (layer.seq + 1) & 0xFFFF
            layer.up.on_packet(packet)
        layer.frames += 1
        layer.octets += len(frame)
        self.last_ts = ts

    def stats(self) -> dict:
        return {"decoded": self.decoded, "skipped": self.skipped,
                "layers": {n: {"frames": x.frames, "kbps_target": x.spec.kbps} for n, x in self.layers.items()}}

    def close(self) -> None:
        self.top.detach(self)
        for name in list(self.layers):
            self.disable(name)
        self._work.put(None)
