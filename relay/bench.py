"""Fan-out benchmark: diemcau's relay against plain aiortc, on the same programme, in one run.

Three measurements, one after the other so they never share the CPU:

1. **relay** -- an origin relay (``relay.app.make_app``) runs in *this* process; the test studio
   publishes to it by WHIP from its own process (``python -m diemcau studio``) and N WHEP
   subscribers (``relay.client.WhepSubscriber``) run in one or more other processes. Over a
   measured window after a warm-up, this process's CPU time (``time.process_time``: user + system,
   every thread) is divided by the packets the relay forwarded (sum of ``RtpOutput.packets`` over
   every subscriber). ``UpTrack.on_packet`` is wrapped here (class attribute, restored afterwards)
   to stamp ``time.time()`` on each packet entering the relay; subscribers stamp each packet at
   arrival. Both processes read the same clock; a subscriber's packet is matched to the relay's by
   undoing that subscriber's constant seq/ts offsets (``DownTrack.seq_offset``/``ts_offset``), and
   the payload length is checked. ``delivered_ratio`` = distinct (packet, subscriber) pairs received
   / (packets that entered the relay in the window x N): it counts anything the relay dropped too.
2. **aiortc passthrough** -- one process whose N ``RTCPeerConnection`` senders each get a track
   yielding pre-encoded ``av.Packet`` objects (aiortc's ``encoder.pack()`` path: per-subscriber VP8
   packetization, ``RtpPacket`` serialization, SRTP, send). The VP8 frames are the studio's own
   pattern, encoded once by aiortc's VP8 encoder at the studio's size, rate and bitrate; Opus
   packets likewise. Its CPU per packet sent is the baseline.
3. **aiortc MediaRelay** -- one process receiving the studio by WHIP (a minimal endpoint here),
   decoding, and re-encoding per subscriber through ``aiortc.contrib.media.MediaRelay``. N is ramped
   (5, 10, 20, 30, 50, 70, 100, 150, 200, capped at the requested N and by a time budget); it
   collapses when subscribers get fewer than 90 % of the studio's frames or its CPU exceeds 190 %.

Every peer connection has an explicit empty ICE server list and loopback-only host candidates.
Each window also records the whole machine's CPU use and the share of processes outside the
benchmark (``other_processes_cpu_pct``), since a shared machine disturbs latency figures.
Subscriber processes (not measured) receive into 64 KiB buffers instead of asyncio's 256 KiB,
which costs an mmap/mremap/munmap per datagram; the measured processes keep the default.

    python -m relay.bench --subscribers 70 --seconds 10 --json
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import sys
import tempfile
import time
from array import array
from pathlib import Path

KINDS = ("audio", "video")
STREAM = "programme"
MEDIARELAY_STEPS = (5, 10, 20, 30, 50, 70, 100, 150, 200)
COLLAPSE_FRAME_RATIO = 0.90
COLLAPSE_CPU_PCT = 190.0


class BenchError(RuntimeError):
    pass


# ================================================================================================
# Worker processes: JSON lines on stdin/stdout (the protocol's own copy of fd 1; stray prints go to
# stderr), one command at a time.
# ================================================================================================


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    from diemcau.service import die_with_parent

    die_with_parent()


def _codec_prefs(transceiver, kind: str, mime: str) -> None:
    from aiortc import RTCRtpSender

    caps = RTCRtpSender.getCapabilities(kind).codecs
    transceiver.setCodecPreferences([c for c in caps if c.mimeType.lower() == mime.lower()][:1])


class _MachineLoad:
    """CPU used during a window by the whole machine, by this benchmark's processes, and by others.

    From /proc (USER_HZ ticks), in % of one core (two cores: 200 %). The benchmark shares its
    machine; a large `other_processes_cpu_pct` means the window was disturbed.
    """

    HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, pids) -> None:
        self.pids = [os.getpid(), *pids]
        self._start = self._read()

    @staticmethod
    def _machine() -> int:
        try:
            with open("/proc/stat") as fh:
                f = [int(x) for x in fh.readline().split()[1:]]
            return sum(f[:8]) - f[3] - f[4]  # all but idle and iowait
        except (OSError, ValueError, IndexError):
            return 0

    def _tree(self) -> int:
        total = 0
        for pid in self.pids:
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except (OSError, ValueError, IndexError):
                pass
        return total

    def _read(self) -> tuple[float, int, int]:
        return time.monotonic(), self._machine(), self._tree()

    def result(self, prefix: str = "") -> dict:
        t1, m1, b1 = self._read()
        t0, m0, b0 = self._start
        scale = 100.0 / (self.HZ * max(t1 - t0, 1e-9))
        machine, bench = (m1 - m0) * scale, (b1 - b0) * scale
        return {
            f"{prefix}machine_cpu_busy_pct": round(machine, 1),
            f"{prefix}bench_processes_cpu_pct": round(bench, 1),
            f"{prefix}other_processes_cpu_pct": round(max(machine - bench, 0.0), 1),
        }


def _cpu_mark(extra: dict | None = None) -> dict:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out = {"cpu": time.process_time(), "wall": time.time(), "user": ru.ru_utime, "sys": ru.ru_stime}
    out.update(extra or {})
    return out


async def _wait_all_connected(pcs: list, timeout_s: float) -> int:
    from .peer import wait_connected

    results = await asyncio.gather(*(wait_connected(pc, timeout_s) for pc in pcs))
    return sum(1 for r in results if r)


async def _gather_limited(coros, limit: int) -> list:
    sem = asyncio.Semaphore(limit)

    async def one(c):
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros), return_exceptions=True)


class _SinkSub:
    """One receiving peer connection: counts packets, records (arrival, seq, ts, length) per kind."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.recording = False
        self.rec = {k: (array("d"), array("H"), array("I"), array("H")) for k in KINDS}
        self.packets = {k: 0 for k in KINDS}
        self.frames = 0
        self.pc = None
        self.whep = None

    def sinks(self, kind: str, codec):
        t_arr, s_arr, ts_arr, l_arr = self.rec[kind]
        counts = self.packets
        now = time.time
        sub = self
        video = kind == "video"

        def sink(packet) -> None:
            counts[kind] += 1
            if video and packet.marker:
                sub.frames += 1
            if sub.recording:
                t_arr.append(now())
                s_arr.append(packet.sequence_number)
                ts_arr.append(packet.timestamp)
                l_arr.append(len(packet.payload))

        return sink, None

    def reset(self) -> None:
        for arrays in self.rec.values():
            for a in arrays:
                del a[:]
        self.recording = True


