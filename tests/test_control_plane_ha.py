"""Control-plane HA: two orchestrators share Redis; when the leader goes, the other leads within
2 s, nodes move their control channels to it, and the media never notices."""

import asyncio
import os
import time

import pytest

from edge_node.daemon import HallDaemon
from edge_node.settings import EdgeSettings
from relay.agent import RelayAgent
from tests.conftest import wait_for
from tests.media import start_studio


async def test_second_orchestrator_takes_over_and_media_never_notices(start_orchestrator, start_relay, signer):
    prefix = f"dc:ha{os.urandom(3).hex()}:"
    a = await start_orchestrator(instance="orch-a", key_prefix=prefix)
    await wait_for(lambda: a.state.leadership.is_leader, 5, what="first leader")
    b = await start_orchestrator(instance="orch-b", key_prefix=prefix)
    urls = f"{a.control_url},{b.control_url}"
    origin = await start_relay("origin-1", "origin", region="north", orchestrator_url=urls,
                               credential=a.credential("origin-1"), heartbeat_ms=300)
    agent = RelayAgent(origin.core, origin.url)
    agent.start()
    studio, task = await start_studio(origin.url, signer)
    hall = HallDaemon(EdgeSettings(hall="HN-01", orchestrator_url=urls, credential=a.credential("HN-01"),
                                   ice_addresses=["127.0.0.1"]))
    hall.start()
    try:
        await wait_for(lambda: hall.stats().frames_received > 30, 20, what="hall on air")
        assert not b.state.leadership.is_leader
        stopped_at = time.time()
        await a.stop()  # the leader goes away
        await wait_for(lambda: b.state.leadership.is_leader, 2.5, what="the other instance leads")
        took_over = time.time() - stopped_at
        await wait_for(lambda: "HN-01" in b.state.hub.channels and "origin-1" in b.state.hub.channels, 5,
                       what="nodes moved their control channels")
        frames = hall.stats().frames_received
        await asyncio.sleep(1.0)
        st = hall.stats()
        assert st.frames_received > frames + 20  # the programme kept flowing
        assert all(g < 250 for end, g in st.gaps if end >= stopped_at)
        assert took_over < 2.0
    finally:
        await hall.stop()
        studio.stop()
        await task
        await agent.stop()


async def test_a_leader_that_paused_past_its_lease_cannot_overwrite_its_successors_plan(redis_url):
    """Fencing: every placement write carries the leader's fence, checked inside Redis."""
    import redis.asyncio as aioredis

    from orchestrator.leader import Leadership
    from orchestrator.store import StaleLeader, Store

    r = aioredis.from_url(redis_url)
    prefix = "fence-test:"
    try:
        a_store, b_store = Store(r, prefix), Store(r, prefix)
        a = Leadership(r, prefix, "orch-a", 300, a_store)
        b = Leadership(r, prefix, "orch-b", 300, b_store)
        assert await a.tick() and not await b.tick()
        await a_store.set_assignment("HN-01", "programme", "north-1")
        # orch-a stalls (a long collector pause, a frozen VM) past its lease; orch-b takes over
        await asyncio.sleep(0.4)
        assert await b.tick() and b.fence == a.fence + 1
        await b_store.set_assignment("HN-01", "programme", "north-2")
        # orch-a wakes up still believing it leads: Redis refuses its writes, and it steps down
        with pytest.raises(StaleLeader):
            await a_store.set_assignment("HN-01", "programme", "central-1")
        with pytest.raises(StaleLeader):
            await a_store.clear_assignment("HN-01")
        assigned = await b_store.assignments()
        assert assigned["HN-01"]["upstream"] == "north-2" and assigned["HN-01"]["epoch"] == 2
        assert not await a.tick()  # its renewal fails too: the lease is orch-b's
        # a store that never led cannot write at all
        with pytest.raises(StaleLeader):
            await Store(r, prefix).set_assignment("HN-02", "programme", "north-1")
    finally:
        for key in await r.keys(prefix + "*"):
            await r.delete(key)
        await r.aclose()
