"""Operator actions through the API on a running tree: move a hall, drain a relay, conflicts, audit."""

import asyncio

import aiohttp

from edge_node.daemon import HallDaemon
from edge_node.settings import EdgeSettings
from tests.conftest import wait_for
from tests.tree import start_tree


async def _tree(start_orchestrator, start_relay, signer, secrets_dir):
    """Orchestrator, origin and studio in this process; two regional relays as their own processes."""
    tree = await start_tree(start_orchestrator, start_relay, signer, secrets_dir, regionals=("north-1", "north-2"))
    orch = tree.orch
    hall = HallDaemon(EdgeSettings(hall="HN-01", orchestrator_url=orch.control_url,
                                   credential=orch.credential("HN-01"), ice_addresses=["127.0.0.1"]))
    hall.start()

    async def stop():
        await hall.stop()
        await tree.stop()

    return orch, hall, stop


async def _settled(hall, quiet_s: float = 2.0) -> None:
    """Wait until the hall has not switched for `quiet_s` (its verifier has judged the last switch)."""
    loop = asyncio.get_running_loop()
    seen, since = hall.stats().switches, loop.time()
    while loop.time() - since < quiet_s:
        await asyncio.sleep(0.1)
        if hall.stats().switches != seen:
            seen, since = hall.stats().switches, loop.time()


async def test_operator_moves_a_hall_and_drains_a_relay_without_losing_frames(start_orchestrator, start_relay, signer,
                                                                             secrets_dir):
    orch, hall, stop = await _tree(start_orchestrator, start_relay, signer, secrets_dir)
    try:
        await wait_for(lambda: hall.stats().frames_received > 60 and hall.stats().backup_state == "standby"
                       and hall.stats().relay.startswith("north") and hall.stats().backup.startswith("north"),
                       30, what="hall on a regional relay with a regional standby")
        await _settled(hall)  # a switch just before (e.g. off the origin) must not be counted as the move's
        first = hall.stats().relay
        other = "north-2" if first == "north-1" else "north-1"
        missing = hall.stats().frames_missing
        async with aiohttp.ClientSession() as http:
            h = {"Authorization": f"Bearer {await orch.token(http)}"}
            url = orch.url + "/api/v1/halls/HN-01/move"

            # an operator who saw the hall on the wrong relay is refused, nothing happens
            async with http.post(url, json={"relay": other, "expect": other}, headers=h) as r:
                assert r.status == 409 and "moved meanwhile" in (await r.json())["error"]
            # another operator is acting on this hall right now: refused with who it is
            assert await orch.state.store.lock("HN-01", "bob") is None
            async with http.post(url, json={"relay": other, "expect": first}, headers=h) as r:
                assert r.status == 409 and "bob" in (await r.json())["error"]
            await orch.state.store.unlock("HN-01", "bob")
            async with http.post(url, json={"relay": "no-such-relay"}, headers=h) as r:
                assert r.status == 404

            async with http.post(url, json={"relay": other, "expect": first}, headers=h) as r:
                assert r.status == 202, await r.text()
            await wait_for(lambda: hall.stats().relay == other and hall.stats().backup_state == "standby", 10,
                           what=f"hall moved to {other}")
            frames = hall.stats().frames_received
            await wait_for(lambda: hall.stats().frames_received > frames + 30, 5, what="frames after the move")
            assert hall.stats().frames_missing == missing  # make-before-break: no programme frame lost
            await _settled(hall)
            missing = hall.stats().frames_missing
            # the same move again is stale now
            async with http.post(url, json={"relay": other, "expect": first}, headers=h) as r:
                assert r.status == 409

            # drain the relay the hall is on: it moves off, and nothing is placed there any more
            drain = orch.url + f"/api/v1/relays/{other}/drain"
            async with http.post(drain, json={"drain": True}, headers=h) as r:
                assert r.status == 200, await r.text()
            async with http.post(drain, json={"drain": True}, headers=h) as r:
                assert r.status == 409 and "already" in (await r.json())["error"]
            await wait_for(lambda: hall.stats().relay == first, 10, what="hall off the drained relay")
            await wait_for(lambda: hall.stats().backup not in (other, "") and hall.stats().backup_state == "standby",
                           10, what="a standby that is not on the drained relay")
            await _settled(hall)
            lost = hall.stats().frames_missing - missing
            print(f"drain: {lost} programme frames lost by the move off {other}")
            # Idle, none is lost. On a loaded box (the full suite, or two busy processes beside
            # this test) the cold move's switch has lost 1-5 frames: issue 4 tracks it.
            assert lost <= 8
            async with http.get(orch.url + "/api/v1/relays", headers=h) as r:
                rows = {x["id"]: x for x in (await r.json())["relays"]}
            assert rows[other]["drained"] and rows[other]["drained_by"] == "admin" and rows[other]["halls"] == 0
            async with http.post(url, json={"relay": other}, headers=h) as r:
                assert r.status == 409 and "drained" in (await r.json())["error"]
            async with http.post(drain, json={"drain": False}, headers=h) as r:
                assert r.status == 200

            # every action is in the audit log with who did it, filterable by actor and kind
            async with http.get(orch.url + "/api/v1/events?actor=admin&kind=operator_move,moved,operator_drain,"
                                "operator_undrain", headers=h) as r:
                evs = (await r.json())["events"]
            kinds = [e["kind"] for e in reversed(evs)]
            assert kinds == ["operator_move", "moved", "operator_drain", "operator_undrain"], kinds
            assert all(e["actor"] == "admin" for e in evs)
            newest = evs[0]["id"]
            async with http.get(orch.url + f"/api/v1/events?after={newest}", headers=h) as r:
                assert all(e["id"] > newest for e in (await r.json())["events"])
            async with http.get(orch.url + "/api/v1/events?after=junk", headers=h) as r:
                assert r.status == 400
    finally:
        await stop()


