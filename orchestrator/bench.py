"""`diemcau bench control`: the control plane alone, at commune scale.

N simulated halls and a relay inventory sized for them open real WebSocket control channels
to K orchestrator instances (real processes, a real Redis), register, are placed, and send
heartbeats at the product's interval. Measured: heartbeats/s, orchestrator CPU per heartbeat,
how late heartbeats are read (p99), whether the control plane kept up, how long placing all
of them took, and the re-plan after the relay carrying the most halls is killed.

The simulated nodes are deliberately cheap (a raw asyncio protocol per channel, pre-built
frames, one ticker for all of them) so that on one box the orchestrators get the CPU.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import random
import resource
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from diemcau import messages as m
from diemcau.deploy import Deployment
from diemcau.tokens import node_credential
from diemcau.topology import REGIONS, load_profile, load_topology

from .control import LAG_BUCKETS_MS

HALL_HEARTBEAT_MS = 500  # what the product ships
RELAY_HEARTBEAT_MS = 1000
SWITCH_AFTER_MS = 150  # a hall's own failover to its standby (the daemon's default)
HALLS_PER_RELAY = 140  # primaries per relay in the generated inventory (and as many standbys)


# -- a commune-scale topology -------------------------------------------------------------

def commune_topology(n: int, out: Path, tiers: int = 2) -> tuple[Path, Path, Path]:
    """N connection points over the real topology's provinces (in proportion to its halls there),
    with relays sized for them: two origins and regional relays in each region (tiers=2), or two
    origins, two regional relays per region and provincial relays in every province (tiers=3).
    Returns the topology, profile and (empty) programme files."""
    real = load_topology()
    provinces: dict[str, tuple[str, str, float, float, int]] = {}
    for h in real.halls:
        code = h.id.split("-")[0]
        _, _, lat, lon, k = provinces.get(h.province, (code, h.region, h.lat, h.lon, 0))
        provinces[h.province] = (code, h.region, lat, lon, k + 1)
    weight = sum(p[4] for p in provinces.values())
    rng = random.Random(7)
    halls, per_region = [], dict.fromkeys(REGIONS, 0)
    names = sorted(provinces)
    share = {p: max(1, round(n * provinces[p][4] / weight)) for p in names}
    while sum(share.values()) > n:  # rounding: trim the largest
        share[max(share, key=share.get)] -= 1
    while sum(share.values()) < n:
        share[min(share, key=share.get)] += 1
    for p in names:
        code, region, lat, lon, _ = provinces[p]
        for i in range(1, share[p] + 1):
            halls.append(f'[[hall]]\nid = "{code}-{i:04d}"\nname = "Điểm cầu xã {i:04d}, {p}"\n'
                         f'province = "{p}"\nregion = "{region}"\n'
                         f"lat = {min(23.9, max(8.1, lat + rng.uniform(-0.3, 0.3))):.4f}\n"
                         f"lon = {min(109.9, max(102.1, lon + rng.uniform(-0.3, 0.3))):.4f}\n")
            per_region[region] += 1
    relays = ['[[relay]]\nid = "origin-1"\nrole = "origin"\nregion = "north"\ncapacity = 1000\n'
              'lat = 21.0285\nlon = 105.8542\n',
              '[[relay]]\nid = "origin-2"\nrole = "origin"\nregion = "south"\ncapacity = 1000\n'
              'lat = 10.8231\nlon = 106.6297\n']
    centre = {"north": (21.0, 105.8), "central": (16.0, 108.2), "south": (10.8, 106.6)}
    if tiers == 3:
        for p in names:
            code, region, lat, lon, _ = provinces[p]
            k = max(1, math.ceil(share[p] / HALLS_PER_RELAY))
            cap = math.ceil(share[p] / k * 1.5) + 10
            for i in range(1, k + 1):
                relays.append(f'[[relay]]\nid = "{code.lower()}-{i}"\nrole = "provincial"\nregion = "{region}"\n'
                              f'province = "{p}"\ncapacity = {cap}\nlat = {lat:.4f}\nlon = {lon:.4f}\n')
    for region in REGIONS:
        k = max(2, math.ceil(per_region[region] / HALLS_PER_RELAY)) if tiers == 2 else 2
        # (three tiers: the regional relays feed the provincial ones, and take halls only when a
        # province's relays are gone)
        cap = math.ceil(per_region[region] / k * 1.5) + 10 if tiers == 2 else max(100, per_region[region] // 4)
        for i in range(1, k + 1):
            lat, lon = centre[region]
            relays.append(f'[[relay]]\nid = "{region}-{i}"\nrole = "regional"\nregion = "{region}"\n'
                          f"capacity = {cap}\nlat = {lat + rng.uniform(-1, 1):.4f}\nlon = {lon + rng.uniform(-0.5, 0.5):.4f}\n")
    out.mkdir(parents=True, exist_ok=True)
    topo, profile, programme = out / "topology.toml", out / "profile.toml", out / "programme.toml"
    topo.write_text(f"# {n} connection points (generated for `diemcau bench control`)\n\n" + "\n".join(halls))
    profile.write_text('[deployment]\nname = "communes"\nhost = "127.0.0.1"\nice_addresses = ["127.0.0.1"]\n'
                       'stream = "programme"\n\n' + "\n".join(relays))
    programme.write_text('[themes]\nt = "Hội nghị trực tuyến toàn quốc"\n')
    return topo, profile, programme


# -- a cheap WebSocket client -------------------------------------------------------------

def _frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """A client frame, masked with a zero key (valid, and the payload needs no XOR)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


