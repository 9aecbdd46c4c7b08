"""Control-plane HA: two orchestrators share Redis; when the leader goes, the other leads within
2 s, nodes move their control channels to it, and the media never notices."""

import asyncio
import os
import time

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