class SinkWorker:
    """Subscribers: WHEP clients of a relay, or answerers of offers from an aiortc sender."""

    def __init__(self) -> None:
        self.subs: list[_SinkSub] = []
        self.http = None

    async def cmd_whep(self, url: str, subs: list, timeout_s: float = 30.0, concurrency: int = 8) -> dict:
        import aiohttp

        from .client import WhepSubscriber

        if self.http is None:
            self.http = aiohttp.ClientSession()

        async def connect(name: str, token: str):
            s = _SinkSub(name)
            s.whep = WhepSubscriber(url, token, s.sinks, ice_servers=[])
            s.pc = s.whep.pc
            self.subs.append(s)
            await s.whep.connect(self.http, timeout_s)

        results = await _gather_limited([connect(n, t) for n, t in subs], concurrency)
        failed = [f"{n}: {r}" for (n, _), r in zip(subs, results) if isinstance(r, BaseException)]
        return {"connected": len(subs) - len(failed), "failed": failed[:5]}

    async def cmd_answer(self, offers: list, concurrency: int = 8) -> dict:
        from aiortc import RTCSessionDescription
        from aiortc.codecs import is_rtx

        from .ice import new_peer_connection
        from .rtpin import RtpInput

        async def answer(name: str, sdp: str):
            s = _SinkSub(name)
            s.pc = pc = new_peer_connection([])
            self.subs.append(s)
            await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            for t in pc.getTransceivers():
                codec = next((c for c in t._codecs if not is_rtx(c)), None)
                if codec is not None and t.kind in KINDS:
                    RtpInput(t.receiver, t.kind, *s.sinks(t.kind, codec))
            return [name, pc.localDescription.sdp]

        results = await _gather_limited([answer(n, sdp) for n, sdp in offers], concurrency)
        errors = [repr(r) for r in results if isinstance(r, BaseException)]
        if errors:
            raise BenchError(f"{len(errors)} answers failed: {errors[0]}")
        return {"answers": results}

    async def cmd_reset(self) -> dict:
        for s in self.subs:
            s.reset()
        return {"at": time.time()}

    async def cmd_counts(self) -> dict:
        return {
            "packets": {k: sum(s.packets[k] for s in self.subs) for k in KINDS},
            "frames": sum(s.frames for s in self.subs),
            "subs": len(self.subs),
            "connected": sum(1 for s in self.subs if s.pc is not None and s.pc.connectionState == "connected"),
        }

    async def cmd_dump(self, path: str) -> dict:
        import numpy as np

        for s in self.subs:
            s.recording = False
        arrays = {}
        for i, s in enumerate(self.subs):
            for kind, (t, seq, ts, ln) in s.rec.items():
                arrays[f"{i}|{kind}|t"] = np.frombuffer(t, dtype=np.float64).copy() if len(t) else np.zeros(0)
                arrays[f"{i}|{kind}|seq"] = np.array(seq, dtype=np.int64)
                arrays[f"{i}|{kind}|ts"] = np.array(ts, dtype=np.int64)
                arrays[f"{i}|{kind}|len"] = np.array(ln, dtype=np.int64)
        np.savez(path, **arrays)
        return {"names": [s.name for s in self.subs], "path": path}

    async def cmd_close(self) -> dict:
        async def close(s: _SinkSub):
            if s.whep is not None:
                await s.whep.close(self.http)
            elif s.pc is not None:
                await s.pc.close()

        await _gather_limited([close(s) for s in self.subs], 16)
        if self.http is not None:
            await self.http.close()
        return {}


def _encode_programme(width: int, height: int, fps: int, bitrate: int, loop_s: float):
    """The studio's pattern and tone, encoded once by aiortc's own encoders (VP8 frames, Opus packets)."""
    import numpy as np
    from aiortc.codecs import get_encoder
    from aiortc.codecs.vpx import vp8_depayload
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters
    from av import AudioFrame

    from .studio import AUDIO_PTIME, AUDIO_RATE, VIDEO_CLOCK, PatternGenerator

    venc = get_encoder(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=VIDEO_CLOCK, payloadType=96))
    venc.target_bitrate = bitrate
    pattern = PatternGenerator(width, height)
    frames = []
    t0 = time.time()
    for i in range(max(int(loop_s * fps), 1)):
        vf = pattern.frame(i, t0 + i / fps)
        vf.pts = i * (VIDEO_CLOCK // fps)
        vf.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        payloads, _ = venc.encode(vf, i == 0)  # one keyframe per loop
        frames.append(b"".join(vp8_depayload(p) for p in payloads))
    aenc = get_encoder(RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111))
    n = int(AUDIO_RATE * AUDIO_PTIME)
    tone = (np.sin(2 * np.pi * 440 * np.arange(n) / AUDIO_RATE) * 6000).astype(np.int16)
    click = tone.copy()
    click[:48] = 30000
    audio = []
    for i in range(int(1 / AUDIO_PTIME)):
        samples = click if i == 0 else tone
        af = AudioFrame.from_ndarray(np.repeat(samples, 2).reshape(1, -1), format="s16", layout="stereo")
        af.sample_rate = AUDIO_RATE
        af.pts = i * n
        af.time_base = fractions.Fraction(1, AUDIO_RATE)
        payloads, _ = aenc.encode(af)
        audio.extend(payloads)
    return frames, audio


