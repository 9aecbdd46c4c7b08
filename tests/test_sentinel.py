"""Redis Sentinel: the orchestrator follows a failover of its Redis primary, with nothing lost.

Real processes: a primary, a replica and three sentinels (`redis-server --sentinel`), on loopback.
"""

import asyncio
import shutil
import signal
import subprocess
import time

import aiohttp
import pytest

from tests.conftest import _redis_server_binary, free_port, login_ok, stop_all, wait_for


def _spawn(args, log):
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def sentinel_cluster(tmp_path):
    binary = _redis_server_binary()
    if binary is None:
        pytest.fail("no redis-server found: apt-get install redis-server")
    primary, replica = free_port(), free_port()
    sentinels = [free_port() for _ in range(3)]
    log = open(tmp_path / "redis.log", "wb")
    procs = {}
    base = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    procs["primary"] = _spawn([binary, "--port", str(primary), "--dir", str(tmp_path), *base], log)
    procs["replica"] = _spawn([binary, "--port", str(replica), "--dir", str(tmp_path), *base,
                               "--replicaof", "127.0.0.1", str(primary)], log)
    for i, port in enumerate(sentinels):
        conf = tmp_path / f"sentinel-{i}.conf"
        conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                        f"sentinel monitor dc 127.0.0.1 {primary} 2\n"
                        "sentinel down-after-milliseconds dc 1000\nsentinel failover-timeout dc 4000\n"
                        "sentinel parallel-syncs dc 1\n")
        procs[f"sentinel-{i}"] = _spawn([binary, str(conf), "--sentinel"], log)
    try:
        yield {"url": "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in sentinels) + "/dc",
               "procs": procs, "primary": primary, "replica": replica, "sentinels": sentinels}
    finally:
        stop_all(procs.values())
        log.close()
        shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.timeout(120)
async def test_orchestrator_follows_a_sentinel_failover_and_loses_nothing(sentinel_cluster, start_orchestrator):
    import redis.asyncio as aioredis

    # the replica has caught up before the orchestrator starts
    async def replica_synced():
        r = aioredis.Redis(host="127.0.0.1", port=sentinel_cluster["replica"])
        try:
            info = await r.info("replication")
            return info.get("master_link_status") == "up"
        except Exception:
            return False
        finally:
            await r.aclose()

    await wait_for(replica_synced, 15, what="replica in sync")

    # every sentinel knows the replica and the two other sentinels (else no quorum can promote it)
    async def sentinels_ready():
        for port in sentinel_cluster["sentinels"]:
            r = aioredis.Redis(host="127.0.0.1", port=port, decode_responses=True)
            try:
                m = await r.sentinel_master("dc")
                if int(m.get("num-slaves", 0)) < 1 or int(m.get("num-other-sentinels", 0)) < 2:
                    return False
            except Exception:
                return False
            finally:
                await r.aclose()
        return True

    await wait_for(sentinels_ready, 40, interval=0.5, what="sentinels that know the replica and each other")
    orch = await start_orchestrator(redis_url=sentinel_cluster["url"])
    await orch.state.accounts.set_user("duty", "duty-password-1", "operator")
    await orch.state.store.event("note", "test", "before the failover", actor="duty")
    await asyncio.sleep(1.0)  # replication is asynchronous: let the replica have it

    sentinel_cluster["procs"]["primary"].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    async with aiohttp.ClientSession() as http:
        await wait_for(lambda: login_ok(http, orch, "duty", "duty-password-1"), 30, interval=0.25,
                       what="the orchestrator on the promoted replica")
        print(f"orchestrator answering from the new primary {time.monotonic() - killed:.1f} s after the kill")
    notes = await orch.state.store.events(50, kind="note")
    assert any(e["detail"] == "before the failover" for e in notes)
    r = aioredis.Redis(host="127.0.0.1", port=sentinel_cluster["replica"])
    try:
        assert (await r.info("replication"))["role"] == "master"  # the replica was promoted
    finally:
        await r.aclose()


def test_a_sentinel_url_without_a_service_name_is_refused():
    from diemcau.redisconn import connect

    with pytest.raises(ValueError, match="name the monitored service"):
        connect("redis+sentinel://127.0.0.1:26379")
    with pytest.raises(ValueError, match="host:port"):
        connect("redis+sentinel://nohost/dc")
