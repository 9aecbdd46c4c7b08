"""`diemcau fuzz`: throw malformed input at every door and count what went wrong.

One run brings up a real Redis, an orchestrator, an origin relay with a studio publishing into
it, and a live WHEP subscriber, all in this process on loopback. Then, for a budget of inputs
split over the targets, it sends mutated and random input:

  parsers   control messages, SDP offers, topology/profile configs, load-test scenarios
  http      every orchestrator route (from its route table), with and without credentials
  relay     WHIP/WHEP POST with mutated real SDP offers, DELETE/layer on random sessions
  control   the control channel (WebSocket) with junk frames and mutated messages
  udp       malformed STUN, DTLS, RTP and RTCP datagrams at the relay's ICE port and at the
            receiving side's (the WHEP client and RTP input a hall daemon runs)

and counts: `crashes` (exceptions that escaped a handler or a protocol callback, or a parser
raising something other than its documented error), `unexpected_5xx` (any 5xx but a 503 with
Retry-After, or a 502 from the preview proxy), `leaks` (tasks, file descriptors or memory not
back near the baseline after the run), and whether what was stored before the run is intact.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import random
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
import msgspec

log = logging.getLogger("diemcau.fuzz")

SHARES = {"parsers": 0.40, "http": 0.25, "relay": 0.12, "control": 0.11, "udp": 0.12}
JUNK = ["", "0", "-1", "1e309", "null", "true", "[]", "{}", "\x00", "../../etc/passwd", "%2e%2e%2f", "é" * 50,
        "A" * 5000, "<script>alert(1)</script>", "' OR 1=1 --", "\ud800".encode("utf-8", "surrogatepass").decode("latin-1"),
        "HN-01", "north-1", "programme", "primary", "backup", "admin"]


class Counter(logging.Handler):
    """Counts errors that escaped to the log: unhandled request errors, callback exceptions."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []
        self.parser_rejections = 0  # aiohttp's own HTTP parser refusing a request with a 4xx

    def emit(self, record: logging.LogRecord) -> None:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500:
            self.parser_rejections += 1  # answered 400/413/431 by aiohttp, logged at ERROR by it
            return
        msg = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            msg += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        self.records.append(f"{record.name}: {msg}"[:300])


# -- mutation ----------------------------------------------------------------------------------

def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        if op == 0 and b:  # flip bits
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert random bytes
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 2 and b:  # delete a range
            i = rng.randrange(len(b))
            del b[i:i + rng.randint(1, 32)]
        elif op == 3 and b:  # duplicate a range
            i = rng.randrange(len(b))
            b[i:i] = b[i:i + rng.randint(1, 64)]
        elif op == 4 and b:  # truncate
            del b[rng.randrange(len(b)):]
        elif op == 5:  # an interesting value
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.choice(JUNK).encode("utf-8", "surrogatepass")
        elif op == 6 and b:  # set a byte to a boundary value
            b[rng.randrange(len(b))] = rng.choice([0, 1, 0x7F, 0x80, 0xFF])
    return bytes(b)


def mutate_lines(rng: random.Random, text: str) -> str:
    lines = text.split("\r\n" if "\r\n" in text else "\n")
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(5)
        if op == 0 and lines:
            del lines[rng.randrange(len(lines))]
        elif op == 1 and lines:
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i])
        elif op == 2 and lines:
            i = rng.randrange(len(lines))
            lines[i] = lines[i][: rng.randrange(len(lines[i]) + 1)] + rng.choice(JUNK)
        elif op == 3 and len(lines) > 1:
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(["a=", "m=video 9 X", "c=IN IP4 ::", "a=mid:",
                                                                      "a=ssrc:-1", "a=rtpmap:96 VP8/0", "=", "v=1"]))
    return "\r\n".join(lines)


