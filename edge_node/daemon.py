"""The hall daemon: registers with the orchestrator, follows its assignment, verifies, reports."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from diemcau import __version__
from diemcau import messages as m
from diemcau.control_client import ControlClient
from relay.compat import check_aiortc
from relay.ice import restrict_ice_addresses
from relay.paths import DualPath

from .qoe import QoeMonitor, QoeSettings
from .floor import LOCAL_FLOOR, FloorRole
from .recorder import Recorder
from .settings import EdgeSettings
from .verify import TrackVerifier

log = logging.getLogger(__name__)


class HallDaemon:
    def __init__(self, settings: EdgeSettings) -> None:
        check_aiortc()
        restrict_ice_addresses(settings.ice_addresses)
        self.s = settings
        self.started_at = time.time()
        self.verifiers: dict[str, TrackVerifier] = {}
        self._sink_stream: dict[str, str] = {}  # kind -> the stream its sinks were last opened for
        self.paths = DualPath(
            self._sinks, self._on_lost, settings.ice_servers, settings.switch_after_ms / 1000,
            settings.stall_s, settings.connect_timeout_s, on_switch=self._on_switch, hitless=settings.hitless,
        )
        self.switch_log: list[tuple[float, str, str, float]] = []
        self.control = ControlClient(
            settings.orchestrator_url, settings.credential, self._hello, self._heartbeat,
            self._on_message, settings.heartbeat_ms,
        )
        self._tasks: list[asyncio.Task] = []
        self.stream = "programme"  # the stream it follows upstream (its session's)
        self.session = ""  # the live session it takes part in ("": the default programme)
        self.session_title = ""
        self.local = LocalViewers(settings) if settings.viewers_port >= 0 and settings.media_public_key else None
        if self.local is not None:
            self.local.core.on_hand = self._hand  # the projector page's "raise hand"
        self.recorder: Recorder | None = None  # the programme as received, to a file per session
        self.floor = FloorRole(self)
        self.qoe = QoeMonitor(QoeSettings(frozen_after_s=settings.qoe_frozen_after_s,
                                          black_after_s=settings.qoe_black_after_s,
                                          silent_after_s=settings.qoe_silent_after_s)) if settings.qoe else None

    def _sinks(self, kind: str, codec):
        # Counters survive resubscription: the hall's record covers the whole run.
        # another stream than this track's last one: the hall's session changed (a new programme,
        # not the same one by another path)
        new_source = self._sink_stream.get(kind, self.stream) != self.stream
        self._sink_stream[kind] = self.stream
        v = self.verifiers.get(kind)
        if v is None or v.clock_rate != codec.clockRate:
            v = self.verifiers[kind] = TrackVerifier(kind, codec.clockRate, self.s.freeze_ms)
        elif new_source:
            v.new_source()
        else:
            v.new_segment()
        up = None
        if self.local is not None:
            # The hall's own viewers (projector PC, screens, participants) subscribe here by WHEP;
            # a path switch continues their stream by picture id, with no keyframe wait.
            # local viewers always find the hall's programme under one name, whichever session it is
            src = self.local.core.source(self.s.local_stream, create=True)
            first = kind not in src.tracks
            up = src.track_for(kind, codec)
            src.publisher = "upstream"
            up.set_keyframe_requester(self.paths.request_keyframe)
            if first or new_source:
                up.new_upstream()  # local viewers wait for the new programme's keyframe
            else:
                up.continue_upstream()
        verify = v.on_packet
        qoe = self.qoe
        if qoe is not None:
            (qoe.new_source if new_source else qoe.new_segment)(kind)
        rec = self._recorder()
        if rec is not None:
            rec.new_segment(kind)
        # what else reads this track's packets: (seq, ts, marker, payload) for video, (seq, ts, payload) for audio
        readers = []
        if kind == "video":
            readers = [r.video_packet for r in (qoe, rec) if r is not None]
        elif kind == "audio":
            readers = [r.audio_packet for r in (qoe, rec) if r is not None]
        video = kind == "video"
        clock = codec.clockRate

        def on_packet(packet) -> None:
            verify(packet.sequence_number, packet.timestamp, packet.marker, packet.payload)
            for read in readers:
                if video:
                    read(packet.sequence_number, packet.timestamp, packet.marker, packet.payload)
                else:
                    read(packet.sequence_number, packet.timestamp, packet.payload)
            if up is not None:
                up.on_packet(packet)

        def on_sr(ntp: int, rtp_ts: int) -> None:
            v.on_sr(ntp, rtp_ts)
            if qoe is not None:
                qoe.sender_report(kind, ntp, rtp_ts, clock)
            if up is not None:
                up.on_sr(ntp, rtp_ts)

        return on_packet, on_sr

    def _recorder(self) -> Recorder | None:
        """The recording of the current stream (one file per session), started on first media."""
        if not self.s.record_dir:
            return None
        what = self.session or self.stream  # one file per session (or per stream outside sessions)
        if self.recorder is None or self.recorder.stream != what:
            if self.recorder is not None:
                self.recorder.close()
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            self.recorder = Recorder(Path(self.s.record_dir) / f"{self.s.hall}-{what}-{stamp}.webm")
            self.recorder.stream = what
        return self.recorder

    def _on_switch(self, old: str, new: str, stalled_s: float) -> None:
        self.switch_log.append((time.time(), old, new, stalled_s))
        del self.switch_log[:-20]

    async def _on_lost(self, upstream: str, reason: str) -> None:
        await self.control.send(m.MediaLost(upstream=upstream, reason=reason))

    async def _hand(self, up: bool) -> bool:
        """The projector page raised (or lowered) the hall's hand: tell the orchestrator's queue."""
        ok = await self.control.send(m.RaiseHand(up=up))
        log.info("%s %s its hand%s", self.s.hall, "raises" if up else "lowers", "" if ok else " (not sent: no control channel)")
        return bool(ok)

    async def _on_message(self, msg: m.Msg) -> None:
        if isinstance(msg, m.FloorPublish):
            await self.floor.publish(msg)
        elif isinstance(msg, m.Floor):
            await self.floor.follow(msg)
        elif isinstance(msg, m.Assign):
            log.info("%s assigned to %s", self.s.hall, msg.upstream)
            if (msg.stream, msg.session) != (self.stream, self.session):
                log.info("%s follows %s (%s)", self.s.hall, msg.session or "the default programme", msg.stream)
            self.stream, self.session, self.session_title = msg.stream, msg.session, msg.session_title
            if self.local is not None:
                self.local.core.set_info(hall=self.s.hall, session=self.session, title=self.session_title)
            if self.local is not None:
                self.local.core.expected.add(self.s.local_stream)
            if msg.hitless is not None:
                self.paths.set_hitless(msg.hitless)
            if msg.layer is not None:
                self.paths.set_layer_policy({"floor": msg.layer.floor, "ceiling": msg.layer.ceiling,
                                             "audio_only": msg.layer.audio_only})
            self.paths.assign(msg)

    def _hello(self) -> m.Hello:
        return m.Hello(node=self.s.hall, kind="hall", version=__version__, relay=self.paths.active.upstream,
                       whep_url=self.local.url if self.local is not None else "",
                       capacity=self.s.viewer_capacity if self.local is not None else 0)

    def stats(self) -> m.HallStats:
        v = self.verifiers.get("video")
        a = self.verifiers.get("audio")
        f = self.paths.active
        b = self.paths.backup
        st = m.HallStats(state=f.state, relay=f.upstream, backup=b.upstream, backup_state=b.state,
                         reconnects=max(f.connects + b.connects - 1, 0), switches=self.paths.switches,
                         hitless=self.paths.hitless, session=self.session, stream=self.stream)
        if self.paths.hitless:
            st.merged_duplicates = sum(p["duplicates"] for m in self.paths.merge_stats().values() for p in m["paths"])
        if v is not None:
            total = v.packets + v.lost
            st.frames_received = v.frames
            st.frames_expected = v.frames_expected()
            st.frames_incomplete = v.frames_incomplete
            st.frames_missing = v.frames_missing
            st.max_freeze_ms = v.max_gap_ms
            st.gaps = [list(g) for g in v.gaps]
            st.packets_received = v.packets
            st.packets_lost = v.lost
            st.first_frame_at = v.first_frame_at
            st.first_frame_ms = (v.first_frame_at - self.started_at) * 1000 if v.first_frame_at else -1.0
            st.latency_ms_p50 = v.latency.percentile(0.5)
            st.latency_ms_p95 = v.latency.percentile(0.95)
            st.fps = v.fps()
            st.bitrate_kbps = v.bitrate_kbps() + (a.bitrate_kbps() if a else 0.0)
            st.loss_pct = round(100.0 * v.lost / total, 3) if total else 0.0
            st.freezes = v.freezes_last_minute()
            st.last_media_ms_ago = (time.time() - v.last_packet_at) * 1000 if v.last_packet_at else -1.0
            if f.state == "receiving" and v.last_packet_at and time.time() - v.last_packet_at > 0.5:
                st.state = "stalled"
        if a is not None:
            st.audio_packets = a.packets
        self.floor.fill(st)
        if self.recorder is not None:
            st.recording = str(self.recorder.path) if not self.recorder.failed else ""
            st.recorded_s = round(self.recorder.duration_s, 1)
        if self.qoe is not None:
            q = self.qoe
            st.qoe_alarms = q.alarms
            st.qoe_raised_at = dict(q.raised_at)
            st.qoe_frames_decoded = q.frames_decoded
            st.av_drift_ms = q.av_drift_ms
            st.audio_level_dbfs = round(q.audio_level_dbfs, 1)
        if self.local is not None:
            # a projector page's floor corner is the same viewer as its programme: not counted again
            st.viewers = sum(1 for x in self.local.core.subscribers.values() if x.source.name != LOCAL_FLOOR)
        return st

    def _heartbeat(self, seq: int) -> m.Heartbeat:
        return m.Heartbeat(seq=seq, hall=self.stats(), sent_ms=int(time.time() * 1000))

    async def start_async(self) -> None:
        if self.local is not None:
            await self.local.start()
        self.start()

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self.control.run())]
        if self.qoe is not None:
            self._tasks.append(asyncio.ensure_future(self._judge_qoe()))
        self.paths.start()

    async def _judge_qoe(self) -> None:
        assert self.qoe is not None
        raised: list[str] = []
        while True:
            await asyncio.sleep(self.qoe.s.sample_interval_s)
            self.qoe.sample()
            if self.qoe.alarms != raised:
                raised = self.qoe.alarms
                await self.control.send(self._heartbeat(0))  # an alarm reaches the console now, not at the next beat

    async def stop(self) -> None:
        self.control.stop()
        await self.floor.stop()
        for t in self._tasks[1:]:
            t.cancel()
        await self.paths.stop()
        if self.local is not None:
            await self.local.stop()
        if self.recorder is not None:
            self.recorder.close()
        _, pending = await asyncio.wait(self._tasks, timeout=3.0) if self._tasks else (None, [])
        for t in pending:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class LocalViewers:
    """The hall's WHEP server for its own viewers: a relay core fed by the hall's active path."""

    def __init__(self, settings: EdgeSettings) -> None:
        from pathlib import Path

        from aiohttp import web

        from diemcau.tokens import MediaTokenVerifier
        from relay.app import CORE_KEY, make_app
        from relay.settings import RelaySettings

        self.rs = RelaySettings(id=settings.hall, role="edge", host=settings.viewers_host,
                                port=settings.viewers_port, ice_addresses=settings.ice_addresses,
                                ice_servers=settings.ice_servers, capacity=settings.viewer_capacity,
                                # the projector PC's browser publishes the hall's camera here for the floor
                                max_publishers=1 if settings.camera == "browser" else 0)
        verifier = MediaTokenVerifier.from_pem(Path(settings.media_public_key).read_bytes())
        self.app = make_app(self.rs, verifier)
        self.core = self.app[CORE_KEY]
        self.runner = web.AppRunner(self.app)
        self.url = ""
        self.tls_cert, self.tls_key = settings.tls_cert, settings.tls_key

    async def start(self) -> None:
        from aiohttp import web

        from diemcau.tls import scheme, server_context

        ssl_ctx = server_context(self.tls_cert, self.tls_key)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.rs.host, self.rs.port, ssl_context=ssl_ctx)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # the port chosen when 0 was asked
        self.url = f"{scheme(ssl_ctx is not None)}://{self.rs.host}:{port}"

    async def stop(self) -> None:
        await self.runner.cleanup()
