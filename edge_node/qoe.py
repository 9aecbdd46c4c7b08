"""Proof the programme is on the hall's screen: decode what arrives and watch the picture and sound.

Packets arriving say nothing about the picture: a studio encoder fed a frozen or black
source, or a muted microphone, keeps sending perfectly good packets. The hall decodes
the programme (VP8 and Opus, as it arrives: no transcoding, nothing sent on) and checks
a sample of it a few times a second:

- frozen: the picture has not changed (mean absolute luma difference below a threshold)
  for `frozen_after_s`;
- black: the picture is dark and flat (mean and spread of luma low) for `black_after_s`;
- silent: the sound's level stays below `silent_dbfs` for `silent_after_s`;
- A/V drift: the capture-clock age of the newest audio against the newest video, both
  mapped through the studio's sender reports (positive: the picture lags the sound).

An alarm is raised once its condition has held for its duration and cleared as soon as it
no longer holds; `raised_at` keeps when each current alarm was raised.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import av
import numpy as np

from relay.rtp import ntp_to_unix

from .frames import Vp8Frames

log = logging.getLogger(__name__)

ALARMS = ("frozen", "black", "silent")


@dataclass
class QoeSettings:
    sample_interval_s: float = 0.2  # how often the newest decoded picture and sound are judged
    frozen_after_s: float = 1.5
    frozen_diff: float = 0.5  # mean absolute luma difference (0-255) below which pictures are "the same"
    black_after_s: float = 1.0
    black_luma: float = 32.0  # mean luma below this ...
    black_spread: float = 10.0  # ... with a standard deviation below this: black
    silent_after_s: float = 1.5
    silent_dbfs: float = -50.0


class QoeMonitor:
    def __init__(self, settings: QoeSettings | None = None) -> None:
        self.s = settings or QoeSettings()
        self._vdec = av.CodecContext.create("vp8", "r")
        self._adec = av.CodecContext.create("libopus", "r")
        self._frames = Vp8Frames(self._decode_frame)
        self._luma: np.ndarray | None = None  # newest decoded picture's luma, subsampled
        self._luma_at = 0.0
        self._prev_sample: np.ndarray | None = None
        self._audio_sq = 0.0  # sum of squares since the last sample
        self._audio_n = 0
        self._sr: dict[str, tuple[float, int, int]] = {}  # kind -> (capture unix, rtp ts, clock)
        self._newest_capture: dict[str, float] = {}  # kind -> capture time of the newest packet
        self._holding: dict[str, float] = {}  # condition -> since when it holds (not yet an alarm)
        self.raised_at: dict[str, float] = {}  # alarm -> unix time raised
        self.frames_decoded = 0
        self.decode_errors = 0
        self.audio_level_dbfs = -120.0
        self.luma_mean = -1.0
        self.picture_change = -1.0
        self.av_drift_ms = 0.0
        self._last_sample = 0.0

    # -- input -----------------------------------------------------------------------------

    def sender_report(self, kind: str, ntp: int, rtp_ts: int, clock_rate: int) -> None:
        if ntp:
            self._sr[kind] = (ntp_to_unix(ntp), rtp_ts, clock_rate)

    def _capture_time(self, kind: str, ts: int) -> float | None:
        sr = self._sr.get(kind)
        if sr is None:
            return None
        d = (ts - sr[1]) & 0xFFFFFFFF
        if d >= 0x80000000:
            d -= 0x100000000
        return sr[0] + d / sr[2]

    def new_segment(self, kind: str = "video") -> None:
        """The hall switched paths: new sequence and timestamp lines (frames continue by picture
        id); the old sender-report mapping no longer applies."""
        self._sr.pop(kind, None)
        self._newest_capture.pop(kind, None)
        if kind == "video":
            self._frames.new_segment()

    def new_source(self, kind: str) -> None:
        self.new_segment(kind)
        if kind == "video":
            self._frames.new_source()
            self._prev_sample = None

    def video_packet(self, seq: int, ts: int, marker: int, payload: bytes) -> None:
        self._frames.packet(seq, ts, marker, payload)

    def _decode_frame(self, data: bytes, ts: int, keyframe: bool) -> None:
        try:
            frames = self._vdec.decode(av.Packet(data))
        except av.error.FFmpegError:
            self.decode_errors += 1
            self._frames.need_keyframe()
            return
        for frame in frames:
            plane = frame.planes[0]
            y = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
            self._luma = y[::4, ::4].astype(np.int16)
            self._luma_at = time.time()
            self.frames_decoded += 1
        cap = self._capture_time("video", ts)
        if cap is not None:
            self._newest_capture["video"] = cap

    def audio_packet(self, seq: int, ts: int, payload: bytes) -> None:
        try:
            frames = self._adec.decode(av.Packet(payload))
        except av.error.FFmpegError:
            self.decode_errors += 1
            return
        for frame in frames:
            pcm = frame.to_ndarray().astype(np.float32)
            if frame.format.name.startswith("s16"):
                pcm /= 32768.0
            self._audio_sq += float(np.square(pcm).sum())
            self._audio_n += pcm.size
        cap = self._capture_time("audio", ts)
        if cap is not None:
            self._newest_capture["audio"] = cap

    # -- judging ---------------------------------------------------------------------------

    def sample(self, now: float | None = None) -> None:
        """Judge the newest picture and the sound since the last sample (call a few times a second)."""
        now = time.time() if now is None else now
        if now - self._last_sample < self.s.sample_interval_s * 0.5:
            return
        self._last_sample = now
        held: dict[str, bool] = {}
        if self._luma is not None and now - self._luma_at < 1.0:  # judge only a live picture
            y = self._luma
            self.luma_mean = float(y.mean())
            held["black"] = self.luma_mean < self.s.black_luma and float(y.std()) < self.s.black_spread
            if self._prev_sample is not None and self._prev_sample.shape == y.shape:
                self.picture_change = float(np.abs(y - self._prev_sample).mean())
                # a black screen is reported as black, not also as frozen
                held["frozen"] = self.picture_change < self.s.frozen_diff and not held["black"]
            self._prev_sample = y
        else:
            held["black"] = held["frozen"] = False  # no picture at all: the stall is reported elsewhere
        if self._audio_n:
            rms = math.sqrt(self._audio_sq / self._audio_n)
            self.audio_level_dbfs = 20 * math.log10(rms) if rms > 1e-6 else -120.0
            self._audio_sq, self._audio_n = 0.0, 0
            held["silent"] = self.audio_level_dbfs < self.s.silent_dbfs
        else:
            held["silent"] = False
        a, v = self._newest_capture.get("audio"), self._newest_capture.get("video")
        if a is not None and v is not None and abs(a - v) < 10:  # smoothed: the newest video is up to a frame old
            self.av_drift_ms = round(0.8 * self.av_drift_ms + 0.2 * (a - v) * 1000, 1)
        after = {"frozen": self.s.frozen_after_s, "black": self.s.black_after_s, "silent": self.s.silent_after_s}
        for alarm, holds in held.items():
            if not holds:
                self._holding.pop(alarm, None)
                if self.raised_at.pop(alarm, None) is not None:
                    log.info("QoE: %s cleared", alarm)
                continue
            since = self._holding.setdefault(alarm, now)
            if alarm not in self.raised_at and now - since >= after[alarm]:
                self.raised_at[alarm] = now
                log.warning("QoE: programme %s for %.1f s", alarm, now - since)

    @property
    def alarms(self) -> list[str]:
        return [a for a in ALARMS if a in self.raised_at]