def random_json(rng: random.Random, depth: int = 0):
    kind = rng.randrange(7 if depth < 3 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2**63, 1e308, 0.5, rng.randint(-10, 10**6)])
    if kind in (2, 3, 4):
        return rng.choice(JUNK)
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["role", "relay", "expect", "drain", "stream", "direction", "subject", "ttl_s", "hall", "participant",
            "username", "password", "active", rng.choice(JUNK)]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}


# -- the run -----------------------------------------------------------------------------------

class Fuzz:
    def __init__(self, budget: int, seed: int) -> None:
        self.budget = budget
        self.rng = random.Random(seed)
        self.seed = seed
        self.tried = {k: 0 for k in SHARES}
        self.crashes: list[str] = []
        self.unexpected: list[str] = []
        self.status: dict[str, int] = {}
        self.counter = Counter()

    def _status(self, target: str, status: int, what: str, retry_after: str | None, allow_502: bool = False) -> None:
        key = f"{target}:{status}"
        self.status[key] = self.status.get(key, 0) + 1
        if status >= 500 and not (status == 503 and retry_after) and not (status == 502 and allow_502):
            self.unexpected.append(f"{status} {what}"[:300])

    # -- parsers -----------------------------------------------------------------------------

    def parsers(self, n: int, seeds: dict) -> None:
        from diemcau import messages as m
        from diemcau.topology import ConfigError, load_profile, load_topology
        from loadtest.scenario import ScenarioError, load_scenario
        from relay.sdp import SdpError, check_offer

        tmp = Path(tempfile.mkdtemp(prefix="dc-fuzz-"))
        try:
            for i in range(n):
                which = i % 5
                try:
                    if which == 0:
                        m.decode(mutate_bytes(self.rng, self.rng.choice(seeds["messages"])))
                    elif which == 1:
                        check_offer(mutate_lines(self.rng, seeds["offer"]) if self.rng.random() < 0.7
                                    else mutate_bytes(self.rng, seeds["offer"].encode()).decode("utf-8", "replace"))
                    elif which == 2:
                        p = tmp / "topology.toml"
                        p.write_bytes(mutate_bytes(self.rng, seeds["topology"]) if self.rng.random() < 0.5
                                      else mutate_lines(self.rng, seeds["topology"].decode()).encode())
                        load_topology(p)
                    elif which == 3:
                        p = tmp / "local.toml"
                        p.write_bytes(mutate_bytes(self.rng, seeds["profile"]))
                        load_profile(p)
                    else:
                        p = tmp / "scenario.toml"
                        p.write_bytes(mutate_bytes(self.rng, seeds["scenario"]) if self.rng.random() < 0.5
                                      else mutate_lines(self.rng, seeds["scenario"].decode()).encode())
                        load_scenario(str(p))
                except (msgspec.DecodeError, msgspec.ValidationError, SdpError, ConfigError, ScenarioError):
                    pass
                except Exception as exc:  # a parser must only raise its documented error
                    self.crashes.append(f"parser {['message', 'sdp', 'topology', 'profile', 'scenario'][which]}: "
                                        f"{type(exc).__name__}: {exc}"[:300])
                self.tried["parsers"] += 1
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- the orchestrator's HTTP doors ----------------------------------------------------------

    async def http(self, n: int, orch_url: str, password: str) -> None:
        from orchestrator.api import ROUTES

        async with aiohttp.ClientSession() as http:
            token = await _login(http, orch_url, password)
            for _ in range(n):
                method, path, name, _who = self.rng.choice(ROUTES)
                if name == "board_stream":
                    path = "/api/v1/board"  # an open event stream would only hold the budget up
                if self.rng.random() < 0.1:
                    method = self.rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"])
                filled = "/".join(self.rng.choice(JUNK + ["HN-01", "north-1", "x"]).replace("/", "%2F")
                                  if seg.startswith("{") else seg for seg in path.split("/"))
                headers = {}
                auth = self.rng.random()
                if auth < 0.7:
                    headers["Authorization"] = f"Bearer {token}"
                elif auth < 0.8:
                    headers["Authorization"] = self.rng.choice(["Bearer ", "Bearer dco1.x", "Basic x", "Bearer " + "A" * 3000,
                                                                "Bearer " + _ascii(mutate_bytes(self.rng, token.encode()))])
                elif auth < 0.9:
                    headers["Cookie"] = f"dc_session={token}"
                body = None
                if method in ("POST", "PUT", "PATCH", "DELETE") and self.rng.random() < 0.9:
                    ctype = self.rng.choice(["application/json"] * 6 + ["text/plain", "application/sdp", ""])
                    if ctype:
                        headers["Content-Type"] = ctype
                    raw = json.dumps(random_json(self.rng)).encode()
                    body = mutate_bytes(self.rng, raw) if self.rng.random() < 0.3 else raw
                if self.rng.random() < 0.05:
                    filled += "?" + self.rng.choice(["count=-1", "count=x", "after=1-1", "after=junk", "format=csv",
                                                     "kind=" + "a," * 500, "count=99999999999999999999"])
                try:
                    async with http.request(method, orch_url + filled, data=body, headers=headers,
                                            allow_redirects=False) as r:
                        await r.read()
                        self._status("http", r.status, f"{method} {filled}", r.headers.get("Retry-After"),
                                     allow_502=name == "preview")
                        if name == "logout" and r.status == 200:
                            token = await _login(http, orch_url, password)
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    self.crashes.append(f"http {method} {filled}: connection failed: {type(exc).__name__}")
                self.tried["http"] += 1

    # -- the relay's WHIP/WHEP doors -------------------------------------------------------------

    async def relay(self, n: int, relay_url: str, signer, offer: str) -> None:
        async with aiohttp.ClientSession() as http:
            for _ in range(n):
                op = self.rng.random()
                direction = "pub" if op < 0.3 else "sub"
                kind = "whip" if direction == "pub" else "whep"
                token = signer.mint(f"fuzz{self.rng.randrange(10**6)}", "programme", direction, 60)
                sent = token if self.rng.random() < 0.9 else _ascii(mutate_bytes(self.rng, token.encode()))
                headers = {"Authorization": f"Bearer {sent}", "Content-Type": "application/sdp"}
                if op < 0.85:
                    body = (mutate_lines(self.rng, offer) if self.rng.random() < 0.7
                            else mutate_bytes(self.rng, offer.encode()).decode("utf-8", "replace")).encode()
                    if self.rng.random() < 0.05:
                        headers["Content-Type"] = self.rng.choice(["application/json", "text/plain", ""])
                    url = f"{relay_url}/{kind}/{self.rng.choice(['programme', 'programme', 'x', 'a' * 80])}"
                    method = "POST"
                    if "backup" in body.decode(errors="ignore") or self.rng.random() < 0.1:
                        url += "?role=" + self.rng.choice(["backup", "primary", "x"])
                else:
                    method = self.rng.choice(["DELETE", "POST", "PATCH"])
                    url = f"{relay_url}/{kind}/programme/{self.rng.choice(JUNK).replace('/', '%2F') or 'x'}"
                    url += "/layer" if method == "POST" else ""
                    headers["Content-Type"] = "application/json"
                    body = json.dumps(random_json(self.rng)).encode()
                try:
                    async with http.request(method, url, data=body, headers=headers) as r:
                        await r.read()
                        self._status("relay", r.status, f"{method} {url[len(relay_url):][:60]}", r.headers.get("Retry-After"))
                        if r.status == 201 and r.headers.get("Location"):
                            async with http.delete(relay_url + r.headers["Location"],
                                                   headers={"Authorization": f"Bearer {token}"}) as d:
                                await d.read()
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    self.crashes.append(f"relay {method} {url[:80]}: connection failed: {type(exc).__name__}")
                self.tried["relay"] += 1

    # -- the control channel --------------------------------------------------------------------

    async def control(self, n: int, orch_url: str, node_key: bytes) -> None:
        from diemcau import messages as m
        from diemcau.tokens import node_credential

        hb = m.encode(m.Heartbeat(seq=1, hall=m.HallStats(state="receiving", relay="north-1", fps=30.0)))
        seeds = [m.encode(m.Hello(node="HN-01", kind="hall", version="fuzz")), hb,
                 m.encode(m.MediaLost(upstream="north-1", reason="fuzz")), b'{"t":"hb","seq":-1}']
        url = orch_url.replace("http", "ws", 1) + "/api/v1/control"
        good = f"Bearer {node_credential(node_key, 'HN-01')}"
        async with aiohttp.ClientSession() as http:
            done = 0
            while done < n:
                auth = {"Authorization": good if self.rng.random() < 0.9 else
                        "Bearer " + _ascii(mutate_bytes(self.rng, good[7:].encode()))}
                try:
                    async with http.ws_connect(url, headers=auth, timeout=aiohttp.ClientWSTimeout(ws_close=2)) as ws:
                        if self.rng.random() < 0.8:
                            await ws.send_bytes(seeds[0])  # a proper hello, then junk
                        for _ in range(self.rng.randint(1, 20)):
                            if done >= n or ws.closed:
                                break
                            pick = self.rng.random()
                            if pick < 0.5:
                                await ws.send_bytes(mutate_bytes(self.rng, self.rng.choice(seeds)))
                            elif pick < 0.7:
                                await ws.send_str(json.dumps(random_json(self.rng)))
                            elif pick < 0.85:
                                await ws.send_bytes(self.rng.randbytes(self.rng.randint(0, 300)))
                            else:
                                await ws.send_bytes(self.rng.choice(seeds))
                            done += 1
                            self.tried["control"] += 1
                        await asyncio.sleep(0)
                except (aiohttp.WSServerHandshakeError,) as exc:
                    self._status("control", exc.status, "upgrade", None)
                    done += 1
                    self.tried["control"] += 1
                except (aiohttp.ClientError, ConnectionResetError, asyncio.TimeoutError):
                    pass  # the hub may close a channel that sends junk: that is the right answer

    # -- media ports ----------------------------------------------------------------------------

    async def udp(self, n: int, port: int) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port))
        try:
            for i in range(n):
                first = self.rng.choice([0, 1, 0x14, 0x16, 0x17, 0x80, 0x90, 0xC8, 0xC9, 0xCD, 0xCE, 0xFF,
                                         self.rng.randrange(256)])
                size = self.rng.choice([0, 1, 4, 11, 12, 20, 28, 100, 1200, self.rng.randrange(1500)])
                data = bytes([first]) + self.rng.randbytes(max(size - 1, 0)) if size else b""
                if first < 2 and len(data) >= 8:  # STUN: a plausible header with the magic cookie
                    data = data[:4] + b"\x21\x12\xa4\x42" + data[8:]
                transport.sendto(data)
                self.tried["udp"] += 1
                if i % 50 == 0:
                    await asyncio.sleep(0.002)  # let the relay read: the kernel buffer is finite
        finally:
            transport.close()