@dataclass
class Node:
    id: str
    kind: str  # hall | relay
    region: str
    role: str = ""
    capacity: int = 0
    province: str = ""
    proto: "Channel | None" = None
    welcomed: bool = False
    upstream: str = ""
    backup: str = ""
    assigned_at: float = 0.0  # monotonic time of the last assignment
    assigns: int = 0
    reported_relay: str = ""
    seq: int = 0
    dead: bool = False  # a relay the bench killed


class Channel(asyncio.Protocol):
    def __init__(self, bench: "Bench", node: Node, headers: bytes) -> None:
        self.bench, self.node, self.headers = bench, node, headers
        self.buf = b""
        self.upgraded = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.headers)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded.done():
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status, self.buf = self.buf[:end], self.buf[end + 4:]
            if not status.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(ConnectionError(status.split(b"\r\n")[0].decode(errors="replace")))
                return
            self.upgraded.set_result(None)
        while len(self.buf) >= 2:
            b0, b1 = self.buf[0], self.buf[1]
            n, off = b1 & 0x7F, 2
            if n == 126:
                if len(self.buf) < 4:
                    return
                n, off = struct.unpack_from("!H", self.buf, 2)[0], 4
            elif n == 127:
                if len(self.buf) < 10:
                    return
                n, off = struct.unpack_from("!Q", self.buf, 2)[0], 10
            if len(self.buf) < off + n:
                return
            payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
            opcode = b0 & 0x0F
            if opcode in (0x1, 0x2):
                self.bench.on_message(self.node, payload)
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(_frame(payload, 0xA))
            elif opcode == 0x8:
                self.close()

    def send(self, payload: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(_frame(payload))

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.abort()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError(f"closed before the upgrade: {exc}"))
        self.bench.on_lost(self.node)


# -- the bench ----------------------------------------------------------------------------