class PassthroughSender:
    """Plain aiortc: N peer connections whose tracks yield pre-encoded av.Packet objects."""

    prefix = "pt"

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.audio: list[bytes] = []
        self.fps = 30
        self.pcs: list = []
        self.senders: list = []
        self.tracks: dict[str, list] = {k: [] for k in KINDS}
        self.producer: asyncio.Task | None = None
        self.produced = {k: 0 for k in KINDS}

    async def cmd_prepare(self, width: int, height: int, fps: int, bitrate: int, loop_s: float) -> dict:
        self.fps = fps
        self.frames, self.audio = _encode_programme(width, height, fps, bitrate, loop_s)
        return {"frames": len(self.frames), "bytes_per_frame": sum(map(len, self.frames)) / len(self.frames),
                "audio_packets": len(self.audio)}

    async def cmd_offers(self, count: int) -> dict:
        from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

        from .ice import new_peer_connection

        class PacketTrack(MediaStreamTrack):
            def __init__(self, kind: str) -> None:
                super().__init__()
                self.kind = kind
                self.queue: asyncio.Queue = asyncio.Queue()

            async def recv(self):  # type: ignore[override]
                item = await self.queue.get()
                if item is None:
                    raise MediaStreamError
                return item

        async def offer(i: int):
            pc = new_peer_connection([])
            for kind, mime in (("video", "video/VP8"), ("audio", "audio/opus")):
                track = PacketTrack(kind)
                t = pc.addTransceiver(track, direction="sendonly")
                _codec_prefs(t, kind, mime)
                self.tracks[kind].append(track)
                self.senders.append(t.sender)
            self.pcs.append(pc)
            await pc.setLocalDescription(await pc.createOffer())
            return [f"{self.prefix}-{i}", pc.localDescription.sdp]

        start = len(self.pcs)
        return {"offers": [await offer(start + i) for i in range(count)]}

    async def cmd_answers(self, answers: list, timeout_s: float = 30.0) -> dict:
        from aiortc import RTCSessionDescription

        by_name = dict(answers)
        pending = []
        for i, pc in enumerate(self.pcs):
            sdp = by_name.get(f"{self.prefix}-{i}")
            if sdp is not None and pc.remoteDescription is None:
                await pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))
                pending.append(pc)
        if len(pending) != len(answers):
            raise BenchError(f"{len(answers)} answers matched {len(pending)} offers")
        return {"connected": await _wait_all_connected(pending, timeout_s), "asked": len(pending)}

    async def cmd_start(self) -> dict:
        self.producer = asyncio.ensure_future(self._produce())
        return {}

    async def _produce(self) -> None:
        import av

        vclock = 90000 // self.fps
        vbase = fractions.Fraction(1, 90000)
        abase = fractions.Fraction(1, 48000)
        m0 = time.monotonic()
        vn = an = 0
        while True:
            v_due = m0 + vn / self.fps
            a_due = m0 + an * 0.02
            wait = min(v_due, a_due) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if v_due <= a_due:
                packet = av.Packet(self.frames[vn % len(self.frames)])
                packet.pts = vn * vclock
                packet.time_base = vbase
                kind = "video"
                vn += 1
            else:
                packet = av.Packet(self.audio[an % len(self.audio)])
                packet.pts = an * 960
                packet.time_base = abase
                kind = "audio"
                an += 1
            for track in self.tracks[kind]:
                track.queue.put_nowait(packet)
            self.produced[kind] += 1

    async def cmd_mark(self) -> dict:
        packets = sum(s._RTCRtpSender__packet_count for s in self.senders)
        backlog = sum(t.queue.qsize() for tracks in self.tracks.values() for t in tracks)
        return _cpu_mark({"packets": packets, "produced": dict(self.produced), "backlog": backlog})

    async def cmd_close(self) -> dict:
        if self.producer is not None:
            self.producer.cancel()
        for tracks in self.tracks.values():
            for t in tracks:
                t.queue.put_nowait(None)
        await _gather_limited([pc.close() for pc in self.pcs], 16)
        return {}


