"""Redis goes away and comes back: media never notices, and accounts and the audit log survive (AOF)."""

import asyncio
import subprocess
import time

import aiohttp

from edge_node.daemon import HallDaemon
from edge_node.settings import EdgeSettings
from relay.agent import RelayAgent
from tests.conftest import _die_with_parent, _redis_server_binary, login_ok, wait_for
from tests.media import start_studio


def _redis(dirpath, sock):
    return subprocess.Popen([_redis_server_binary(), "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
                             "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", str(dirpath)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)


async def test_redis_restart_keeps_media_flowing_and_loses_no_configuration(tmp_path, start_orchestrator, start_relay, signer):
    sock = tmp_path / "r.sock"
    redis = _redis(tmp_path, sock)
    await wait_for(lambda: sock.exists(), 10, what="redis up")
    orch = await start_orchestrator(redis_url=f"unix://{sock}")
    origin = await start_relay("origin-1", "origin", region="north", orchestrator_url=orch.control_url,
                               credential=orch.credential("origin-1"), heartbeat_ms=300)
    agent = RelayAgent(origin.core, origin.url)
    agent.start()
    studio, task = await start_studio(origin.url, signer)
    hall = HallDaemon(EdgeSettings(hall="HN-01", orchestrator_url=orch.control_url, credential=orch.credential("HN-01"),
                                   ice_addresses=["127.0.0.1"]))
    hall.start()
    try:
        await wait_for(lambda: hall.stats().frames_received > 30, 20, what="hall on air")
        await orch.state.accounts.set_user("duty", "duty-password-1", "operator")
        await orch.state.store.event("note", "test", "before the outage", actor="duty")
        down_at = time.time()
        frames_at_down = hall.stats().frames_received
        redis.terminate()
        redis.wait(5)
        await asyncio.sleep(2.0)  # Redis is down: the hall still receives
        mid = hall.stats().frames_received
        async with aiohttp.ClientSession() as http:  # the API says Redis is down, it does not fail
            async with http.post(orch.url + "/api/v1/login", json={"username": "duty", "password": "x"}) as r:
                assert r.status == 503 and r.headers.get("Retry-After") and "Redis" in (await r.json())["error"]
        await asyncio.sleep(1.0)
        assert hall.stats().frames_received > mid + 20
        redis = _redis(tmp_path, sock)
        await wait_for(lambda: sock.exists(), 10, what="redis back")
        async with aiohttp.ClientSession() as http:
            await wait_for(lambda: login_ok(http, orch, "duty", "duty-password-1"), 10,
                           what="accounts survive the restart")
        notes = await orch.state.store.events(50, kind="note")
        assert any(e["detail"] == "before the outage" for e in notes)
        # the control plane sees the hall again (heartbeats flow into the new Redis)
        await wait_for(lambda: _hall_seen(orch, frames_at_down + 60), 10, what="hall heartbeats after the restart")
        assert all(g < 250 for end, g in hall.stats().gaps if end >= down_at)
    finally:
        await hall.stop()
        studio.stop()
        await task
        await agent.stop()
        redis.terminate()
        redis.wait(5)


async def _hall_seen(orch, above: int) -> bool:
    try:
        stats = await orch.state.store.stats()
        return stats.get("HN-01", {}).get("frames_received", 0) > above
    except Exception:
        return False