async def test_refused_credentials_are_audited_with_who_and_from_where(start_orchestrator):
    orch = await start_orchestrator()
    async with aiohttp.ClientSession() as http:
        async with http.post(orch.url + "/api/v1/login", json={"username": "mallory", "password": "guess"}) as r:
            assert r.status == 401
        async with http.get(orch.url + "/api/v1/halls", headers={"Authorization": "Bearer dco1.forged"}) as r:
            assert r.status == 401
        async with http.get(orch.url + "/api/v1/control", headers={"Authorization": "Bearer dcn1.HN-01.forged"}) as r:
            assert r.status == 401
    evs = await orch.state.store.events(20, kind="auth_failure")
    by_path = {e["detail"].split(":")[0]: e for e in evs}
    assert by_path["401 POST /api/v1/login"]["actor"] == "mallory"
    assert "wrong username or password" in by_path["401 POST /api/v1/login"]["detail"]
    assert by_path["401 GET /api/v1/halls"]["subject"] == "127.0.0.1"
    assert by_path["401 GET /api/v1/control"]["actor"] == "HN-01"


async def test_a_console_preview_is_proxied_and_an_operator_holds_at_most_two(start_orchestrator, start_relay, signer,
                                                                                secrets_dir):
    from relay.client import recvonly_offer

    tree = await start_tree(start_orchestrator, start_relay, signer, secrets_dir)
    orch, origin = tree.orch, tree.origin
    try:
        await wait_for(lambda: "programme" in origin.core.sources and origin.core.sources["programme"].live, 10)
        async with aiohttp.ClientSession() as http:
            h = {"Authorization": f"Bearer {await orch.token(http)}", "Content-Type": "application/sdp"}

            async def relay_known():
                async with http.get(orch.url + "/api/v1/relays", headers=h) as r:
                    return any(x["id"] == "origin-1" and x["alive"] for x in (await r.json())["relays"])

            await wait_for(relay_known, 10, what="the relay registered")
            locations = []
            for _ in range(3):
                async with http.post(orch.url + "/api/v1/preview", data=await recvonly_offer(), headers=h) as r:
                    assert r.status == 201, await r.text()
                    assert r.headers["X-Diemcau-Relay"] == "origin-1" and (await r.text()).startswith("v=0")
                    locations.append(r.headers["Location"])
            api = orch.app["api"]
            assert len(api.previews) == 2  # the oldest made way
            await wait_for(lambda: len(origin.core.subscribers) == 2, 5, what="the oldest preview ended at the relay")
            async with http.delete(orch.url + locations[0], headers=h) as r:
                assert r.status == 404
            async with http.delete(orch.url + locations[2], headers=h) as r:
                assert r.status == 204
            await wait_for(lambda: len(origin.core.subscribers) == 1, 5, what="the preview ended at the relay")
            async with http.post(orch.url + "/api/v1/preview", data=b"v=0\r\njunk", headers=h) as r:
                assert r.status == 400 and "SDP" in (await r.json())["error"]
    finally:
        await tree.stop()


async def test_operator_puts_a_hall_in_hitless_mode_and_back(start_orchestrator, start_relay, signer, secrets_dir):
    orch, hall, stop = await _tree(start_orchestrator, start_relay, signer, secrets_dir)
    try:
        await wait_for(lambda: hall.stats().frames_received > 60 and hall.stats().backup_state == "standby",
                       30, what="hall on air with a warm standby")
        assert not hall.stats().hitless
        async with aiohttp.ClientSession() as http:
            h = {"Authorization": f"Bearer {await orch.token(http)}"}
            url = orch.url + "/api/v1/halls/HN-01/hitless"
            async with http.post(url, json={"on": "yes"}, headers=h) as r:
                assert r.status == 422, await r.text()
            async with http.post(orch.url + "/api/v1/halls/XX-99/hitless", json={"on": True}, headers=h) as r:
                assert r.status == 404
            async with http.post(url, json={"on": True}, headers=h) as r:
                assert r.status == 202, await r.text()
            # the hall hears it from the leader: its standby path now carries the programme too
            await wait_for(lambda: hall.stats().hitless and hall.stats().backup_state == "receiving"
                           and hall.stats().merged_duplicates > 100, 10, what="both paths merged")
            await wait_for(lambda: any(r["id"] == "HN-01" and r.get("hitless") for r in orch.app["api"].board["halls"]), 5,
                what="the board shows the hall hitless")
            missing = hall.stats().frames_missing
            async with http.post(url, json={"on": False}, headers=h) as r:
                assert r.status == 202
            await wait_for(lambda: not hall.stats().hitless and hall.stats().backup_state == "standby", 10,
                           what="standby parked again")
            frames = hall.stats().frames_received
            await wait_for(lambda: hall.stats().frames_received > frames + 30, 5, what="frames after hitless off")
            assert hall.stats().frames_missing == missing
            async with http.get(orch.url + "/api/v1/events?kind=operator_hitless", headers=h) as r:
                evs = (await r.json())["events"]
            assert [e["detail"].split(":")[0] for e in evs] == ["hitless off", "hitless on"]
            assert all(e["actor"] == "admin" for e in evs)
    finally:
        await stop()