class MediaRelayWorker:
    """aiortc's MediaRelay: a WHIP endpoint decoding the studio, N re-encoding subscribers."""

    prefix = "mr"

    def __init__(self) -> None:
        from aiortc.contrib.media import MediaRelay

        self.relay = MediaRelay()
        self.tracks: dict = {}
        self.decoded = {k: 0 for k in KINDS}
        self.pub_pc = None
        self.runner = None
        self.pcs: list = []
        self.senders: list = []
        self.tasks: list[asyncio.Task] = []

    async def cmd_serve(self) -> dict:
        from aiohttp import web
        from aiortc import RTCSessionDescription

        from .ice import new_peer_connection

        async def whip_post(request: web.Request) -> web.Response:
            offer = await request.text()
            if self.pub_pc is not None:
                await self.pub_pc.close()
            pc = self.pub_pc = new_peer_connection([])

            @pc.on("track")
            def on_track(track) -> None:
                self.tracks[track.kind] = track
                self.tasks.append(asyncio.ensure_future(self._drain(track)))

            await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            return web.Response(status=201, text=pc.localDescription.sdp, content_type="application/sdp",
                                headers={"Location": f"/whip/{request.match_info['stream']}/1"})

        async def whip_delete(request: web.Request) -> web.Response:
            return web.Response(status=200)

        app = web.Application()
        app.router.add_post("/whip/{stream}", whip_post)
        app.router.add_delete("/whip/{stream}/{session}", whip_delete)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        port = _free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        return {"port": port}

    async def _drain(self, track) -> None:
        """Keeps the relay reading (and so the receiver decoding) and counts decoded frames."""
        from aiortc.mediastreams import MediaStreamError

        proxy = self.relay.subscribe(track)
        try:
            while True:
                await proxy.recv()
                self.decoded[track.kind] += 1
        except MediaStreamError:
            pass

    async def cmd_status(self) -> dict:
        return {"tracks": sorted(self.tracks), "decoded": dict(self.decoded)}

    async def cmd_offers(self, count: int) -> dict:
        from .ice import new_peer_connection

        offers = []
        start = len(self.pcs)
        for i in range(count):
            pc = new_peer_connection([])
            for kind, mime in (("video", "video/VP8"), ("audio", "audio/opus")):
                t = pc.addTransceiver(self.relay.subscribe(self.tracks[kind]), direction="sendonly")
                _codec_prefs(t, kind, mime)
                self.senders.append(t.sender)
            self.pcs.append(pc)
            await pc.setLocalDescription(await pc.createOffer())
            offers.append([f"{self.prefix}-{start + i}", pc.localDescription.sdp])
        return {"offers": offers}

    cmd_answers = PassthroughSender.cmd_answers

    async def cmd_mark(self) -> dict:
        packets = sum(s._RTCRtpSender__packet_count for s in self.senders)
        return _cpu_mark({"packets": packets, "decoded": dict(self.decoded)})

    async def cmd_close(self) -> dict:
        for t in self.tasks:
            t.cancel()
        await _gather_limited([pc.close() for pc in self.pcs], 16)
        if self.pub_pc is not None:
            await self.pub_pc.close()
        if self.runner is not None:
            await self.runner.cleanup()
        return {}


WORKERS = {"sink": SinkWorker, "ptsend": PassthroughSender, "mediarelay": MediaRelayWorker}


def _worker_main(role: str) -> int:
    import logging

    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything printed goes to stderr, never into the protocol
    _die_with_parent()
    logging.basicConfig(level=logging.WARNING, format=f"%(asctime)s bench-{role} %(levelname)s %(name)s: %(message)s")
    from .ice import restrict_ice_addresses

    restrict_ice_addresses(["127.0.0.1"])
    if role == "sink":
        # asyncio receives each datagram into a fresh 256 KiB buffer (an mmap, mremap and munmap
        # per packet); 64 KiB still holds any UDP datagram and comes from the heap. Subscribers
        # only: the processes measured keep asyncio's default.
        from asyncio import selector_events

        selector_events._SelectorDatagramTransport.max_size = 64 * 1024

    async def serve() -> None:
        handler = WORKERS[role]()
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 28)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                break
            msg = json.loads(line)
            cmd = msg.pop("cmd")
            try:
                result = await getattr(handler, "cmd_" + cmd)(**msg)
            except Exception as exc:  # reported to the coordinator, which fails the run
                logging.getLogger("bench").exception("command %s failed", cmd)
                result = {"error": f"{type(exc).__name__}: {exc}"}
            proto.write(json.dumps(result).encode() + b"\n")
            if cmd == "close":
                break

    asyncio.run(serve())
    return 0


# ================================================================================================
# The coordinator (this process, which is also the relay under test).
# ================================================================================================


