"""The test studio: publishes a synthetic programme by WHIP so any hop can check continuity.

Video: a moving pattern with the frame counter and the capture clock burnt in,
both as digits and as a binary strip a decoder can read back. Audio: a tone with
a click each second. Each frame's RTP timestamp is tied to its capture time by
the sender reports (NTP = capture clock), and relays carry that mapping through
unchanged, so a hall computes glass-to-glass latency from the capture clock.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time

import aiohttp
import numpy as np
from aiortc.codecs import get_encoder
from av import AudioFrame, VideoFrame

from .client import SignallingError, WhipPublisher
from .rtp import unix_to_ntp
from .rtpout import RtpFeedback, RtpOutput
from diemcau.tls import http_session

log = logging.getLogger(__name__)

VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_PTIME = 0.02
PEER_SILENT_S = 4.0  # no RTCP from the relay this long: it is gone, publish again

# 3x5 digit glyphs, rows top to bottom.
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001001001", "8": "111101111101111",
    "9": "111101111001111", ":": "000010000010000", ".": "000000000000010",
    " ": "000000000000000",
}
CODE_BITS = 64  # frame counter (24 bits) + capture clock in ms mod 2**40 (40 bits)


def _draw_text(y_plane: np.ndarray, text: str, x: int, y: int, scale: int) -> None:
    for i, ch in enumerate(text):
        glyph = _GLYPHS.get(ch, _GLYPHS[" "])
        for r in range(5):
            for c in range(3):
                if glyph[r * 3 + c] == "1":
                    x0 = x + (i * 4 + c) * scale
                    y0 = y + r * scale
                    y_plane[y0 : y0 + scale, x0 : x0 + scale] = 235


def encode_code_strip(frame_no: int, capture_ms: int) -> list[int]:
    value = ((frame_no & 0xFFFFFF) << 40) | (capture_ms & ((1 << 40) - 1))
    return [(value >> (CODE_BITS - 1 - i)) & 1 for i in range(CODE_BITS)]


def decode_code_strip(y_plane: np.ndarray) -> tuple[int, int]:
    """Read (frame counter, capture ms mod 2**40) back from a decoded frame's luma plane."""
    h, w = y_plane.shape
    cell = w // CODE_BITS
    row = y_plane[h - cell // 2 - 1]
    value = 0
    for i in range(CODE_BITS):
        value = (value << 1) | int(row[i * cell + cell // 2] > 128)
    return value >> 40, value & ((1 << 40) - 1)


class PatternGenerator:
    """Makes yuv420p frames of the test pattern."""

    def __init__(self, width: int, height: int, busy: bool = False) -> None:
        self.width, self.height = width, height
        # busy: a band of fresh noise in every frame, so the encoder spends its whole bitrate
        # (as a real camera's picture does; the plain pattern compresses to a fraction of it)
        self._rng = np.random.default_rng(7) if busy else None
        xs = np.arange(width, dtype=np.uint16)
        self._ramp = ((xs * 200) // max(width - 1, 1) + 16).astype(np.uint8)
        self._u = np.full((height // 2, width // 2), 128, np.uint8)
        self._v = np.full((height // 2, width // 2), 128, np.uint8)

    def frame(self, frame_no: int, capture_time: float) -> VideoFrame:
        w, h = self.width, self.height
        y = np.empty((h, w), np.uint8)
        y[:] = np.roll(self._ramp, frame_no * 4)
        bar = (frame_no * 8) % w
        y[:, bar : bar + 16] = 235
        scale = max(h // 60, 2)
        clock = time.strftime("%H:%M:%S", time.localtime(capture_time)) + f".{int(capture_time * 1000) % 1000:03d}"
        _draw_text(y, f"{frame_no:07d}", 8, 8, scale)
        _draw_text(y, clock, 8, 8 + 7 * scale, scale)
        cell = w // CODE_BITS
        bits = encode_code_strip(frame_no, int(capture_time * 1000))
        strip = np.repeat(np.array(bits, np.uint8) * 219 + 16, cell)
        y[h - cell :, : len(strip)] = strip
        if self._rng is not None:
            top, bottom = h // 3, h // 3 + h // 12
            y[top:bottom, :] = self._rng.integers(96, 160, (bottom - top, w), dtype=np.uint8)
        u = self._u.copy()
        u[:, : (bar // 2)] = 100
        data = np.concatenate([y.reshape(-1), u.reshape(-1), self._v.reshape(-1)])
        frame = VideoFrame.from_ndarray(data.reshape(h * 3 // 2, w), format="yuv420p")
        return frame


    def black(self) -> VideoFrame:
        w, h = self.width, self.height
        data = np.concatenate([np.full(w * h, 16, np.uint8), np.full(w * h // 2, 128, np.uint8)])
        return VideoFrame.from_ndarray(data.reshape(h * 3 // 2, w), format="yuv420p")


class FileCamera:
    """Frames of a media file, looped and scaled: a hall's camera for the floor when it has no device."""

    def __init__(self, path: str, width: int, height: int) -> None:
        import av

        self.path, self.width, self.height = path, width, height
        try:
            self._container = av.open(path)
            self._stream = self._container.streams.video[0]
        except (av.error.FFmpegError, OSError, IndexError) as exc:
            raise ValueError(f"camera file {path}: {exc}") from None
        self._frames = self._container.decode(self._stream)
        self._black = PatternGenerator(width, height).black()

    def frame(self, frame_no: int, capture_time: float) -> VideoFrame:
        import av

        for _ in range(2):
            try:
                f = next(self._frames)
                return f.reformat(width=self.width, height=self.height, format="yuv420p")
            except StopIteration:  # loop the file
                self._container.seek(0)
                self._frames = self._container.decode(self._stream)
            except av.error.FFmpegError:
                break
        return self._black

    def black(self) -> VideoFrame:
        return self._black


class _StudioFeedback(RtpFeedback):
    def __init__(self, studio: "Studio", output: RtpOutput) -> None:
        self.studio = studio
        self.output = output

    def on_keyframe_request(self) -> None:
        self.studio.force_keyframe = True

    def on_nack(self, seqs: list[int]) -> None:
        for seq in seqs:
            entry = self.studio.history.get(seq)
            if entry is not None:
                ts, marker, payload = entry
                self.output.send(seq, ts, marker, payload)


class Studio:
    """Publishes the synthetic programme to one or more WHIP endpoints until stopped.

    The programme is encoded once and the same packets go to every endpoint (both origins
    carry identical frames, so a hall can tell them apart by nothing but the path). Each
    endpoint is republished on its own when it goes away.
    """

    def __init__(
        self,
        whip_url: str | list[str],
        token: str | list[str],
        width: int = 640,
        height: int = 360,
        fps: int = 30,
        bitrate: int = 800_000,
        ice_servers: list[str] | None = None,
        role: str = "primary",
        impair_file: str = "",
        source: str = "test",
    ) -> None:
        urls = [whip_url] if isinstance(whip_url, str) else list(whip_url)
        tokens = [token] * len(urls) if isinstance(token, str) else list(token)
        if role != "primary":
            urls = [u + ("&" if "?" in u else "?") + f"role={role}" for u in urls]
        self.targets = list(zip(urls, tokens))
        self.whip_url = urls[0]
        self.fps = fps
        self.bitrate = bitrate
        self.ice_servers = ice_servers or []
        # the picture: the test pattern, or a camera's recording (a hall's floor from a file)
        self.pattern = (PatternGenerator(width, height, busy=source == "busy") if source in ("", "test", "busy")
                        else FileCamera(source, width, height))
        self.force_keyframe = True
        self.frames_sent = 0
        self.frames_dropped = 0  # capture slots skipped because the studio was starved of CPU
        self.audio_packets_sent = 0
        self.started_at = 0.0
        self.publishes = 0
        self.frozen = False  # test hook: stop sending (a frozen encoder)
        # test hook: what a broken source does while the encoder runs on: "freeze" (the same
        # picture over and over), "black", "silent"; several joined by "+"
        self.impairment = ""
        self.impair_file = impair_file  # polled: its content sets `impairment` (drills steer a studio process)
        self._impair_checked = 0.0
        self.outputs: dict[str, dict[str, RtpOutput]] = {}
        self.history: dict[int, tuple[int, int, bytes]] = {}
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        async with http_session() as http:
            keepers = [asyncio.ensure_future(self._keep_published(http, url, tok)) for url, tok in self.targets]
            try:
                await self._stream()
            finally:
                # let each publication end with its DELETE (the relay frees the stream at once)
                _, pending = await asyncio.wait(keepers, timeout=3.0) if keepers else (None, [])
                for k in pending:
                    k.cancel()
                await asyncio.gather(*keepers, return_exceptions=True)

    async def _keep_published(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            pub = WhipPublisher(url, token, self.ice_servers)
            try:
                await pub.connect(http)
            except SignallingError as exc:
                log.warning("studio: publish to %s failed: %s", url, exc)
                await pub.close()
                await self._sleep(exc.retry_after or backoff)
                backoff = min(backoff * 2, 3.0)
                continue
            backoff = 0.2
            self.publishes += 1
            log.info("studio: publishing to %s", url)
            for out in pub.outputs.values():
                out.feedback = _StudioFeedback(self, out)
            self.outputs[url] = pub.outputs
            self.force_keyframe = True
            try:
                while not self._stop.is_set() and pub.pc.connectionState == "connected":
                    await self._sleep(0.1)
                    # ICE consent takes ~30 s to notice a dead relay; its RTCP reports stop at once
                    silent = time.monotonic() - max(o.last_rtcp_at for o in pub.outputs.values())
                    if silent > PEER_SILENT_S:
                        log.warning("studio: %s sent no RTCP for %.1f s: publishing again", url, silent)
                        break
            finally:
                self.outputs.pop(url, None)
                await pub.close(http)

    def _read_impairment(self) -> None:
        try:
            with open(self.impair_file) as fh:
                wanted = fh.read(64).strip()
        except OSError:
            wanted = ""
        if wanted != self.impairment:
            log.warning("studio: source impairment %r -> %r at %.3f", self.impairment, wanted, time.time())
            self.impairment = wanted

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _send(self, kind: str, seq: int, ts: int, marker: int, payload: bytes, capture_ntp: int) -> None:
        if self.frozen:
            return
        for outs in list(self.outputs.values()):
            out = outs.get(kind)
            if out is not None:
                out.send(seq, ts, marker, payload)
                out.set_sr_mapping(capture_ntp, ts)

    async def _stream(self) -> None:
        from aiortc.rtcrtpparameters import RTCRtpCodecParameters

        venc = get_encoder(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=VIDEO_CLOCK, payloadType=96))
        venc.target_bitrate = self.bitrate
        aenc = get_encoder(RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111))
        loop = asyncio.get_running_loop()
        vseq, aseq = 1000, 2000
        ts_base = 123456
        t0 = time.time()
        m0 = time.monotonic()
        self.started_at = t0
        frame_no = 0
        audio_no = 0
        samples_per = int(AUDIO_RATE * AUDIO_PTIME)
        tone = (np.sin(2 * np.pi * 440 * np.arange(samples_per) / AUDIO_RATE) * 6000).astype(np.int16)
        click = tone.copy()
        click[:48] = 30000
        silence = np.zeros_like(tone)
        still = None  # the picture a frozen source keeps showing
        audio_next = m0
        while not self._stop.is_set():
            video_due = m0 + frame_no / self.fps
            now = time.monotonic()
            # Like a capture device, never fall behind real time: a starved studio drops
            # frames (and audio blocks) rather than sending old ones late.
            if now - video_due > 2 / self.fps:
                skipped = int((now - video_due) * self.fps)
                frame_no += skipped
                self.frames_dropped += skipped
                video_due = m0 + frame_no / self.fps
            if now - audio_next > 3 * AUDIO_PTIME:
                lag = int((now - audio_next) / AUDIO_PTIME)
                audio_no += lag
                audio_next = m0 + audio_no * AUDIO_PTIME
            if self.impair_file and now - self._impair_checked > 0.05:
                self._impair_checked = now
                self._read_impairment()
            while audio_next <= min(video_due, now):
                samples = click if audio_no % 50 == 0 else tone
                if "silent" in self.impairment:
                    samples = silence
                stereo = np.repeat(samples, 2).reshape(1, -1)
                af = AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
                af.sample_rate = AUDIO_RATE
                af.pts = audio_no * samples_per
                af.time_base = fractions.Fraction(1, AUDIO_RATE)
                payloads, _ = aenc.encode(af)
                capture_ntp = unix_to_ntp(t0 + (audio_next - m0))
                for p in payloads:
                    ts = (ts_base + audio_no * samples_per) & 0xFFFFFFFF
                    self._send("audio", aseq, ts, 0, p, capture_ntp)
                    aseq = (aseq + 1) & 0xFFFF
                    self.audio_packets_sent += 1
                audio_no += 1
                audio_next = m0 + audio_no * AUDIO_PTIME
            if now < video_due:
                await asyncio.sleep(min(video_due, audio_next) - now)
                continue
            capture = t0 + (video_due - m0)
            if "black" in self.impairment:
                vf = self.pattern.black()
            elif "freeze" in self.impairment and still is not None:
                vf = still
            else:
                vf = self.pattern.frame(self.frames_sent, capture)
                still = vf
            vf.pts = frame_no * (VIDEO_CLOCK // self.fps)
            vf.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            keyframe, self.force_keyframe = self.force_keyframe, False
            payloads, _ = await loop.run_in_executor(None, venc.encode, vf, keyframe)
            ts = (ts_base + frame_no * (VIDEO_CLOCK // self.fps)) & 0xFFFFFFFF
            capture_ntp = unix_to_ntp(capture)
            for i, p in enumerate(payloads):
                marker = 1 if i == len(payloads) - 1 else 0
                self._send("video", vseq, ts, marker, p, capture_ntp)
                self.history[vseq] = (ts, marker, p)
                self.history.pop((vseq - 512) & 0xFFFF, None)
                vseq = (vseq + 1) & 0xFFFF
            frame_no += 1
            self.frames_sent += 1
