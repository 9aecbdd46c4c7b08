"""Control-plane HA: two orchestrators share Redis; when the leader goes, the other leads within
2 s, nodes move their control channels to it, and the media never notices."""

import asyncio
import os
import time
import zlib

import aiohttp
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


async def test_a_relay_cut_from_the_control_plane_keeps_its_healthy_halls(start_orchestrator, start_relay, signer):
    """Partition: a regional relay loses its control channel but goes on serving. Its halls still
    report receiving from it, so the orchestrator keeps them there (moving healthy halls would be
    the outage), places nothing new on it, and takes it back when it reconnects."""
    from diemcau.control_client import ControlClient

    orch = await start_orchestrator()
    relays, agents = {}, {}
    for rid, role in (("origin-1", "origin"), ("north-1", "regional")):
        relays[rid] = await start_relay(rid, role, region="north", orchestrator_url=orch.control_url,
                                        credential=orch.credential(rid), heartbeat_ms=300)
        agents[rid] = RelayAgent(relays[rid].core, relays[rid].url)
        agents[rid].start()
    studio, task = await start_studio(relays["origin-1"].url, signer)
    hall = HallDaemon(EdgeSettings(hall="HN-01", orchestrator_url=orch.control_url,
                                   credential=orch.credential("HN-01"), ice_addresses=["127.0.0.1"]))
    hall.start()
    api = orch.app["api"]

    def relay_row(rid):
        return next((r for r in api.board["relays"] if r["id"] == rid), {})

    try:
        await wait_for(lambda: hall.stats().state == "receiving" and hall.stats().relay == "north-1"
                       and hall.stats().frames_received > 30, 30, what="HN-01 receiving from north-1")
        # the record agrees with what the hall does (on a loaded box the hall may have switched to
        # its standby by itself a moment ago, and the planner's reconcile catches up: ci-local saw
        # the record still on origin-1 here)
        deadline = time.monotonic() + 15
        while (before := (await orch.state.store.assignments())["HN-01"])["upstream"] != "north-1":
            assert time.monotonic() < deadline, (before, await orch.state.store.events(20))
            await asyncio.sleep(0.25)
        # the partition: north-1's control channel is gone, its media path is not
        agent = agents["north-1"]
        agent.control.stop()
        await wait_for(lambda: relay_row("north-1").get("cut"), 10, what="north-1 shown cut, still serving")
        await asyncio.sleep(3.0)  # twice the time after which a silent relay is judged dead
        after = (await orch.state.store.assignments())["HN-01"]
        assert after["upstream"] == before["upstream"] == "north-1" and after["epoch"] == before["epoch"], \
            (after, await orch.state.store.events(10, kind="relay_dead"))
        assert relay_row("north-1")["alive"] and relay_row("north-1")["serving"] >= 1
        assert not await orch.state.store.events(10, kind="relay_dead")
        frames = hall.stats().frames_received
        await wait_for(lambda: hall.stats().frames_received > frames + 30, 5, what="HN-01 still receiving")
        # healed: the relay's control channel comes back, and the orchestrator takes it back
        agent.control = ControlClient(agent.s.orchestrator_url, agent.s.credential, agent._hello, agent._heartbeat,
                                      agent._on_message, agent.s.heartbeat_ms)
        agent._tasks.append(asyncio.ensure_future(agent.control.run()))
        await wait_for(lambda: relay_row("north-1").get("connected") and not relay_row("north-1").get("cut"), 10,
                       what="north-1 back on the control plane")
        assert (await orch.state.store.assignments())["HN-01"]["upstream"] == "north-1"
    finally:
        await hall.stop()
        studio.stop()
        await task
        for ag in agents.values():
            await ag.stop()