class Worker:
    def __init__(self, role: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.role = role
        self.proc = proc
        self.log_path = log_path

    @classmethod
    async def start(cls, role: str, tmp: Path, index: int = 0) -> "Worker":
        log_path = tmp / f"{role}-{index}.log"
        with open(log_path, "wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "relay.bench", "--worker", role,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                limit=1 << 28, preexec_fn=_die_with_parent,
            )
        return cls(role, proc, log_path)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    async def call(self, cmd: str, timeout: float = 120.0, **kw) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}).encode() + b"\n")
        await self.proc.stdin.drain()
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            raise BenchError(f"{self.role} worker: {cmd} took more than {timeout:.0f} s") from None
        if not line:
            raise BenchError(f"{self.role} worker exited during {cmd}: {self._log_tail()}")
        msg = json.loads(line)
        if "error" in msg:
            raise BenchError(f"{self.role} worker: {cmd}: {msg['error']}")
        return msg

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                await self.call("close", timeout=20)
            except (BenchError, OSError, ConnectionError):
                pass
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class StudioProcess:
    """`python -m diemcau studio`, publishing by WHIP; its stats file gives frames sent."""

    def __init__(self, proc: asyncio.subprocess.Process, stats: Path) -> None:
        self.proc = proc
        self.stats = stats

    @classmethod
    async def start(cls, whip_url: str, token: str, args: argparse.Namespace, tmp: Path, tag: str) -> "StudioProcess":
        stats = tmp / f"studio-{tag}.json"
        env = dict(os.environ, DIEMCAU_STUDIO_TOKEN=token, DIEMCAU_LOG="WARNING")
        with open(tmp / f"studio-{tag}.log", "wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "diemcau", "studio", "--whip", whip_url,
                "--width", str(args.width), "--height", str(args.height), "--fps", str(args.fps),
                "--bitrate", str(args.bitrate), "--ice-addresses", "127.0.0.1", "--stats-file", str(stats),
                env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_die_with_parent,
            )
        return cls(proc, stats)

    def read(self) -> dict:
        try:
            return json.loads(self.stats.read_text())
        except (OSError, ValueError):
            return {}

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def _until(predicate, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


def _split(items: list, parts: int) -> list[list]:
    parts = max(1, min(parts, len(items)))
    return [items[i::parts] for i in range(parts)]


def _sub_procs(args: argparse.Namespace, n: int) -> int:
    return args.sub_procs or max(1, min(4, math.ceil(n / 50)))


def _pct(values, q: float) -> float | None:
    import numpy as np

    return None if len(values) == 0 else round(float(np.percentile(values, q)), 3)


def _studio_fps(a: dict, b: dict) -> float | None:
    if not a or not b or b.get("at", 0) <= a.get("at", 0):
        return None
    return round((b["frames_sent"] - a["frames_sent"]) / (b["at"] - a["at"]), 2)


# -- 1. diemcau's relay ---------------------------------------------------------------------------


async def bench_relay(args: argparse.Namespace, tmp: Path) -> dict:
    import numpy as np
    from aiohttp import web

    from diemcau.tokens import MediaTokenSigner, MediaTokenVerifier

    from . import ice
    from .app import CORE_KEY, make_app
    from .settings import RelaySettings
    from .uptrack import UpTrack

    n = args.subscribers
    signer = MediaTokenSigner.generate()
    verifier = MediaTokenVerifier.from_pem(signer.public_pem())
    port = _free_port()
    settings = RelaySettings(id="bench-origin", port=port, ice_addresses=["127.0.0.1"],
                             capacity=n + 10, connect_timeout_s=60.0)
    url = f"http://127.0.0.1:{port}"

    # Relay-input stamps: (arrival, seq, ts, payload length) per kind, only inside the window.
    # Also how long each packet's fan-out loop took (the last subscriber's copy leaves then).
    arrivals = {k: (array("d"), array("H"), array("I"), array("H")) for k in KINDS}
    fanout = array("d")
    recording = [False]
    orig_on_packet = UpTrack.on_packet
    now = time.time

    def on_packet(self, packet) -> None:
        if not recording[0]:
            return orig_on_packet(self, packet)
        t_arr, s_arr, ts_arr, l_arr = arrivals[self.kind]
        t0 = now()
        orig_on_packet(self, packet)
        fanout.append(now() - t0)
        t_arr.append(t0)
        s_arr.append(packet.sequence_number)
        ts_arr.append(packet.timestamp)
        l_arr.append(len(packet.payload))

    saved_ice = (ice._allowed, ice.aioice.ice.get_host_addresses)
    UpTrack.on_packet = on_packet  # type: ignore[method-assign]
    runner = None
    studio = None
    workers: list[Worker] = []
    try:
        app = make_app(settings, verifier)
        core = app[CORE_KEY]
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        studio = await StudioProcess.start(f"{url}/whip/{STREAM}", signer.mint("studio", STREAM, "pub", 3600),
                                           args, tmp, "relay")
        procs = _sub_procs(args, n)
        workers = list(await asyncio.gather(*(Worker.start("sink", tmp, i) for i in range(procs))))

        def source():
            return core.sources.get(STREAM)

        await _until(lambda: source() is not None and source().live and len(source().tracks) == 2,
                     30, "the studio's stream at the relay")
        subjects = [[f"bench-{i}", signer.mint(f"bench-{i}", STREAM, "sub", 3600)] for i in range(n)]
        results = await asyncio.gather(*(w.call("whep", url=f"{url}/whep/{STREAM}", subs=group, timeout_s=60.0)
                                         for w, group in zip(workers, _split(subjects, procs))))
        failed = [f for r in results for f in r["failed"]]
        if failed:
            raise BenchError(f"{len(failed)}+ WHEP subscribers failed: {failed[0]}")

        def downtracks():
            return [dt for s in core.subscribers.values() for dt in s.downtracks]

        await _until(lambda: len(core.subscribers) == n and all(dt.started for dt in downtracks()),
                     60, "every subscriber's first keyframe")
        await asyncio.sleep(args.warmup)

        def offsets() -> dict:
            return {s.subject: {dt.up.kind: (dt.seq_offset, dt.ts_offset) for dt in s.downtracks}
                    for s in core.subscribers.values()}

        await asyncio.gather(*(w.call("reset") for w in workers))
        offsets0 = offsets()
        dts = downtracks()
        out0 = sum(dt.output.packets for dt in dts)
        drop0 = sum(dt.output.dropped for dt in dts)
        rtx0 = sum(dt.retransmits for dt in dts)
        studio0 = studio.read()
        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile(time.process_time)  # CPU time: other processes do not count
        recording[0] = True
        load = _MachineLoad([w.proc.pid for w in workers] + [studio.proc.pid])
        mark0 = _cpu_mark()
        if profiler is not None:
            profiler.enable()
        await asyncio.sleep(args.seconds)
        if profiler is not None:
            profiler.disable()
        mark1 = _cpu_mark()
        load_result = load.result()
        recording[0] = False
        out1 = sum(dt.output.packets for dt in dts)
        drop1 = sum(dt.output.dropped for dt in dts)
        rtx1 = sum(dt.retransmits for dt in dts)
        studio1 = studio.read()
        if profiler is not None:
            profiler.dump_stats(args.profile)
        await asyncio.sleep(args.grace)
        dumps = await asyncio.gather(*(w.call("dump", path=str(tmp / f"sink-{i}.npz"))
                                       for i, w in enumerate(workers)))
        offsets1 = offsets()
    finally:
        UpTrack.on_packet = orig_on_packet  # type: ignore[method-assign]
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
        if studio is not None:
            await studio.stop()
        if runner is not None:
            await runner.cleanup()
        ice._allowed, ice.aioice.ice.get_host_addresses = saved_ice

    cpu = mark1["cpu"] - mark0["cpu"]
    wall = mark1["wall"] - mark0["wall"]
    forwarded = out1 - out0

    # Match every subscriber's packets to the relay's input stamps.
    kind_bit = {"audio": 0, "video": 1}
    keys, times, lens = [], [], []
    for kind, (t_arr, s_arr, ts_arr, l_arr) in arrivals.items():
        seq = np.array(s_arr, dtype=np.int64)
        ts = np.array(ts_arr, dtype=np.int64)
        keys.append((kind_bit[kind] << 48) | (seq << 32) | ts)
        times.append(np.frombuffer(t_arr, dtype=np.float64) if len(t_arr) else np.zeros(0))
        lens.append(np.array(l_arr, dtype=np.int64))
    rkeys = np.concatenate(keys)
    rtimes = np.concatenate(times)
    rlens = np.concatenate(lens)
    order = np.argsort(rtimes, kind="stable")
    rkeys, rtimes, rlens = rkeys[order], rtimes[order], rlens[order]
    ukeys, first = np.unique(rkeys, return_index=True)  # a packet sent twice upstream counts once
    utimes, ulens = rtimes[first], rlens[first]
    packets_in = int(len(ukeys))
    in_by_kind = {k: len(arrivals[k][0]) for k in KINDS}

    delivered = 0
    received = {k: 0 for k in KINDS}
    gaps = 0
    len_mismatch = 0
    outside = 0  # received before or after the window (subscribers record from just before to after it)
    latencies = {k: [] for k in KINDS}
    for dump in dumps:
        data = np.load(dump["path"])
        for i, name in enumerate(dump["names"]):
            offs = offsets0.get(name, {})
            for kind in KINDS:
                t = data[f"{i}|{kind}|t"]
                if not len(t) or kind not in offs:
                    continue
                seq = data[f"{i}|{kind}|seq"]
                ts = data[f"{i}|{kind}|ts"]
                ln = data[f"{i}|{kind}|len"]
                d = (np.diff(seq) & 0xFFFF)
                gaps += int(np.sum(np.where((d >= 1) & (d < 0x8000), d - 1, 0)))
                seq_off, ts_off = offs[kind]
                key = (kind_bit[kind] << 48) | (((seq - seq_off) & 0xFFFF) << 32) | ((ts - ts_off) & 0xFFFFFFFF)
                key_u, idx = np.unique(key, return_index=True)  # first arrival of each packet
                pos = np.searchsorted(ukeys, key_u)
                pos_c = np.minimum(pos, len(ukeys) - 1)
                hit = (pos < len(ukeys)) & (ukeys[pos_c] == key_u) if len(ukeys) else np.zeros(len(key_u), bool)
                outside += int(np.sum(~hit))
                ok = hit & (ulens[pos_c] == ln[idx])
                len_mismatch += int(np.sum(hit & ~ok))
                delivered += int(np.sum(ok))
                received[kind] += int(np.sum(ok))
                latencies[kind].append((t[idx][ok] - utimes[pos_c][ok]) * 1000.0)
    lat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in latencies.items()}
    if args.keep:
        np.savez(tmp / "latency.npz", **{f"{k}|{i}": a for k, v in latencies.items() for i, a in enumerate(v)},
                 **{f"relay|{k}|t": np.frombuffer(arrivals[k][0], dtype=np.float64) for k in KINDS if len(arrivals[k][0])})
    lat_all = np.concatenate([lat["audio"], lat["video"]])
    notes = []
    if offsets1 != offsets0:
        notes.append("a subscriber re-anchored during the run (seq/ts offsets changed)")
    expected = packets_in * n
    return {
        "packets_in": packets_in,
        "packets_in_audio": in_by_kind["audio"],
        "packets_in_video": in_by_kind["video"],
        "packets_forwarded": forwarded,
        "relay_retransmits": rtx1 - rtx0,
        "relay_packets_dropped": drop1 - drop0,
        "relay_cpu_s": round(cpu, 4),
        "relay_cpu_user_s": round(mark1["user"] - mark0["user"], 4),
        "relay_cpu_sys_s": round(mark1["sys"] - mark0["sys"], 4),
        "window_s": round(wall, 3),
        "us_per_packet": round(cpu / forwarded * 1e6, 3) if forwarded else None,
        "relay_cpu_pct": round(cpu / wall * 100, 2),
        "forward_rate_pps": round(forwarded / wall, 1),
        "forwarded_ratio": round(forwarded / expected, 5) if expected else None,
        "delivered_ratio": round(delivered / expected, 5) if expected else None,
        "delivered_ratio_basis": "distinct packets received by subscribers / (packets into the relay "
                                 "during the window x subscribers)",
        "subscriber_packets_audio": received["audio"],
        "subscriber_packets_video": received["video"],
        "subscriber_seq_gaps": gaps,
        "subscriber_packets_outside_window": outside,
        "payload_length_mismatches": len_mismatch,
        "latency_added_ms_p50": _pct(lat_all, 50),
        "latency_added_ms_p95": _pct(lat_all, 95),
        "latency_added_ms_p99": _pct(lat_all, 99),
        "latency_added_ms_max": round(float(lat_all.max()), 3) if len(lat_all) else None,
        "latency_added_ms_p50_video": _pct(lat["video"], 50),
        "latency_added_ms_p50_audio": _pct(lat["audio"], 50),
        "latency_samples": int(len(lat_all)),
        "relay_fanout_ms_p50": _pct(np.frombuffer(fanout, dtype=np.float64) * 1000, 50) if len(fanout) else None,
        "relay_fanout_ms_p95": _pct(np.frombuffer(fanout, dtype=np.float64) * 1000, 95) if len(fanout) else None,
        "relay_fanout_ms_max": round(max(fanout) * 1000, 3) if len(fanout) else None,
        "studio_fps": _studio_fps(studio0, studio1),
        **load_result,
        "subscriber_processes": len(workers),
        "profiled": bool(args.profile),
        "notes": notes,
    }


