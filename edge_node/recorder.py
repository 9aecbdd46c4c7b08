"""Recording at the hall: the programme as received, VP8 and Opus, into a WebM file. No transcoding.

The hall keeps its own copy so that it can replay a session when its uplink to the
country fails. Frames are the origin's encoded frames (assembled from RTP, the payload
descriptor removed); timestamps come from RTP, anchored to the wall clock when a track
starts or changes path, so the file's timeline is continuous across path switches.
A recording that cannot be written (disk full, directory gone) stops with one log line:
the programme on the hall's screen never depends on it.
"""

from __future__ import annotations

import fractions
import logging
import time
from pathlib import Path

import av

from .frames import Vp8Frames, vp8_keyframe_size

log = logging.getLogger(__name__)

CLOCK = {"video": 90000, "audio": 48000}


class _Line:
    """One track's RTP timestamps on the file's timeline (in its own clock units)."""

    def __init__(self, clock: int) -> None:
        self.clock = clock
        self.base_ts: int | None = None  # RTP timestamp at `base_pts`
        self.base_pts = 0
        self.last_pts = -1
        self.last_wall = 0.0

    def reanchor(self) -> None:
        self.base_ts = None

    def pts(self, ts: int, wall: float, file_start: float) -> int:
        if self.base_ts is None:
            if self.last_pts < 0:
                self.base_pts = int((wall - file_start) * self.clock)
            else:  # continue after a path change, by the wall time that passed
                self.base_pts = self.last_pts + max(int((wall - self.last_wall) * self.clock), 1)
            self.base_ts = ts
        d = (ts - self.base_ts) & 0xFFFFFFFF
        if d >= 0x80000000:
            d -= 0x100000000
        pts = max(self.base_pts + d, self.last_pts + 1)
        self.last_pts, self.last_wall = pts, wall
        return pts


class Recorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.stream = ""  # the stream (session) this file records
        self._container = None
        self._streams: dict[str, av.stream.Stream] = {}
        self._lines = {k: _Line(c) for k, c in CLOCK.items()}
        self._time_base = {k: fractions.Fraction(1, c) for k, c in CLOCK.items()}
        self._frames = Vp8Frames(self._video_frame)
        self._started = 0.0
        self.failed = ""
        self.video_frames = 0
        self.audio_packets = 0

    # -- input -----------------------------------------------------------------------------

    def new_segment(self, kind: str) -> None:
        self._lines[kind].reanchor()
        if kind == "video":
            self._frames.new_segment()

    def video_packet(self, seq: int, ts: int, marker: int, payload: bytes) -> None:
        if not self.failed:
            self._frames.packet(seq, ts, marker, payload)

    def audio_packet(self, seq: int, ts: int, payload: bytes) -> None:
        if self._container is None or self.failed:
            return  # the file starts at the first keyframe
        self._mux("audio", payload, ts, True)
        self.audio_packets += 1

    def _video_frame(self, data: bytes, ts: int, keyframe: bool) -> None:
        if self._container is None:
            size = vp8_keyframe_size(data) if keyframe else None
            if size is None or not self._open(*size):
                return
        self._mux("video", data, ts, keyframe)
        self.video_frames += 1

    # -- the file --------------------------------------------------------------------------

    def _open(self, width: int, height: int) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            c = av.open(str(self.path), "w", format="webm")
            v = c.add_stream("libvpx", rate=30)
            v.width, v.height, v.pix_fmt = width, height, "yuv420p"
            v.time_base = fractions.Fraction(1, CLOCK["video"])
            a = c.add_stream("libopus", rate=48000)
            a.layout = "stereo"
            a.time_base = fractions.Fraction(1, CLOCK["audio"])
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self._fail(f"cannot start {self.path}: {exc}")
            return False
        self._container = c
        self._streams = {"video": v, "audio": a}
        self._started = time.time()
        log.info("recording the programme to %s (%dx%d, VP8 + Opus as received)", self.path, width, height)
        return True

    def _mux(self, kind: str, data: bytes, ts: int, keyframe: bool) -> None:
        stream = self._streams[kind]
        pkt = av.Packet(data)
        pkt.stream = stream
        pkt.time_base = self._time_base[kind]  # the muxer rescales to its own (WebM: 1 ms)
        pkt.pts = pkt.dts = self._lines[kind].pts(ts, time.time(), self._started)
        pkt.is_keyframe = keyframe
        try:
            self._container.mux(pkt)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self._fail(f"writing {self.path} failed: {exc}")

    def _fail(self, why: str) -> None:
        self.failed = why
        log.warning("recording stopped: %s", why)
        self.close()

    def close(self) -> None:
        c, self._container = self._container, None
        if c is not None:
            try:
                c.close()
            except (av.error.FFmpegError, OSError, ValueError) as exc:
                log.warning("closing %s: %s", self.path, exc)

    @property
    def duration_s(self) -> float:
        line = self._lines["video"]
        return max(line.last_pts, 0) / line.clock