async def test_the_leader_cut_from_redis_steps_down_before_anyone_else_leads_and_all_converge(
        start_orchestrator, redis_url):
    """Partition: the leader's link to Redis goes silent (packets dropped, no reset). Its renewal
    hangs; its own count of the lease runs out before Redis's does, so at no moment do two instances
    both act as leader; the other takes over; when the link heals the cut one comes back as a
    follower and both serve the API."""
    from tests.blackhole import Blackhole

    if not redis_url.startswith("unix://"):
        pytest.skip("the cut is made between the orchestrator and a unix-socket Redis")
    link = await Blackhole(redis_url[len("unix://"):]).start()
    prefix = f"dc:cut{os.urandom(3).hex()}:"
    a = await start_orchestrator(instance="orch-a", key_prefix=prefix, redis_url=link.url)
    await wait_for(lambda: a.state.leadership.is_leader, 5, what="first leader")
    b = await start_orchestrator(instance="orch-b", key_prefix=prefix)
    both_max, samples = 0, []

    async def watch():
        nonlocal both_max
        while True:
            both = int(a.state.leadership.is_leader) + int(b.state.leadership.is_leader)
            both_max = max(both_max, both)
            samples.append((time.monotonic(), a.state.leadership.is_leader, b.state.leadership.is_leader))
            await asyncio.sleep(0.01)

    watcher = asyncio.ensure_future(watch())
    # a hall whose control channel orch-a holds: cut off, orch-a must hand it over (else the new
    # leader, hearing nothing of it, would judge it dark and its relays dead)
    from diemcau import messages as m
    from diemcau.control_client import ControlClient

    urls = [a.control_url, b.control_url]
    if zlib.crc32(b"HN-01") % 2:  # the hall starts at orch-a (nodes spread over instances by id)
        urls.reverse()
    hall = ControlClient(",".join(urls), a.credential("HN-01"),
                         lambda: m.Hello(node="HN-01", kind="hall", version="test", region="north"),
                         lambda seq: m.Heartbeat(seq=seq, hall=m.HallStats()), lambda msg: asyncio.sleep(0))
    hall_task = asyncio.ensure_future(hall.run())
    try:
        await wait_for(lambda: "HN-01" in a.state.hub.channels, 5, what="the hall's channel on orch-a")
        await asyncio.sleep(1.0)
        assert a.state.leadership.is_leader and not b.state.leadership.is_leader
        cut_at = time.monotonic()
        link.cut = True
        await wait_for(lambda: b.state.leadership.is_leader, 5, what="orch-b leads")
        led_at = time.monotonic()
        await asyncio.sleep(0.1)  # the watcher samples it too
        gave_up = next((t for t, la, _ in samples if t >= cut_at and not la), None)
        assert gave_up is not None and both_max == 1, "orch-a still believed it led while orch-b did"
        a_gave_up = gave_up - cut_at
        b_took = next((t for t, _, lb in samples if t >= cut_at and lb), led_at) - cut_at
        print(f"cut: orch-a stepped down after {a_gave_up * 1000:.0f} ms, orch-b led after {b_took * 1000:.0f} ms")
        assert a_gave_up < b_took and both_max == 1
        await wait_for(lambda: "HN-01" in b.state.hub.channels, 5, what="the hall's channel moved to orch-b")
        moved = time.monotonic() - cut_at
        print(f"cut: the hall's channel moved to orch-b after {moved * 1000:.0f} ms")
        async with aiohttp.ClientSession() as http:  # orch-a refuses channels while cut off
            async with http.get(a.control_url.replace("ws", "http", 1)) as r:
                assert r.status == 503 and r.headers.get("Retry-After")
        # healed: orch-a finds Redis again, and follows
        link.cut = False
        await asyncio.sleep(3.0)
        assert b.state.leadership.is_leader and not a.state.leadership.is_leader and both_max == 1
        # orch-a's late writes from the cut did not take the hall from orch-b's record
        assert await b.state.store.holder("HN-01") == "orch-b"
        assert "HN-01" not in a.state.hub.channels
        async with aiohttp.ClientSession() as http:
            for o in (a, b):
                h = {"Authorization": f"Bearer {await o.token(http)}"}
                async with http.get(o.url + "/api/v1/halls", headers=h) as r:
                    assert r.status == 200 and len((await r.json())["halls"]) == 70
        assert link.dropped > 0  # the cut really dropped traffic
    finally:
        hall.stop()
        hall_task.cancel()
        watcher.cancel()
        await link.stop()