# -- 2. aiortc passthrough ------------------------------------------------------------------------


async def _connect_pairs(sender: Worker, sinks: list[Worker], count: int, timeout_s: float = 60.0) -> int:
    offers = (await sender.call("offers", count=count, timeout=300))["offers"]
    groups = _split(offers, len(sinks))
    replies = await asyncio.gather(*(w.call("answer", offers=g, timeout=300) for w, g in zip(sinks, groups)))
    answers = [a for r in replies for a in r["answers"]]
    result = await sender.call("answers", answers=answers, timeout_s=timeout_s, timeout=timeout_s + 30)
    if result["connected"] != result["asked"]:
        raise BenchError(f"{sender.role}: only {result['connected']} of {result['asked']} connections completed")
    return result["connected"]


async def _sink_counts(sinks: list[Worker]) -> dict:
    replies = await asyncio.gather(*(w.call("counts") for w in sinks))
    return {
        "packets": sum(r["packets"]["audio"] + r["packets"]["video"] for r in replies),
        "frames": sum(r["frames"] for r in replies),
    }


async def bench_passthrough(args: argparse.Namespace, tmp: Path) -> dict:
    n = args.subscribers
    procs = _sub_procs(args, n)
    sender = await Worker.start("ptsend", tmp)
    sinks: list[Worker] = []
    try:
        sinks = list(await asyncio.gather(*(Worker.start("sink", tmp, 100 + i) for i in range(procs))))
        prep = await sender.call("prepare", width=args.width, height=args.height, fps=args.fps,
                                 bitrate=args.bitrate, loop_s=10.0)
        await _connect_pairs(sender, sinks, n)
        await sender.call("start")
        await asyncio.sleep(args.warmup)
        load = _MachineLoad([sender.proc.pid] + [w.proc.pid for w in sinks])
        m0, c0 = await asyncio.gather(sender.call("mark"), _sink_counts(sinks))
        await asyncio.sleep(args.seconds)
        m1, c1 = await asyncio.gather(sender.call("mark"), _sink_counts(sinks))
        load_result = load.result("baseline_passthrough_")
    finally:
        await asyncio.gather(sender.stop(), *(w.stop() for w in sinks), return_exceptions=True)
    cpu = m1["cpu"] - m0["cpu"]
    wall = m1["wall"] - m0["wall"]
    packets = m1["packets"] - m0["packets"]
    return {
        "baseline_passthrough_us_per_packet": round(cpu / packets * 1e6, 3) if packets else None,
        "baseline_passthrough_cpu_pct": round(cpu / wall * 100, 2),
        "baseline_passthrough_cpu_user_s": round(m1["user"] - m0["user"], 4),
        "baseline_passthrough_cpu_sys_s": round(m1["sys"] - m0["sys"], 4),
        "baseline_passthrough_packets": packets,
        "baseline_passthrough_rate_pps": round(packets / wall, 1),
        "baseline_passthrough_source_fps": round((m1["produced"]["video"] - m0["produced"]["video"]) / wall, 2),
        "baseline_passthrough_backlog": m1["backlog"],
        **load_result,
        "baseline_passthrough_delivered_ratio": round((c1["packets"] - c0["packets"]) / packets, 5) if packets else None,
        "baseline_passthrough_bytes_per_frame": round(prep["bytes_per_frame"], 1),
    }


