"""The orchestrator's doors: operator login and roles, the control channel, and bad input."""

import asyncio
import re

import aiohttp
import pytest

from diemcau import messages as m
from orchestrator.api import ROUTES


async def _login(http, orch, user="admin", password=None):
    async with http.post(orch.url + "/api/v1/login", json={"username": user, "password": password or orch.password}) as r:
        return r.status, await r.json()


async def test_login_gives_a_session_and_wrong_password_is_refused(start_orchestrator):
    orch = await start_orchestrator()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        status, body = await _login(http, orch, password="wrong")
        assert status == 401 and "wrong username or password" in body["error"]
        status, body = await _login(http, orch)
        assert status == 200 and body["role"] == "admin"
        async with http.get(orch.url + "/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"}) as r:
            assert (await r.json())["user"] == "admin"
        # cookie session works for reads; state changes need the CSRF header
        async with http.post(orch.url + "/api/v1/logout") as r:
            assert r.status == 403
        async with http.post(orch.url + "/api/v1/logout", headers={"X-Diemcau-Request": "1"}) as r:
            assert r.status == 200
        async with http.get(orch.url + "/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"}) as r:
            assert r.status == 401


SAMPLE = {"hall": "HN-01", "relay": "north-1", "session": "abc123", "node": "HN-01"}


def fill_path(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path)


@pytest.mark.parametrize("method,path,name,role", [r for r in ROUTES if r[3] not in ("public",)])
async def test_every_protected_route_refuses_requests_without_credentials(start_orchestrator, method, path, name, role):
    orch = await start_orchestrator()
    url = orch.url + fill_path(path)
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url) as r:
            assert r.status == 401
            assert "error" in await r.json()
        async with http.request(method, url, headers={"Authorization": "Bearer dco1.not-a-session"}) as r:
            assert r.status == 401


async def test_viewer_cannot_mint_media_tokens(start_orchestrator):
    orch = await start_orchestrator()
    await orch.state.accounts.set_user("watcher", "watcher-pass-1", "viewer")
    async with aiohttp.ClientSession() as http:
        status, body = await _login(http, orch, "watcher", "watcher-pass-1")
        assert status == 200
        h = {"Authorization": f"Bearer {body['token']}"}
        async with http.post(orch.url + "/api/v1/tokens/media", json={"stream": "programme", "direction": "sub", "subject": "x"}, headers=h) as r:
            assert r.status == 403 and "needs operator" in (await r.json())["error"]
        async with http.get(orch.url + "/api/v1/halls", headers=h) as r:
            assert r.status == 200 and len((await r.json())["halls"]) == 70


@pytest.mark.parametrize(
    "body,ctype,status",
    [
        (b"{not json", "application/json", 400),
        (b'{"stream": "programme"}', "application/json", 422),
        (b'{"stream": "p", "direction": "sideways", "subject": "x"}', "application/json", 422),
        (b'{"stream": "p", "direction": "sub", "subject": "x", "ttl_s": 99999999}', "application/json", 422),
        (b'{"stream": "p", "direction": "sub", "subject": "x", "extra": 1}', "application/json", 422),
        (b"stream=programme", "application/x-www-form-urlencoded", 415),
        (b'{"stream": "' + b"x" * 100_000 + b'"}', "application/json", 413),
    ],
)
async def test_bad_bodies_get_a_clear_4xx(start_orchestrator, body, ctype, status):
    orch = await start_orchestrator()
    async with aiohttp.ClientSession() as http:
        token = await orch.token(http)
        async with http.post(orch.url + "/api/v1/tokens/media", data=body,
                             headers={"Authorization": f"Bearer {token}", "Content-Type": ctype}) as r:
            assert r.status == status, await r.text()
            assert (await r.json())["error"]


async def test_unknown_hall_is_404_and_openapi_documents_every_route(start_orchestrator):
    orch = await start_orchestrator()
    async with aiohttp.ClientSession() as http:
        h = {"Authorization": f"Bearer {await orch.token(http)}"}
        async with http.get(orch.url + "/api/v1/halls/ZZ-99", headers=h) as r:
            assert r.status == 404 and "unknown hall ZZ-99" in (await r.json())["error"]
        async with http.get(orch.url + "/api/v1/openapi.json", headers=h) as r:
            doc = await r.json()
        for method, path, _, role in ROUTES:
            if path.startswith("/api/v1") or path == "/metrics":
                assert method.lower() in doc["paths"][path], f"{method} {path} missing from OpenAPI"
        async with http.get(orch.url + "/metrics", headers=h) as r:
            text = await r.text()
            assert 'diemcau_halls{state="dark"} 70' in text or "diemcau_halls" in text