def _ascii(data: bytes) -> str:
    """Bytes as a header value aiohttp will send (printable Latin-1, no line breaks)."""
    return data.decode("latin-1").translate({c: None for c in range(32)} | {127: None})


async def _login(http: aiohttp.ClientSession, orch_url: str, password: str) -> str:
    async with http.post(orch_url + "/api/v1/login", json={"username": "admin", "password": password}) as r:
        if r.status != 200:
            raise RuntimeError(f"fuzz: cannot log in: {r.status} {await r.text()}")
        return (await r.json())["token"]


def _usage() -> dict:
    fds = len(os.listdir("/proc/self/fd"))
    with open("/proc/self/statm") as fh:
        rss = int(fh.read().split()[1]) * resource.getpagesize()
    tasks = len([t for t in asyncio.all_tasks() if not t.done()])
    return {"fds": fds, "rss_mb": round(rss / 2**20, 1), "tasks": tasks}


async def run(budget: int, seed: int) -> dict:
    from aiohttp import web

    from diemcau.deploy import redis_binary
    from diemcau.tokens import MediaTokenSigner, SecretsBundle
    from orchestrator.app import STATE_KEY
    from orchestrator.app import make_app as make_orch
    from orchestrator.settings import OrchestratorSettings
    from relay.app import CORE_KEY
    from relay.app import make_app as make_relay
    from relay.client import WhepSubscriber, recvonly_offer
    from relay.ice import restrict_ice_addresses
    from relay.settings import RelaySettings
    from relay.studio import Studio

    fz = Fuzz(budget, seed)
    logging.getLogger().addHandler(fz.counter)
    work = Path(tempfile.mkdtemp(prefix="dc-fuzz-"))
    redis_proc = subprocess.Popen([redis_binary(), "--port", "0", "--unixsocket", str(work / "r.sock"),
                                   "--unixsocketperm", "700", "--save", "", "--dir", str(work)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runners = []
    try:
        deadline = time.time() + 10
        while not (work / "r.sock").exists() and time.time() < deadline:
            await asyncio.sleep(0.05)
        restrict_ice_addresses(["127.0.0.1"])
        signer = MediaTokenSigner.generate()
        bundle = SecretsBundle(node_key=os.urandom(32), media_private_pem=signer.private_pem(),
                               media_public_pem=signer.public_pem())
        bundle.write(work / "secrets")
        password = "fuzz-" + os.urandom(8).hex()

        def port() -> int:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return s.getsockname()[1]

        osettings = OrchestratorSettings(port=port(), redis_url=f"unix://{work / 'r.sock'}", key_prefix="fz:",
                                         node_key_file=str(work / "secrets" / "node.key"),
                                         media_key_file=str(work / "secrets" / "media.key"),
                                         operator_password=password, login_attempts_per_min=10**6)
        orch = make_orch(osettings)
        rsettings = RelaySettings(id="north-1", role="origin", port=port(), ice_addresses=["127.0.0.1"],
                                  max_publishers=8)
        relay = make_relay(rsettings, signer.verifier())
        for app, p in ((orch, osettings.port), (relay, rsettings.port)):
            runner = web.AppRunner(app, shutdown_timeout=2, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", p).start()
            runners.append(runner)
        orch_url, relay_url = f"http://127.0.0.1:{osettings.port}", f"http://127.0.0.1:{rsettings.port}"
        state = orch[STATE_KEY]
        core = relay[CORE_KEY]
        studio = Studio(f"{relay_url}/whip/programme", signer.mint("studio", "programme", "pub", 3600),
                        width=160, height=90, fps=10)
        studio_task = asyncio.ensure_future(studio.run())
        while not ("programme" in core.sources and core.sources["programme"].live):
            await asyncio.sleep(0.1)
        # a legitimate viewer: it must keep receiving through everything
        received = {"n": 0}

        def sinks(kind, codec):
            def sink(packet):
                received["n"] += 1
            return sink, None

        viewer = WhepSubscriber(f"{relay_url}/whep/programme", signer.mint("viewer", "programme", "sub", 3600), sinks)
        http = aiohttp.ClientSession()
        await viewer.connect(http)
        offer = await recvonly_offer()
        ice_port = next(int(line.split()[5]) for s in core.subscribers.values()
                        for line in (s.pc.localDescription.sdp.splitlines()) if line.startswith("a=candidate"))
        # the viewer's own port: the receiving side a hall daemon runs (WhepSubscriber + RtpInput)
        hall_port = next(int(line.split()[5]) for line in viewer.pc.localDescription.sdp.splitlines()
                         if line.startswith("a=candidate"))
        canary_events = len(await state.store.events(10_000))
        root = Path(__file__).resolve().parent.parent
        seeds = {
            "messages": [b'{"t":"hello","node":"HN-01","kind":"hall","version":"1"}', b'{"t":"hb","seq":3}',
                         b'{"t":"assign","stream":"p","upstream":"r","whep_url":"u","token":"t"}'],
            "offer": offer,
            "topology": (root / "configs" / "topology.toml").read_bytes(),
            "profile": (root / "configs" / "profiles" / "local.toml").read_bytes(),
            "scenario": (root / "loadtest" / "scenarios" / "smoke.toml").read_bytes(),
        }
        share = {k: int(budget * v) for k, v in SHARES.items()}
        share["parsers"] += budget - sum(share.values())
        warm = {k: max(v // 50, 1) for k, v in share.items()}  # warm caches before the baseline
        fz.parsers(warm["parsers"], seeds)
        await fz.http(warm["http"], orch_url, password)
        await fz.relay(warm["relay"], relay_url, signer, offer)
        gc.collect()
        await asyncio.sleep(1)
        base = _usage()
        t0 = time.time()
        fz.parsers(share["parsers"] - warm["parsers"], seeds)
        await fz.http(share["http"] - warm["http"], orch_url, password)
        await fz.relay(share["relay"] - warm["relay"], relay_url, signer, offer)
        await fz.control(share["control"], orch_url, bundle.node_key)
        before_udp = received["n"]
        await fz.udp(share["udp"] // 2, ice_port)
        await fz.udp(share["udp"] - share["udp"] // 2, hall_port)
        await asyncio.sleep(1.5)
        viewer_ok = received["n"] > before_udp
        elapsed = time.time() - t0
        # settle: sessions the fuzzer opened and closed are gone; then measure again
        await asyncio.sleep(3)
        gc.collect()
        end = _usage()
        intact = {
            "admin_login": bool(await _login(http, orch_url, password)),
            "halls": len(state.topology.halls) == 70,
            "events_kept": len(await state.store.events(100_000)) >= canary_events,
            "viewer_still_receiving": viewer_ok,
            "relay_answers": (await (await http.options(relay_url + "/whep/programme")).read()) is not None,
        }
        leaks = []
        if end["tasks"] - base["tasks"] > 20:
            leaks.append(f"tasks {base['tasks']} -> {end['tasks']}")
        if end["fds"] - base["fds"] > 20:
            leaks.append(f"file descriptors {base['fds']} -> {end['fds']}")
        if end["rss_mb"] - base["rss_mb"] > 64:
            leaks.append(f"memory {base['rss_mb']} MB -> {end['rss_mb']} MB")
        await viewer.close(http)
        await http.close()
        studio.stop()
        await studio_task
        crashes = fz.crashes + fz.counter.records
        return {
            "seed": seed, "budget": budget, "inputs_tried": sum(fz.tried.values()), "per_target": fz.tried,
            "seconds": round(elapsed, 1), "crashes": len(crashes), "crash_samples": crashes[:20],
            "unexpected_5xx": len(fz.unexpected), "unexpected_5xx_samples": fz.unexpected[:20],
            "leaks": len(leaks), "leak_detail": leaks, "usage_before": base, "usage_after": end,
            "intact": intact, "statuses": dict(sorted(fz.status.items())),
            "http_parser_rejections": fz.counter.parser_rejections,
        }
    finally:
        logging.getLogger().removeHandler(fz.counter)
        for r in reversed(runners):
            await r.cleanup()
        redis_proc.terminate()
        redis_proc.wait(5)
        shutil.rmtree(work, ignore_errors=True)


def main(args) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    report = asyncio.run(run(args.budget, args.seed))
    text = json.dumps(report, indent=2, ensure_ascii=False)
    if args.report:
        Path(args.report).write_text(text)
    print(f"fuzz: {report['inputs_tried']} inputs in {report['seconds']} s: {report['crashes']} crashes, "
          f"{report['unexpected_5xx']} unexpected 5xx, {report['leaks']} leaks; intact: "
          f"{all(report['intact'].values())}")
    bad = report["crashes"] or report["unexpected_5xx"] or report["leaks"] or not all(report["intact"].values())
    if bad:
        print(json.dumps({k: report[k] for k in ("crash_samples", "unexpected_5xx_samples", "leak_detail", "intact")},
                         indent=2, ensure_ascii=False))
    return 1 if bad else 0