# -- 3. aiortc MediaRelay -------------------------------------------------------------------------


async def bench_mediarelay(args: argparse.Namespace, tmp: Path) -> dict:
    n = args.subscribers
    steps = [s for s in MEDIARELAY_STEPS if s < n] + [n]
    window = min(args.seconds, args.mediarelay_window)
    started = time.monotonic()
    mr = await Worker.start("mediarelay", tmp)
    sinks: list[Worker] = []
    studio = None
    ramp = []
    collapse_n = None
    cpu_at_n = None
    note = ""
    try:
        port = (await mr.call("serve"))["port"]
        studio = await StudioProcess.start(f"http://127.0.0.1:{port}/whip/{STREAM}", "unused", args, tmp, "mr")
        sinks = [await Worker.start("sink", tmp, 200)]

        async def tracks_ready() -> bool:
            return len((await mr.call("status"))["tracks"]) == 2

        deadline = time.monotonic() + 30
        while not await tracks_ready():
            if time.monotonic() > deadline:
                raise BenchError("MediaRelay worker never received the studio's tracks")
            await asyncio.sleep(0.2)
        connected = 0
        for step in steps:
            if time.monotonic() - started > args.mediarelay_budget:
                note = f"time budget ({args.mediarelay_budget:.0f} s) spent before N={step}"
                break
            want_procs = max(1, min(4, math.ceil(step / 50)))
            while len(sinks) < want_procs:
                sinks.append(await Worker.start("sink", tmp, 200 + len(sinks)))
            # new subscribers go to the least loaded sink (the last one started)
            await _connect_pairs(mr, [sinks[-1]], step - connected)
            connected = step
            await asyncio.sleep(args.warmup + 1.0)  # encoders start, first keyframes
            s0 = studio.read()
            load = _MachineLoad([mr.proc.pid, studio.proc.pid] + [w.proc.pid for w in sinks])
            m0, c0 = await asyncio.gather(mr.call("mark"), _sink_counts(sinks))
            await asyncio.sleep(window)
            s1 = studio.read()
            m1, c1 = await asyncio.gather(mr.call("mark"), _sink_counts(sinks))
            load_result = load.result()
            wall = m1["wall"] - m0["wall"]
            cpu_pct = (m1["cpu"] - m0["cpu"]) / wall * 100
            frames_per_sub_s = (c1["frames"] - c0["frames"]) / step / wall
            ratio = frames_per_sub_s / args.fps
            entry = {
                "n": step,
                "cpu_pct": round(cpu_pct, 1),
                "frames_per_sub_per_s": round(frames_per_sub_s, 2),
                "frame_ratio": round(ratio, 3),
                "decoded_fps": round((m1["decoded"]["video"] - m0["decoded"]["video"]) / wall, 2),
                "studio_fps": _studio_fps(s0, s1),
                **load_result,
                "us_per_packet": round((m1["cpu"] - m0["cpu"]) / (m1["packets"] - m0["packets"]) * 1e6, 2)
                if m1["packets"] > m0["packets"] else None,
            }
            ramp.append(entry)
            if ratio < COLLAPSE_FRAME_RATIO or cpu_pct > COLLAPSE_CPU_PCT:
                collapse_n = step
                break
            if step == n:
                cpu_at_n = round(cpu_pct, 2)
    finally:
        if studio is not None:
            await studio.stop()
        await asyncio.gather(mr.stop(), *(w.stop() for w in sinks), return_exceptions=True)
    return {
        "baseline_mediarelay_cpu_pct": cpu_at_n,
        "baseline_mediarelay_collapse_n": collapse_n,
        "baseline_mediarelay_ramp": ramp,
        "baseline_mediarelay_window_s": window,
        "baseline_mediarelay_note": note,
    }


