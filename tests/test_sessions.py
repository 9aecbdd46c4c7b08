"""Sessions and the schedule: the summit's programme, edited and run through the API; halls follow."""

import aiohttp

from diemcau.topology import load_topology

from edge_node.daemon import HallDaemon
from edge_node.settings import EdgeSettings
from tests.conftest import wait_for
from tests.tree import start_tree


async def test_the_summit_programme_is_served_and_edited_with_clear_refusals(start_orchestrator):
    orch = await start_orchestrator()
    async with aiohttp.ClientSession() as http:
        h = {"Authorization": f"Bearer {await orch.token(http)}"}
        async with http.get(orch.url + "/api/v1/sessions", headers=h) as r:
            body = await r.json()
        assert len(body["sessions"]) == 14 and len(body["themes"]) == 5
        assert {s["theme"] for s in body["sessions"]} == set(body["themes"])
        assert body["sessions"][0]["id"] == "S01" and body["sessions"][0]["hall_count"] == 70
        assert body["sessions"][0]["start"].startswith("2021-11-02T08:30:00")
        assert body["sessions"][-1]["start"].startswith("2021-11-06")
        async with http.get(orch.url + "/api/v1/sessions/S03", headers=h) as r:
            s03 = await r.json()
        assert s03["stream"] == "programme-b" and len(s03["hall_ids"]) == 22 and s03["state"] == "scheduled"

        new = {"id": "X1", "title": "Họp báo", "theme": "startups", "start": "2021-11-06T17:00:00+07:00",
               "end": "2021-11-06T18:00:00+07:00", "halls": ["HN-01", "central"]}
        url = orch.url + "/api/v1/sessions"
        for bad, status, why in (
            ({**new, "theme": "sports"}, 422, "theme"),
            ({**new, "end": "2021-11-06T16:00:00+07:00"}, 422, "end must be after start"),
            ({**new, "start": "2021-11-06T17:00:00"}, 422, "time zone"),
            ({**new, "halls": ["XX-99"]}, 422, "XX-99"),
            ({**new, "stream": "Programme B"}, 422, "stream"),
            ({**new, "colour": "red"}, 422, "colour"),
            ({**new, "id": "S01"}, 409, "exists"),
        ):
            async with http.post(url, json=bad, headers=h) as r:
                assert r.status == status and why in (await r.json())["error"], (bad, r.status, await r.text())
        async with http.post(url, data="{", headers={**h, "Content-Type": "application/json"}) as r:
            assert r.status == 400
        async with http.post(url, json=new, headers=h) as r:
            assert r.status == 201, await r.text()
            central = [x.id for x in load_topology().halls if x.region == "central"]
            assert (await r.json())["hall_count"] == 1 + len(central)  # HN-01 and the central region's halls
        async with http.patch(url + "/X1", json={"title": "Họp báo quốc tế", "halls": ["HN-01"]}, headers=h) as r:
            assert r.status == 200 and (await r.json())["hall_ids"] == ["HN-01"]
        async with http.patch(url + "/X1", json={}, headers=h) as r:
            assert r.status == 422

        # two live sessions may not share a hall: the second start is refused, naming the first
        async with http.post(url + "/S01/start", headers=h) as r:
            assert r.status == 200 and (await r.json())["state"] == "live"
        async with http.post(url + "/S01/start", headers=h) as r:
            assert r.status == 409
        async with http.post(url + "/X1/start", headers=h) as r:
            assert r.status == 409 and "S01" in (await r.json())["error"] and "HN-01" in (await r.json())["error"]
        async with http.post(url + "/S01/end", headers=h) as r:
            assert r.status == 200 and (await r.json())["state"] == "ended"
        async with http.post(url + "/S01/end", headers=h) as r:
            assert r.status == 409
        async with http.post(url + "/X1/start", headers=h) as r:
            assert r.status == 200

        async with http.get(orch.url + "/api/v1/events?kind=session_created,session_edited,session_started,session_ended",
                            headers=h) as r:
            kinds = [(e["kind"], e["subject"], e["actor"]) for e in (await r.json())["events"]]
        assert kinds[::-1] == [("session_created", "X1", "admin"), ("session_edited", "X1", "admin"),
                               ("session_started", "S01", "admin"), ("session_ended", "S01", "admin"),
                               ("session_started", "X1", "admin")]
    # the schedule is in Redis: a restarted orchestrator keeps the edits and does not re-seed over them
    sessions = await orch.state.store.sessions()
    assert sessions["X1"].title == "Họp báo quốc tế" and sessions["S01"].state == "ended"
    assert await orch.state.store.seed_sessions(orch.state.programme.sessions) == 0


async def test_a_started_session_reaches_exactly_its_halls_through_the_relays(
        start_orchestrator, start_relay, signer, secrets_dir):
    tree = await start_tree(start_orchestrator, start_relay, signer, secrets_dir, regionals=("north-1",),
                            streams=("programme", "programme-b"), fps=15)
    orch = tree.orch
    halls = {hid: HallDaemon(EdgeSettings(hall=hid, orchestrator_url=orch.control_url, qoe=False,
                                          credential=orch.credential(hid), ice_addresses=["127.0.0.1"]))
             for hid in ("HN-01", "HN-02")}
    for hall in halls.values():
        hall.start()
    try:
        await wait_for(lambda: all(x.stats().frames_received > 30 and x.stats().relay == "north-1"
                                   for x in halls.values()), 30, what="both halls on the regional relay")
        async with aiohttp.ClientSession() as http:
            h = {"Authorization": f"Bearer {await orch.token(http)}"}
            body = {"id": "B1", "title": "Phiên song song", "theme": "startups", "stream": "programme-b",
                    "start": "2021-11-02T14:00:00+07:00", "end": "2021-11-02T16:30:00+07:00", "halls": ["HN-01"]}
            async with http.post(orch.url + "/api/v1/sessions", json=body, headers=h) as r:
                assert r.status == 201, await r.text()
            async with http.post(orch.url + "/api/v1/sessions/B1/start", headers=h) as r:
                assert r.status == 200
            a = halls["HN-01"]
            await wait_for(lambda: a.session == "B1" and a.paths.active.assignment.whep_url.endswith("/whep/programme-b"),
                           5, what="HN-01 told to follow B1")
            frames = a.stats().frames_received
            await wait_for(lambda: a.stats().frames_received > frames + 30 and a.stats().relay == "north-1", 15,
                           what="HN-01 receiving programme-b through its regional relay")
            assert "north-1" in a.stats().relay
            b = halls["HN-02"]
            assert b.session == "" and b.paths.active.assignment.whep_url.endswith("/whep/programme")
            assert b.stats().frames_received > 60
            async with http.post(orch.url + "/api/v1/sessions/B1/end", headers=h) as r:
                assert r.status == 200
            await wait_for(lambda: a.session == "" and a.paths.active.assignment.whep_url.endswith("/whep/programme"),
                           5, what="HN-01 back on the default programme")
            frames = a.stats().frames_received
            try:
                await wait_for(lambda: a.stats().frames_received > frames + 30, 15, what="HN-01 receiving again")
            except AssertionError as exc:
                p = a.paths
                raise AssertionError(f"{exc}: {a.stats()}; active {p.active.upstream} {p.active.state} "
                                     f"{p.active.assignment.whep_url} err={p.active.last_error}; backup {p.backup.upstream} "
                                     f"{p.backup.state} {p.backup.assignment and p.backup.assignment.whep_url}") from None
    finally:
        for hall in halls.values():
            await hall.stop()
        await tree.stop()
