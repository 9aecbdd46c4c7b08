"""The floor at a hall: speaking (publishing its camera and microphone) or watching another hall speak.

Given the floor, the hall publishes by WHIP to its own relay, which sends it up the tree to
the origins; every other hall of the session subscribes to it from its own relay as the
programme's second track. The hall's own viewers (the player page) find it as stream
"floor" on the hall daemon, next to "programme". That local stream is always there (its
tracks exist before any floor is given and outlive every speaker), so the page keeps its
subscription to it open and a new speaker costs it only the speaker's first keyframe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from diemcau import messages as m
from relay.follow import Follower
from relay.forward import Forwarder
from relay.studio import Studio

from .frames import Vp8Frames
from .verify import TrackVerifier

if TYPE_CHECKING:
    from .daemon import HallDaemon

log = logging.getLogger(__name__)

HISTORY = 20  # floors remembered for the stats
LOCAL_FLOOR = "floor"  # the stream name the hall's own viewers subscribe to
LOCAL_CAMERA = "camera"  # what the projector page publishes when the hall speaks (camera "browser")
# the codecs every floor is carried in (the relays' and the studios' VP8 and Opus): the local
# "floor" stream's tracks are made with them up front, so a page can subscribe before any floor
LOCAL_FLOOR_CODECS = {
    "video": RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
    "audio": RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111),
}
# after a handover, no keyframe is asked upstream until the new speaker's first one has passed:
# a request could still reach the previous speaker, whose keyframe would then pass for the new one's
HANDOVER_QUIET_S = 1.5


class FloorRole:
    def __init__(self, hall: HallDaemon) -> None:
        self.hall = hall
        self.speaking = ""  # the floor stream this hall publishes, when it holds the floor
        self._camera: Studio | None = None
        self._camera_task: asyncio.Task | None = None
        self._forwarder: Forwarder | None = None  # camera "browser": the page's capture, sent up
        self.stream = ""  # the floor stream this hall watches
        self.speaker = ""
        self.given_at = 0.0
        self.first_keyframe_at = 0.0
        self.verifier: TrackVerifier | None = None
        self._follower: Follower | None = None
        self._frames: Vp8Frames | None = None
        self.history: list[list] = []  # [speaker, given at, reach ms] of recent floors
        self._follower_task: asyncio.Task | None = None
        self._requester = None  # the floor subscription's keyframe request (its relay's PLI)
        self._quiet: asyncio.TimerHandle | None = None  # a handover's quiet time: no keyframe requests
        if hall.local is not None:
            src = hall.local.core.source(LOCAL_FLOOR, create=True)
            for kind, codec in LOCAL_FLOOR_CODECS.items():
                src.track_for(kind, codec)

    # -- speaking ------------------------------------------------------------------------------

    async def publish(self, msg: m.FloorPublish) -> None:
        await self._stop_camera()
        if not msg.stream:
            log.info("%s: floor taken back", self.hall.s.hall)
            return
        if self.hall.local is not None:
            self.hall.local.core.set_info(hand=False)  # it has the floor: the hand it raised is answered
        s = self.hall.s
        self.speaking = msg.stream
        if s.camera == "browser" and self.hall.local is not None:
            # the projector page captures the camera (getUserMedia) and publishes it here as
            # "camera"; the daemon sends those packets on to its relay, untouched
            core = self.hall.local.core
            core.expected.add(LOCAL_CAMERA)
            core.set_info(speaking=msg.stream)
            self._forwarder = Forwarder(core, LOCAL_CAMERA, [(msg.whip_url, msg.token)], s.ice_servers)
            self._forwarder.start()
            log.info("%s has the floor: its projector page's camera goes to %s", s.hall, msg.whip_url)
            return
        self._camera = Studio(msg.whip_url, msg.token, width=320, height=180, fps=15,
                              ice_servers=s.ice_servers, source=s.camera)
        self._camera_task = asyncio.ensure_future(self._camera.run())
        log.info("%s has the floor: publishing its camera to %s", s.hall, msg.whip_url)

    async def _stop_camera(self) -> None:
        cam, task = self._camera, self._camera_task
        self._camera = self._camera_task = None
        self.speaking = ""
        fw, self._forwarder = self._forwarder, None
        if fw is not None:
            await fw.stop()
        if self.hall.local is not None:
            self.hall.local.core.set_info(speaking="")
        if cam is not None and task is not None:
            cam.stop()
            try:
                await asyncio.wait_for(task, 5)
            except asyncio.TimeoutError:
                task.cancel()

    # -- watching ------------------------------------------------------------------------------

    async def follow(self, msg: m.Floor) -> None:
        if msg.stream == self.stream and self._follower is not None and msg.stream:
            # the floor passed to another hall of the session (the same stream, the subscription
            # stays), or the same floor from another relay (the hall was re-planned), or a fresh token
            if msg.speaker != self.speaker:
                self.speaker, self.given_at, self.first_keyframe_at = msg.speaker, msg.given_at, 0.0
                if self.verifier is not None:
                    self.verifier.new_source()
                if self._frames is not None:
                    self._frames.new_source()
                # the hall's own viewers re-anchor at the new speaker's keyframe (its first frame):
                # meanwhile no keyframe is asked for, lest the previous speaker answer
                if self._quiet is not None:
                    self._quiet.cancel()
                self._quiet = asyncio.get_running_loop().call_later(HANDOVER_QUIET_S, self._end_quiet)
                self._set_requester()
                for up in self._local_tracks():
                    up.new_upstream()
                log.info("%s: the floor passed to %s", self.hall.s.hall, msg.speaker)
                self._show()
            self._follower.assign(m.Assign(stream=msg.stream, upstream=msg.whep_url, whep_url=msg.whep_url,
                                           token=msg.token))
            return
        await self._stop_follower()
        if not msg.stream:
            return
        self.stream, self.speaker, self.given_at = msg.stream, msg.speaker, msg.given_at
        self._show()
        self.first_keyframe_at = 0.0
        self.verifier = None
        self._follower = Follower(self._sinks, self._lost, self.hall.s.ice_servers, stall_s=2.0,
                                  connect_timeout_s=self.hall.s.connect_timeout_s, name="floor",
                                  on_connected=self._connected)
        self._follower.assign(m.Assign(stream=msg.stream, upstream=msg.whep_url, whep_url=msg.whep_url, token=msg.token))
        self._follower_task = asyncio.ensure_future(self._follower.run())
        log.info("%s: the floor is %s's: following %s", self.hall.s.hall, msg.speaker, msg.whep_url)

    def _local_tracks(self) -> list:
        local = self.hall.local
        src = local.core.sources.get(LOCAL_FLOOR) if local is not None else None
        return list(src.tracks.values()) if src is not None else []

    def _set_requester(self) -> None:
        """The local floor's keyframe requests go up through the floor subscription, except
        while a handover waits for the new speaker's first keyframe."""
        quiet = self._quiet is not None
        for up in self._local_tracks():
            if up.kind == "video":
                up.set_keyframe_requester(None if quiet else self._requester)
                if not quiet and up.waiting:
                    up.request_keyframe()

    def _end_quiet(self) -> None:
        """The new speaker's first keyframe passed (or the quiet time ran out): ask freely again."""
        if self._quiet is not None:
            self._quiet.cancel()
            self._quiet = None
            self._set_requester()

    def _connected(self, sub) -> None:
        """The hall's own viewers (its projector page) ask for keyframes through this subscription."""
        self._requester = sub.request_keyframe
        self._set_requester()

    async def _lost(self, upstream: str, reason: str) -> None:
        log.info("floor %s: %s (retrying)", self.stream, reason)

    def _sinks(self, kind, codec):
        local = self.hall.local
        up = None
        if local is not None:
            src = local.core.source(LOCAL_FLOOR, create=True)
            local.core.expected.add(LOCAL_FLOOR)
            up = src.track_for(kind, codec)
            src.publisher = "upstream"
            up.new_upstream()  # the floor is another hall's camera each time: viewers wait for its keyframe
        if kind != "video":
            return (up.on_packet if up is not None else (lambda p: None)), (up.on_sr if up is not None else None)
        if self.verifier is None:
            self.verifier = TrackVerifier("video", codec.clockRate)
        else:
            self.verifier.new_segment()
        verify = self.verifier.on_packet
        frames = self._frames = Vp8Frames(self._frame)

        def on_packet(packet) -> None:
            verify(packet.sequence_number, packet.timestamp, packet.marker, packet.payload)
            if not self.first_keyframe_at:
                frames.packet(packet.sequence_number, packet.timestamp, packet.marker, packet.payload)
            if up is not None:
                up.on_packet(packet)

        return on_packet, (up.on_sr if up is not None else None)

    def _frame(self, data: bytes, ts: int, keyframe: bool) -> None:
        if keyframe and not self.first_keyframe_at:
            self.first_keyframe_at = time.time()
            self._end_quiet()
            if self.given_at:
                self.history.append([self.speaker, self.given_at, round((self.first_keyframe_at - self.given_at) * 1000, 1)])
                del self.history[:-HISTORY]
            log.info("floor %s: first keyframe %.0f ms after it was given", self.stream,
                     (self.first_keyframe_at - self.given_at) * 1000 if self.given_at else -1)

    async def _stop_follower(self) -> None:
        f, task = self._follower, self._follower_task
        self._follower = self._follower_task = None
        self.stream = self.speaker = ""
        self._requester = None
        self._end_quiet()
        self._set_requester()  # the stopped subscription is asked for nothing more
        if f is not None:
            f.stop()
        if task is not None:
            try:
                await asyncio.wait_for(task, 5)
            except asyncio.TimeoutError:
                task.cancel()
        local = self.hall.local
        if local is not None:
            local.core.expected.discard(LOCAL_FLOOR)
        self._show()

    def _show(self) -> None:
        """What the hall's player page puts in its corner: the speaker, while another hall speaks."""
        if self.hall.local is not None:
            self.hall.local.core.set_info(floor=self.speaker if self.stream else "")

    # -- state ---------------------------------------------------------------------------------

    def fill(self, st: m.HallStats) -> None:
        st.floor_history = list(self.history)
        if self.speaking:
            st.floor, st.floor_speaker = self.speaking, self.hall.s.hall
            if self._camera is not None:
                st.floor_frames = self._camera.frames_sent
        elif self.stream:
            st.floor, st.floor_speaker = self.stream, self.speaker
            st.floor_frames = self.verifier.frames if self.verifier is not None else 0
            st.floor_first_keyframe_at = self.first_keyframe_at
            if self.first_keyframe_at and self.given_at:
                st.floor_reach_ms = round((self.first_keyframe_at - self.given_at) * 1000, 1)

    async def stop(self) -> None:
        await self._stop_camera()
        await self._stop_follower()