# -- the run --------------------------------------------------------------------------------------


def _loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _ratio(a, b) -> float | None:
    return round(a / b, 2) if a is not None and b else None


async def run(args: argparse.Namespace) -> dict:
    import aiortc

    tmp = Path(tempfile.mkdtemp(prefix="dc-bench-"))
    started = time.monotonic()
    out: dict = {
        "subscribers": args.subscribers,
        "seconds": args.seconds,
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "aiortc": aiortc.__version__,
                    "platform": platform.platform()},
        "video": f"{args.width}x{args.height}@{args.fps} VP8 {args.bitrate // 1000} kbit/s, Opus 20 ms",
        "loadavg_at_start": _loadavg(),
    }
    try:
        out.update(await bench_relay(args, tmp))
        out.update(await bench_passthrough(args, tmp))
        if args.skip_mediarelay:
            out.update({"baseline_mediarelay_cpu_pct": None, "baseline_mediarelay_collapse_n": None,
                        "baseline_mediarelay_note": "skipped"})
        else:
            out.update(await bench_mediarelay(args, tmp))
    finally:
        if args.keep:
            print(f"bench: logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    out["passthrough_over_relay"] = _ratio(out.get("baseline_passthrough_us_per_packet"), out.get("us_per_packet"))
    out["mediarelay_cpu_over_relay_cpu"] = _ratio(out.get("baseline_mediarelay_cpu_pct"), out.get("relay_cpu_pct"))
    out["run_s"] = round(time.monotonic() - started, 1)
    return out


def _table(r: dict) -> str:
    def f(v, unit=""):
        return "n/a" if v is None else f"{v}{unit}"

    rows = [
        ("subscribers", f(r["subscribers"])),
        ("window", f(r.get("window_s"), " s")),
        ("programme", r["video"]),
        ("packets into relay", f(r.get("packets_in"))),
        ("packets forwarded", f(r.get("packets_forwarded"))),
        ("relay CPU per packet", f(r.get("us_per_packet"), " us")),
        ("relay CPU", f(r.get("relay_cpu_pct"), " %")),
        ("other processes' CPU in the window", f(r.get("other_processes_cpu_pct"), " %")),
        ("delivered ratio", f(r.get("delivered_ratio"))),
        ("latency added p50 / p95", f"{f(r.get('latency_added_ms_p50'))} / {f(r.get('latency_added_ms_p95'))} ms"),
        ("relay fan-out loop p50 / p95", f"{f(r.get('relay_fanout_ms_p50'))} / {f(r.get('relay_fanout_ms_p95'))} ms"),
        ("aiortc passthrough CPU per packet", f(r.get("baseline_passthrough_us_per_packet"), " us")),
        ("aiortc passthrough CPU", f(r.get("baseline_passthrough_cpu_pct"), " %")),
        ("passthrough / relay (per packet)", f(r.get("passthrough_over_relay"), "x")),
        ("aiortc MediaRelay CPU at N", f(r.get("baseline_mediarelay_cpu_pct"), " %")),
        ("aiortc MediaRelay collapsed at N", f(r.get("baseline_mediarelay_collapse_n"))),
    ]
    for step in r.get("baseline_mediarelay_ramp") or []:
        rows.append((f"  MediaRelay N={step['n']}",
                     f"CPU {step['cpu_pct']} %, {step['frames_per_sub_per_s']} fps per subscriber"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diemcau bench fanout", description=__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", type=int, default=10)
    p.add_argument("--seconds", type=float, default=10.0, help="measured window (after warm-up)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--skip-mediarelay", action="store_true")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--bitrate", type=int, default=800_000)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--grace", type=float, default=1.5, help="wait after the window for packets in flight")
    p.add_argument("--sub-procs", type=int, default=0, help="subscriber processes (0: one per 50, at most 4)")
    p.add_argument("--mediarelay-window", type=float, default=5.0, help="measured window per MediaRelay step")
    p.add_argument("--mediarelay-budget", type=float, default=120.0, help="seconds for the whole MediaRelay ramp")
    p.add_argument("--profile", help="write a cProfile (CPU-time timer) of the relay's window here; "
                   "the profiler inflates the CPU figures of that run")
    p.add_argument("--keep", action="store_true", help="keep worker logs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.subscribers < 1 or args.seconds <= 0:
        print("bench: --subscribers must be >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(run(args))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2]))
    sys.exit(main())