async def test_control_channel_refuses_bad_credentials_and_unknown_halls(start_orchestrator):
    orch = await start_orchestrator()
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(orch.control_url)
        assert err.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(orch.control_url, headers={"Authorization": "Bearer dcn1.HN-01.deadbeef"})
        assert err.value.status == 401
        # a valid credential for a hall id that is not in the topology: refused before the upgrade
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await http.ws_connect(orch.control_url, headers={"Authorization": f"Bearer {orch.credential('ZZ-99')}"})
        assert err.value.status == 403
        # a node that claims to be a hall without being one in the topology
        ws = await http.ws_connect(orch.control_url, headers={"Authorization": f"Bearer {orch.credential('zz-box')}"})
        await ws.send_bytes(m.encode(m.Hello(node="zz-box", kind="hall", version="t")))
        reply = m.decode((await ws.receive()).data)
        assert isinstance(reply, m.ErrorMsg) and reply.code == 404
        await ws.close()
        # hello for another node than the credential proves
        ws = await http.ws_connect(orch.control_url, headers={"Authorization": f"Bearer {orch.credential('HN-01')}"})
        await ws.send_bytes(m.encode(m.Hello(node="HN-02", kind="hall", version="t")))
        reply = m.decode((await ws.receive()).data)
        assert isinstance(reply, m.ErrorMsg) and reply.code == 403
        await ws.close()


async def test_malformed_control_messages_are_answered_and_nothing_is_lost(start_orchestrator):
    orch = await start_orchestrator()
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(orch.control_url, headers={"Authorization": f"Bearer {orch.credential('HN-01')}"})
        await ws.send_bytes(m.encode(m.Hello(node="HN-01", kind="hall", version="t")))
        assert isinstance(m.decode((await ws.receive()).data), m.Welcome)
        await ws.send_bytes(m.encode(m.Heartbeat(seq=1, hall=m.HallStats(state="receiving", frames_received=42))))
        for junk in (b"{", b'{"t": "nope"}', b'{"t": "hb", "seq": "x"}', b"\xff\xfe"):
            await ws.send_bytes(junk)
            reply = m.decode((await ws.receive(timeout=5)).data)
            assert isinstance(reply, m.ErrorMsg) and reply.code == 400
        await orch.state.store.flush()
        stats = await orch.state.store.stats()
        assert stats["HN-01"]["frames_received"] == 42  # the good heartbeat survived the junk
        await ws.close()


async def test_orchestrator_refuses_to_start_without_secrets(redis_url):
    from orchestrator.app import StartupError, make_app
    from orchestrator.settings import OrchestratorSettings

    with pytest.raises(StartupError, match="node_key_file and media_key_file are required"):
        make_app(OrchestratorSettings(redis_url=redis_url))


@pytest.mark.timeout(60)
async def test_a_silent_control_channel_is_closed_and_a_talking_one_is_kept(start_orchestrator):
    """Half-open channels (the node's host went away without a FIN) are found by their silence:
    the orchestrator keeps no WebSocket pings of its own (a timer reset per message), it closes a
    channel that brought nothing for `ws_idle_close_s`."""
    orch = await start_orchestrator(ws_idle_close_s=1.5)
    async with aiohttp.ClientSession() as http:
        talking, silent = [], []
        for hall, into in (("HN-01", talking), ("HN-02", silent)):
            ws = await http.ws_connect(orch.control_url, headers={"Authorization": f"Bearer {orch.credential(hall)}"},
                                       autoping=False)
            await ws.send_bytes(m.encode(m.Hello(node=hall, kind="hall", version="t")))
            assert isinstance(m.decode((await ws.receive(timeout=5)).data), m.Welcome)
            into.append(ws)
        t0 = loop_time = asyncio.get_running_loop().time()
        closed_at = None
        seq = 0
        while loop_time - t0 < 6:
            seq += 1
            await talking[0].send_bytes(m.encode(m.Heartbeat(seq=seq, hall=m.HallStats(state="idle"))))
            if closed_at is None:
                try:
                    msg = await silent[0].receive(timeout=0.3)
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        closed_at = asyncio.get_running_loop().time() - t0
                        assert msg.data == 4408, msg
                except asyncio.TimeoutError:
                    pass
            else:
                await asyncio.sleep(0.3)
            loop_time = asyncio.get_running_loop().time()
        assert closed_at is not None and 1.5 <= closed_at <= 4.5, closed_at
        assert not talking[0].closed and "HN-01" in orch.state.hub.channels and "HN-02" not in orch.state.hub.channels
        assert orch.state.hub.idle_closed == 1
        await talking[0].close()