@dataclass
class Bench:
    dep: Deployment
    nodes: dict[str, Node]
    hosts: list[tuple[str, int]]  # orchestrator instances (host, port)
    decoder: msgspec.json.Decoder = field(default_factory=lambda: msgspec.json.Decoder(m.AnyMsg))
    sent: int = 0
    lost_channels: int = 0
    errors: list[str] = field(default_factory=list)  # the first 100; error_count has them all
    error_count: int = 0
    replan_watch: dict[str, float] = field(default_factory=dict)  # node -> when it got a new plan without the dead relay
    killed: str = ""

    def on_message(self, node: Node, payload: bytes) -> None:
        try:
            msg = self.decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.error(f"{node.id}: undecodable message")
            return
        if isinstance(msg, m.Welcome):
            node.welcomed = True
        elif isinstance(msg, m.Assign) and msg.stream == "programme":
            node.upstream, node.backup = msg.upstream, msg.backup
            node.assigned_at, node.assigns = time.monotonic(), node.assigns + 1
            if self.killed and self.killed not in (msg.upstream, msg.backup) and node.id not in self.replan_watch:
                self.replan_watch[node.id] = time.monotonic()
            # the node follows its plan (it receives from its primary), unless that is the dead relay
            node.reported_relay = msg.upstream if msg.upstream != self.killed else msg.backup
        elif isinstance(msg, m.ErrorMsg):
            self.error(f"{node.id}: {msg.code} {msg.reason}")

    def error(self, text: str) -> None:
        self.error_count += 1
        if len(self.errors) < 100:
            self.errors.append(text)

    def on_lost(self, node: Node) -> None:
        if not node.dead:
            self.lost_channels += 1

    async def connect(self, node: Node, i: int) -> None:
        host, port = self.hosts[i % len(self.hosts)]
        key = base64.b64encode(os.urandom(16)).decode()
        headers = (f"GET /api/v1/control HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                   f"Authorization: Bearer {node_credential(self.dep.node_key, node.id)}\r\n\r\n").encode()
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(lambda: Channel(self, node, headers), host, port)
        node.proto = proto
        await asyncio.wait_for(proto.upgraded, 30)
        hello = m.Hello(node=node.id, kind=node.kind, version="bench", region=node.region, role=node.role,
                        province=node.province,
                        whep_url="http://127.0.0.1:9/" if node.kind == "relay" else "", capacity=node.capacity)
        proto.send(m.encode(hello))

    def heartbeat(self, node: Node) -> bytes:
        node.seq += 1
        now = int(time.time() * 1000)
        if node.kind == "hall":
            stats = m.HallStats(state="receiving", relay=node.reported_relay, backup=node.backup,
                                backup_state="standby" if node.backup else "", frames_received=node.seq * 15,
                                frames_expected=node.seq * 15, packets_received=node.seq * 60, fps=30.0,
                                bitrate_kbps=1000.0, latency_ms_p50=120.0, latency_ms_p95=160.0,
                                first_frame_ms=900.0, last_media_ms_ago=20.0)
            return m.encode(m.Heartbeat(seq=node.seq, hall=stats, sent_ms=now))
        halls = sum(1 for h in self.nodes.values() if h.upstream == node.id)
        stats = m.RelayStats(subscribers=halls, packets_in=node.seq * 120, packets_out=node.seq * 120 * max(halls, 1),
                             upstream=node.reported_relay, upstream_state="receiving" if node.reported_relay else "",
                             upstream_backup=node.backup, upstream_backup_state="standby" if node.backup else "")
        return m.encode(m.Heartbeat(seq=node.seq, relay=stats, sent_ms=now))

    async def ticker(self, stop: asyncio.Event) -> None:
        """Every node sends at its interval, spread evenly over it (one timer for all)."""
        slot_ms = 10
        halls = [n for n in self.nodes.values() if n.kind == "hall"]
        relays = [n for n in self.nodes.values() if n.kind == "relay"]
        hall_slots, relay_slots = HALL_HEARTBEAT_MS // slot_ms, RELAY_HEARTBEAT_MS // slot_ms
        tick, t0 = 0, time.monotonic()
        while not stop.is_set():
            for group, slots in ((halls, hall_slots), (relays, relay_slots)):
                for node in group[tick % slots::slots]:
                    if node.welcomed and node.proto is not None and not node.proto.closed:
                        node.proto.send(self.heartbeat(node))
                        self.sent += 1
            tick += 1
            await asyncio.sleep(max(0.0, t0 + tick * slot_ms / 1000 - time.monotonic()))

    async def kill(self, relay: Node) -> None:
        """SIGKILL, as the control plane sees it: the channel drops, heartbeats stop. The halls and
        relays it fed switch to their standby by themselves and say so, as hall daemons and relays do."""
        self.killed, relay.dead = relay.id, True
        assert relay.proto is not None
        relay.proto.close()
        await asyncio.sleep(SWITCH_AFTER_MS / 1000)
        for n in self.nodes.values():
            if n.upstream == relay.id and n.proto is not None and not n.dead:
                n.reported_relay = n.backup
                n.proto.send(m.encode(m.MediaLost(upstream=relay.id, reason="no media for 150 ms")))


async def _scrape(dep: Deployment, token: str, port: int) -> dict:
    import urllib.request

    def get() -> str:
        req = urllib.request.Request(f"http://{dep.host}:{port}/metrics", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.read().decode()

    text = await asyncio.to_thread(get)
    out: dict = {"lag": {}}
    for line in text.splitlines():
        if line.startswith("diemcau_heartbeats_total "):
            out["heartbeats"] = int(line.split()[1])
        elif line.startswith("diemcau_heartbeat_lag_ms_bucket"):
            le = line.split('le="')[1].split('"')[0]
            out["lag"][le] = int(line.split()[1])
        elif line.startswith('diemcau_sweep_seconds{of="max"}'):
            out["sweep_max_s"] = float(line.split()[1])
        elif line.startswith('diemcau_gc_pause_seconds_max{generation="2"}'):
            out["gc2_max_s"] = float(line.split()[1])
        elif line.startswith('diemcau_gc_collections_total{generation="2"}'):
            out["gc2_n"] = int(line.split()[1])
        elif line.startswith("diemcau_loop_stall_seconds "):
            out["stall_s"] = float(line.split()[1])
        elif line.startswith("diemcau_leader "):
            out["leader"] = line.split()[1] == "1"
    return out


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _p99(buckets_before: dict, buckets_after: dict) -> float:
    les = [str(b) for b in LAG_BUCKETS_MS] + ["+Inf"]
    counts = [buckets_after.get(le, 0) - buckets_before.get(le, 0) for le in les]
    total = counts[-1]
    if total <= 0:
        return -1.0
    for le, c in zip(les, counts):
        if c >= 0.99 * total:
            return float(le) if le != "+Inf" else float("inf")
    return float("inf")


def _raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, need)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        if soft < need:
            raise SystemExit(f"need {need} open files, the limit is {soft} (ulimit -n)") from None


async def run(halls: int, seconds: float, orchestrators: int, ramp_per_s: float, progress,
              work: Path, tiers: int = 2, kill_role: str = "") -> dict:
    _raise_fd_limit(halls + 2048)  # our client sockets; each orchestrator holds its share of them
    work.mkdir(parents=True, exist_ok=True)
    topo_path, profile_path, programme_path = commune_topology(halls, work / "config", tiers)
    profile = load_profile(profile_path)
    topology = load_topology(topo_path)
    dep = Deployment(profile=profile, workdir=work, orchestrators=orchestrators, profile_arg=str(profile_path),
                     orch_env={"DIEMCAU_ORCH_TOPOLOGY": str(topo_path), "DIEMCAU_ORCH_PROGRAMME": str(programme_path),
                               "DIEMCAU_ORCH_HALL_HEARTBEAT_MS": str(HALL_HEARTBEAT_MS),
                               "DIEMCAU_ORCH_RELAY_HEARTBEAT_MS": str(RELAY_HEARTBEAT_MS)})
    dep.log_dir = work / "logs"
    dep.log_dir.mkdir(exist_ok=True)
    report: dict = {"halls": halls, "orchestrators": orchestrators, "relays": len(profile.relays), "tiers": tiers,
                    "heartbeat_ms": HALL_HEARTBEAT_MS, "seconds": seconds}
    try:
        dep.start_redis()
        dep.start_control_plane(port=0)
        nodes: dict[str, Node] = {}
        for r in profile.relays:
            nodes[r.id] = Node(r.id, "relay", r.region, r.role, r.capacity, r.province)
        for h in topology.halls:
            nodes[h.id] = Node(h.id, "hall", h.region)
        bench = Bench(dep, nodes, [(dep.host, p) for p in dep.orch_ports])
        stop = asyncio.Event()
        ticker = asyncio.create_task(bench.ticker(stop))
        t0 = time.monotonic()
        order = list(nodes.values())  # relays first: halls have somewhere to go
        sem = asyncio.Semaphore(64)

        async def one(i: int, node: Node) -> None:
            await asyncio.sleep(max(0.0, i / ramp_per_s - (time.monotonic() - t0)))
            async with sem:
                try:
                    await bench.connect(node, i)
                except (OSError, ConnectionError, asyncio.TimeoutError) as exc:
                    bench.error(f"{node.id}: {exc}")

        connecting = asyncio.gather(*(one(i, n) for i, n in enumerate(order)))
        while not connecting.done():
            await asyncio.sleep(1)
            progress(f"connecting {sum(n.welcomed for n in order)}/{len(order)}, "
                     f"placed {sum(bool(n.upstream) for n in order if n.kind == 'hall')}/{halls}")
        await connecting
        report["connect_s"] = round(time.monotonic() - t0, 1)
        deadline = time.monotonic() + max(60.0, halls / 100)
        hall_nodes = [n for n in order if n.kind == "hall"]
        while sum(bool(n.upstream) for n in hall_nodes) < halls and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        placed = [n.assigned_at for n in hall_nodes if n.upstream]
        report["placed"] = len(placed)
        report["placed_s"] = round(max(placed) - t0, 1) if placed else -1
        await asyncio.sleep(3)  # settle: placement's last messages, the first flushes

        # the steady state
        token = await asyncio.to_thread(dep.login)
        pids = {name: p.pid for name, p in dep.procs.items() if name.startswith("orchestrator")}
        before = [await _scrape(dep, token, p) for p in dep.orch_ports]
        cpu0 = {n: _cpu_s(pid) for n, pid in pids.items()}
        sent0, w0 = bench.sent, time.monotonic()
        while time.monotonic() - w0 < seconds:
            await asyncio.sleep(1)
            progress(f"steady {time.monotonic() - w0:.0f}/{seconds:.0f} s, {bench.sent - sent0} heartbeats sent")
        elapsed = time.monotonic() - w0
        cpu1 = {n: _cpu_s(pid) for n, pid in pids.items()}
        sent = bench.sent - sent0
        await asyncio.sleep(0.3)  # what is in flight lands
        after = [await _scrape(dep, token, p) for p in dep.orch_ports]
        processed = sum(a["heartbeats"] - b["heartbeats"] for a, b in zip(after, before))
        lag_b = {k: sum(b["lag"].get(k, 0) for b in before) for k in after[0]["lag"]}
        lag_a = {k: sum(a["lag"].get(k, 0) for a in after) for k in after[0]["lag"]}
        cpu = sum(cpu1[n] - cpu0[n] for n in pids)
        report.update(
            heartbeats_sent=sent,
            heartbeats_processed=processed,
            heartbeats_per_s=round(processed / elapsed),
            us_per_heartbeat=round(cpu / max(processed, 1) * 1e6, 1),
            orchestrator_cpu_pct=round(100 * cpu / elapsed, 1),
            orchestrator_cpu_pct_each={n: round(100 * (cpu1[n] - cpu0[n]) / elapsed, 1) for n in pids},
            orchestrator_rss_mb={n: round(_rss_mb(pid), 1) for n, pid in pids.items()},
            lag_ms_p99=_p99(lag_b, lag_a),
            lag_ms_p99_each={name: _p99(b["lag"], a["lag"]) for name, a, b in zip(sorted(pids), after, before)},
            # the orchestrators' own event loops standing still (ticks >250 ms late), last 60 s
            loop_stall_s_each={name: a.get("stall_s", 0.0) for name, a in zip(sorted(pids), after)},
            gc_full_pause_ms_max_each={name: round(1000 * a.get("gc2_max_s", 0.0)) for name, a in zip(sorted(pids), after)},
            gc_full_collections_each={name: a.get("gc2_n", 0) for name, a in zip(sorted(pids), after)},
            leader=next((name for name, a in zip(sorted(pids), after) if a.get("leader")), ""),
            sweep_ms_max=round(1000 * max(a.get("sweep_max_s", 0.0) for a in after)),  # the leader's longest sweep so far
            channels_lost=bench.lost_channels,
        )
        redis = await _dark_halls(dep, len(nodes))
        report["dark_halls"] = redis
        report["kept_up"] = bool(processed >= 0.99 * sent and redis == 0 and bench.lost_channels == 0
                                 and report["lag_ms_p99"] <= 250)

        # the relay that feeds the most halls and relays directly dies
        load: dict[str, int] = {}
        for n in order:
            if n.upstream:
                load[n.upstream] = load.get(n.upstream, 0) + 1
        victim = max((r for r in order if r.kind == "relay" and r.role != "origin" and r.role == (kill_role or r.role)),
                     key=lambda r: load.get(r.id, 0))
        affected = {n.id for n in order if victim.id in (n.upstream, n.backup) and n.id != victim.id}
        report["killed"] = victim.id
        report["killed_role"] = victim.role
        report["killed_primary_for"] = load.get(victim.id, 0)
        report["affected"] = len(affected)
        killed_at, killed_wall = time.monotonic(), time.time()
        await bench.kill(victim)
        deadline = time.monotonic() + 30
        while not affected <= set(bench.replan_watch) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        replanned = [bench.replan_watch[n] for n in affected if n in bench.replan_watch]
        dead_at = await _event_time(dep, "relay_dead", victim.id, killed_wall)
        report["replanned"] = len(replanned)
        report["detect_ms"] = round((dead_at - killed_wall) * 1000) if dead_at else -1
        report["recovered_ms"] = round((max(replanned) - killed_at) * 1000) if replanned else -1
        # from the leader's verdict (dead) to the last of its dependants told where to go now
        report["replan_ms"] = (round(report["recovered_ms"] - report["detect_ms"]) if dead_at and replanned else -1)
        stop.set()
        await ticker
        report["errors"] = bench.errors[:20]
        report["error_count"] = bench.error_count
        for n in nodes.values():
            if n.proto is not None:
                n.proto.close()
        return report
    finally:
        dep.stop()


async def _dark_halls(dep: Deployment, expected: int) -> int:
    """Nodes whose last heartbeat in Redis is older than the dark threshold (1.5 s), or missing."""
    from diemcau.redisconn import connect, key_prefix_for

    r = connect(dep.redis_url)
    try:
        now = int(time.time() * 1000)
        seen = key_prefix_for(r, dep.key_prefix) + "seen"
        stale = await r.zcount(seen, "-inf", now - 1500)
        total = await r.zcard(seen)
        return int(stale) + max(0, expected - int(total))
    finally:
        await r.aclose()


async def _event_time(dep: Deployment, kind: str, subject: str, since: float) -> float | None:
    from diemcau.redisconn import connect, key_prefix_for

    r = connect(dep.redis_url)
    try:
        for eid, ev in await r.xrange(key_prefix_for(r, dep.key_prefix) + "events", min=str(int(since * 1000))):
            if ev.get(b"kind") == kind.encode() and ev.get(b"subject") == subject.encode():
                return int(ev[b"ts"]) / 1000
        return None
    finally:
        await r.aclose()


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="diemcau bench control",
                                 description="the control plane alone: N simulated halls, K orchestrators, real Redis")
    ap.add_argument("--halls", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--orchestrators", type=int, default=2, help="instances sharing the channels (default 2)")
    ap.add_argument("--ramp", type=float, default=1000, help="channels opened per second (default 1000)")
    ap.add_argument("--tiers", type=int, choices=(2, 3), default=2,
                    help="relay tiers: 2 = origin, regional; 3 = origin, regional, provincial (default 2)")
    ap.add_argument("--kill-role", choices=("regional", "provincial"), default="",
                    help="kill the busiest relay of this tier (default: the busiest below the origins)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--report", help="also write the JSON report here")
    ap.add_argument("--workdir", help="keep the generated configs, Redis and every process's log here "
                                      "(default: a temporary directory, removed at the end)")
    args = ap.parse_args(argv)
    if args.halls < 1 or args.orchestrators < 1 or args.seconds <= 0 or args.ramp <= 0:
        ap.error("--halls, --orchestrators, --seconds and --ramp must be positive")

    def progress(text: str) -> None:
        if sys.stderr.isatty():
            print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="diemcau-bench-control-"))
    try:
        report = asyncio.run(run(args.halls, args.seconds, args.orchestrators, args.ramp, progress, workdir, args.tiers,
                                 args.kill_role))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for k, v in report.items():
            print(f"{k:>24}: {v}")
    return 0 if report.get("kept_up") else 1
