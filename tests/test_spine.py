"""The spine end to end: studio -> origin -> regional relay -> hall daemon, placed by the orchestrator."""


import aiohttp

from edge_node.daemon import HallDaemon
from edge_node.settings import EdgeSettings
from relay.agent import RelayAgent
from tests.conftest import free_port, wait_for
from tests.media import start_studio


async def _relay_with_agent(start_relay, orch, relay_id, role, region, port=None):
    relay = await start_relay(relay_id, role, port=port, region=region, orchestrator_url=orch.control_url,
                              credential=orch.credential(relay_id), heartbeat_ms=300)
    agent = RelayAgent(relay.core, relay.url)
    agent.start()
    return relay, agent


def _hall(orch, hall_id, **kw):
    d = HallDaemon(EdgeSettings(hall=hall_id, orchestrator_url=orch.control_url, credential=orch.credential(hall_id),
                                ice_addresses=["127.0.0.1"], **kw))
    d.start()
    return d


async def test_programme_crosses_origin_and_regional_relay_to_the_hall(start_orchestrator, start_relay, signer):
    orch = await start_orchestrator()
    origin, a1 = await _relay_with_agent(start_relay, orch, "origin-1", "origin", "north")
    regional, a2 = await _relay_with_agent(start_relay, orch, "south-1", "regional", "south")
    studio, task = await start_studio(origin.url, signer)
    hall = _hall(orch, "CT-01")
    try:
        await wait_for(lambda: hall.stats().frames_received >= 60, 20, what="hall receiving frames")
        st = hall.stats()
        # the hall was placed on the regional relay of its region, which pulls from the origin
        assert st.relay == "south-1"
        assert regional.core.sources["programme"].publisher == "upstream"
        # media flows origin -> regional -> hall; the hall's warm standby on the origin is parked
        await wait_for(lambda: hall.stats().backup_state == "standby", 10, what="warm standby")
        active = {s.subject for s in origin.core.subscribers.values() if s.active}
        parked = {s.subject for s in origin.core.subscribers.values() if not s.active}
        assert active == {"south-1"} and parked == {"CT-01"}
        assert len(regional.core.subscribers) == 1
        assert st.frames_received >= st.frames_expected * 0.98
        # latency comes from the studio's capture clock carried in sender reports
        await wait_for(lambda: hall.stats().latency_ms_p50 >= 0, 10, what="latency samples")
        assert 0 <= hall.stats().latency_ms_p50 < 1000
        # and the orchestrator sees it in the hall's heartbeats
        async with aiohttp.ClientSession() as http:
            token = await orch.token(http)

            async def on_air():
                async with http.get(orch.url + "/api/v1/halls/CT-01", headers={"Authorization": f"Bearer {token}"}) as r:
                    body = await r.json()
                    return body["state"] == "on_air" and body["frames_received"] > 0

            await wait_for(on_air, 10, what="hall on air in the API")
    finally:
        await hall.stop()
        studio.stop()
        await task
        await a1.stop()
        await a2.stop()


async def test_hall_daemon_reconnects_after_its_relay_restarts(start_orchestrator, start_relay, signer):
    # One relay only, so the orchestrator has nowhere else to send the hall: the hall must
    # notice the loss and come back to the same relay once it restarts (the studio republishes).
    orch = await start_orchestrator()
    port = free_port()
    origin, a1 = await _relay_with_agent(start_relay, orch, "origin-1", "origin", "north", port=port)
    studio, task = await start_studio(origin.url, signer)
    hall = _hall(orch, "HN-01", stall_s=0.5)
    try:
        await wait_for(lambda: hall.stats().frames_received >= 30, 20, what="first frames")
        await a1.stop()
        await origin.stop()
        await wait_for(lambda: hall.stats().state in ("stalled", "connecting"), 5, what="hall notices the loss")
        before = hall.stats().frames_received
        origin2, a2 = await _relay_with_agent(start_relay, orch, "origin-1", "origin", "north", port=port)
        await wait_for(lambda: hall.stats().frames_received >= before + 30, 20, what="frames after the relay restarted")
        st = hall.stats()
        assert st.reconnects >= 1 and st.relay == "origin-1"
        # programme frames missed are those sent while the relay was down (about a second or two)
        assert 0 < st.frames_missing <= 90 and st.frames_received + st.frames_missing >= 0.95 * st.frames_expected
        await a2.stop()
    finally:
        await hall.stop()
        studio.stop()
        await task


async def test_participant_joins_through_the_api_and_watches_at_its_hall(start_orchestrator, start_relay, signer, secrets_dir):
    from relay.client import WhepSubscriber
    from tests.media import Counts, counting_sinks

    orch = await start_orchestrator()
    origin, a1 = await _relay_with_agent(start_relay, orch, "origin-1", "origin", "north")
    studio, task = await start_studio(origin.url, signer)
    d, _ = secrets_dir
    hall = HallDaemon(EdgeSettings(hall="HN-01", orchestrator_url=orch.control_url, credential=orch.credential("HN-01"),
                                   ice_addresses=["127.0.0.1"], media_public_key=str(d / "media.pub")))
    await hall.start_async()
    counts = Counts()
    try:
        await wait_for(lambda: hall.stats().frames_received > 10, 20, what="hall receiving")
        async with aiohttp.ClientSession() as http:
            h = {"Authorization": f"Bearer {await orch.token(http)}"}
            async with http.post(orch.url + "/api/v1/tokens/join", json={"hall": "HN-01", "participant": "p-001"}, headers=h) as r:
                join_token = (await r.json())["token"]
            async with http.post(orch.url + "/api/v1/join", headers={"Authorization": f"Bearer {join_token}"}) as r:
                assert r.status == 200, await r.text()
                joined = await r.json()
            assert joined["hall"] == "HN-01" and joined["whep_url"].startswith(hall.local.url)
            # a join token for another hall cannot be used to ask for this one
            async with http.post(orch.url + "/api/v1/join", json={"hall": "HN-02"},
                                 headers={"Authorization": f"Bearer {join_token}"}) as r:
                assert r.status == 403
            viewer = WhepSubscriber(joined["whep_url"], joined["token"], counting_sinks(counts))
            await viewer.connect(http)
            await wait_for(lambda: counts.frames >= 30, 10, what="the participant's frames from the hall")
            assert hall.stats().viewers == 1
            # the hall's media token does not open another hall's edge or the relay
            async with http.post(origin.url + "/whep/programme", data=b"v=0", headers={
                    "Authorization": f"Bearer {joined['token']}", "Content-Type": "application/sdp"}) as r:
                assert r.status == 403
            await viewer.close(http)
    finally:
        await hall.stop()
        studio.stop()
        await task
        await a1.stop()
